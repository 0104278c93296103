"""streamlake_dlq_triage end to end with dag.test(): thresholds fail the check, the chosen reason is redriven once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from streamlake.catalog import load_catalog
from streamlake.core.dlq import Reason
from streamlake.kafka.admin import apply_catalog
from streamlake.topology import discover_streams
from tests.airflow.support import load_dag, run_dag
from tests.integration.test_dlq_commands import _produce, dead
from tests.kafka_fixtures import TestEnv, read_topic

DAY = datetime(2026, 3, 1, tzinfo=UTC)


def _load_dlq(env: TestEnv) -> tuple[str, str]:
    settings = env.settings()
    asyncio.run(apply_catalog(settings, load_catalog(settings, discover_streams(settings.topologies_dir))))
    source = f"{env.prefix}.sales.orders.raw.v1"
    dlq = f"{source}.dlq"
    asyncio.run(_produce(settings, dlq, [
        dead(source, 0, 10, b"a", b"not json", Reason.INVALID_JSON),
        dead(source, 1, 11, b"b", b"not json either", Reason.INVALID_JSON),
        dead(source, 2, 13, b"c", b'{"order_id":"c","seq":1}', Reason.TRANSFORM_ERROR),
        dead(source, 3, 14, b"d", b'{"order_id":"d","seq":1}', Reason.TRANSFORM_ERROR),
    ]))
    return source, dlq


def test_triage_fails_over_threshold_then_redrives_the_chosen_reason_once_when_run_twice(streamlake_conn):
    env = streamlake_conn
    source, _ = _load_dlq(env)
    dag = load_dag("streamlake_dlq_triage")

    alert = run_dag(dag, DAY, {"fail_over": {"invalid-json": 1}})
    assert alert.state == "failed"
    assert alert.tasks["check_thresholds"] == "failed"
    assert alert.tasks["redrive"] == "skipped"  # no reason named: nothing is redriven

    conf = {"fail_over": {"*": 10}, "redrive_reason": "transform-error", "execute": True}
    first = run_dag(dag, DAY.replace(hour=1), conf)
    assert first.state == "success", first.tasks
    assert first.xcom["check_thresholds"]["records"] == 4
    assert first.xcom["redrive"]["sent"] == 2 and first.xcom["redrive"]["mode"] == "execute"
    json.dumps(first.xcom)  # XCom holds plain JSON

    again = run_dag(dag, DAY.replace(hour=1), conf)  # the same run again: the redrive resumes, sends nothing
    assert again.state == "success"
    assert again.xcom["redrive"]["sent"] == 0 and again.xcom["redrive"]["already_done"] == 4
    back = asyncio.run(read_topic(env.broker.bootstrap, source))
    assert sorted(r.key for r in back) == [b"c", b"d"]
