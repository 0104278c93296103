"""streamlake_backfill: replay a window of a topic, given as DAG params, back through its stream.

``./scripts/airflow dags test streamlake_backfill -c '{"start": "2026-12-01T00:00:00Z",
"end": "2026-12-02T00:00:00Z", "execute": true}'``. Without ``start``/``end`` the window is
the run's data interval. The replay id is the run's: running the same DAG run again sends
nothing (the replay is recorded once finished). Without ``execute`` it only plans. After a
real replay it waits until the ingestion group has consumed the copies.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, Param
from streamlake.airflow.operators import ReplayWindowOperator
from streamlake.airflow.sensors import ConsumerLagSensor

with DAG(
    dag_id="streamlake_backfill",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "topic": Param("sales.orders.raw.v1", type="string", description="topic to read the window from"),
        "stream": Param("sales.orders", type="string", description="the stream that consumes the copies"),
        "start": Param("", type="string", description="window start, ISO 8601 (empty: data_interval_start)"),
        "end": Param("", type="string", description="window end, excluded (empty: data_interval_end)"),
        "into": Param("", type="string", description="target topic (empty: the topic itself)"),
        "execute": Param(False, type="boolean", description="replay for real (default: plan only)"),
        "lag_timeout": Param(600, type="integer", description="seconds to wait for the copies to be consumed"),
    },
    tags=["streamlake"],
) as dag:
    replay = ReplayWindowOperator(
        task_id="replay_window", topic="{{ params.topic }}",
        start="{{ params.start or data_interval_start }}", end="{{ params.end or data_interval_end }}",
        into="{{ params.into or None }}", dry_run="{{ not params.execute }}")
    caught_up = ConsumerLagSensor(task_id="wait_consumed", stream="{{ params.stream }}", max_lag=0,
                                  poke_interval=2, timeout=600)
    replay >> caught_up
