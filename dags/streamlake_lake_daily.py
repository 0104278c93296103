"""streamlake_lake_daily: wait until the lake is complete for the data interval, then summarise it in the lake.

* ``wait_complete`` (deferrable) waits until ``sales.orders_v1`` holds every record
  produced to ``sales.orders.raw.v1`` before the interval's end: landed, dropped as a
  duplicate, or in a DLQ (the rule is in docs/AIRFLOW.md).
* ``daily_summary`` aggregates the orders produced in the interval (``_kafka_timestamp``,
  the same clock the completeness rule uses) per currency with DuckDB over the lake and writes them to ``sales.orders_v1_daily``, replacing that interval's rows, so
  a rerun leaves the same table.

The schedule is a one-day data interval: a scheduled run covers one calendar day (UTC);
``dags test streamlake_lake_daily <D>`` covers the 24 hours before ``D``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, DeltaDataIntervalTimetable, Param
from streamlake.airflow.operators import LakeQueryToTableOperator
from streamlake.airflow.sensors import LakeCompleteSensor

SUMMARY_SQL = """
SELECT TIMESTAMPTZ '{{ data_interval_start.isoformat() }}' AS interval_start,
       TIMESTAMPTZ '{{ data_interval_end.isoformat() }}'   AS interval_end,
       currency,
       count(*)    AS orders,
       sum(amount) AS amount
FROM {{ params.table }}
WHERE _kafka_timestamp >= TIMESTAMPTZ '{{ data_interval_start.isoformat() }}'
  AND _kafka_timestamp <  TIMESTAMPTZ '{{ data_interval_end.isoformat() }}'
GROUP BY currency
ORDER BY currency
"""

with DAG(
    dag_id="streamlake_lake_daily",
    schedule=DeltaDataIntervalTimetable(timedelta(days=1)),  # runs with a [start, end) interval
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    params={
        "table": Param("sales.orders_v1", type="string", description="the lake table (its identifier)"),
    },
    tags=["streamlake", "lake"],
) as dag:
    complete = LakeCompleteSensor(task_id="wait_complete", table="{{ params.table }}", poke_interval=5,
                                  timeout=6 * 3600)
    summary = LakeQueryToTableOperator(
        task_id="daily_summary", sql=SUMMARY_SQL, table="{{ params.table }}_daily",
        key_column="interval_start", key_value="{{ data_interval_start.isoformat() }}")
    complete >> summary
