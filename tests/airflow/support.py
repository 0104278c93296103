"""Helpers for the Airflow tests: the connection, loading example DAGs, running them with ``dag.test()``."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.kafka_fixtures import ROOT, ProcessFactory, TestEnv, WorkerProcess

__all__ = ["DagResult", "Pipeline", "load_dag", "order", "pipeline", "run_dag", "source_partitions", "streamlake_conn"]


@pytest.fixture
def streamlake_conn(test_env: TestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestEnv]:
    """The ``streamlake_default`` connection, pointing at the test broker with the test's prefix and app id."""
    host, port = test_env.broker.bootstrap.rsplit(":", 1)
    lake_dir = test_env.tmp / "lake"
    lake_dir.mkdir(exist_ok=True)
    # the lake of the test's own; landers (started with test_env.environ()) see the same
    test_env.extra.update(STREAMLAKE_LAKE_CATALOG_URI=f"sqlite:///{lake_dir}/catalog.db",
                          STREAMLAKE_LAKE_WAREHOUSE=f"file://{lake_dir}/warehouse",
                          STREAMLAKE_LAKE_COMMIT_INTERVAL="0.5")
    extra = {"env": "test", "home": str(ROOT), "topic_prefix": test_env.prefix, "app_id": test_env.app_id,
             "lake_catalog_uri": test_env.extra["STREAMLAKE_LAKE_CATALOG_URI"],
             "lake_warehouse": test_env.extra["STREAMLAKE_LAKE_WAREHOUSE"]}
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


def _serialize(dag: Any) -> None:
    """Write *dag* to the metadata DB, as the DAG processor would: ``dag.test()`` needs it there."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    bag = DagBag(dag_folder=str(ROOT / "dags"), collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


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

    _serialize(dag)
    dr = dag.test(logical_date=logical_date, run_conf=conf)
    with create_session() as session:
        tis = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
        rows = session.scalars(select(XComModel).where(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id, XComModel.key == "return_value")).all()
        xcom = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return DagResult(str(dr.state), tis, xcom)


# -- the streams' own processes, run from the worker's virtualenv ------------------------------------

WORKER_PYTHON = ROOT / ".venv" / "bin" / "python"


class Pipeline(ProcessFactory):
    """Workers and landers of the test's app, run from the worker's virtualenv (Airflow's has no Faust worker)."""

    def __init__(self, env: TestEnv) -> None:
        super().__init__(env, python=WORKER_PYTHON, ready_timeout=180)

    def start_worker(self, name: str = "w0", wait: bool = True) -> WorkerProcess:
        return self.worker(name, wait)

    def start_lander(self, name: str = "lander0", wait: bool = True) -> WorkerProcess:
        return self.lander(name, wait)


@pytest.fixture
def pipeline(streamlake_conn: TestEnv) -> Iterator[Pipeline]:
    """Topics of the catalog created for the test's prefix; processes stopped after the test."""
    import asyncio

    from streamlake.catalog import load_catalog
    from streamlake.kafka.admin import apply_catalog
    from streamlake.topology import discover_streams

    settings = streamlake_conn.settings()
    asyncio.run(apply_catalog(settings, load_catalog(settings, discover_streams(settings.topologies_dir))))
    running = Pipeline(streamlake_conn)
    yield running
    running.stop_all()


def order(key: str, seq: int, ts_ms: int, amount: str = "10.00", currency: str = "EUR") -> dict[str, Any]:
    """A valid sales.orders record, stamped *ts_ms* (record timestamp and event time)."""
    value = {"order_id": key, "seq": seq, "customer_id": f"c-{key}", "amount": amount, "currency": currency,
             "status": "paid", "ts": ts_ms}
    return {"key": key.encode(), "value": json.dumps(value).encode(), "timestamp_ms": ts_ms}


def source_partitions(env: TestEnv, stream: str = "sales.orders") -> int:
    """The catalog's partition count of *stream*'s source topic (producers must key into it)."""
    from streamlake.catalog import TopicRole, load_catalog
    from streamlake.topology import discover_streams

    settings = env.settings()
    return load_catalog(settings, discover_streams(settings.topologies_dir)).for_stream(stream, TopicRole.SOURCE).partitions
