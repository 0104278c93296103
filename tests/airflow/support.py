"""Helpers for the Airflow tests: the connection, loading example DAGs, running them with ``dag.test()``."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

import pytest

from tests.kafka_fixtures import ROOT, TestEnv

__all__ = ["DagResult", "load_dag", "run_dag", "streamlake_conn"]


@pytest.fixture
def streamlake_conn(test_env: TestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestEnv]:
    """The ``streamlake_default`` connection, pointing at the test broker with the test's prefix and app id."""
    host, port = test_env.broker.bootstrap.rsplit(":", 1)
    extra = {"env": "test", "home": str(ROOT), "topic_prefix": test_env.prefix, "app_id": test_env.app_id}
    extra.update({k: v for k, v in test_env.extra.items() if k in ("lake_catalog_uri", "lake_warehouse")})
    monkeypatch.setenv("AIRFLOW_CONN_STREAMLAKE_DEFAULT", json.dumps(
        {"conn_type": "streamlake", "host": host, "port": int(port), "extra": extra}))
    yield test_env


def load_dag(dag_id: str) -> Any:
    """The example DAG *dag_id* from dags/, imported from its file as Airflow's DAG processor would."""
    path = ROOT / "dags" / f"{dag_id}.py"
    spec = importlib.util.spec_from_file_location(f"streamlake_example_dags.{dag_id}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@dataclass
class DagResult:
    state: str
    tasks: dict[str, str]           # task id -> state
    xcom: dict[str, Any]            # task id -> return value


def run_dag(dag: Any, logical_date: datetime, conf: dict[str, Any] | None = None) -> DagResult:
    """``dag.test()`` for one logical date; running it again with the same date reruns the same run id."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dr = dag.test(logical_date=logical_date, run_conf=conf)
    with create_session() as session:
        tis = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
        rows = session.scalars(select(XComModel).where(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id, XComModel.key == "return_value")).all()
        xcom = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return DagResult(str(dr.state), tis, xcom)
