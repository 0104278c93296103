"""streamlake_lake_maintenance: nightly compaction, then snapshot expiry, of the lake tables.

Compaction rewrites day partitions that hold many small files (rows and landed offsets
unchanged); expiry then drops old snapshots and orphan files, which keeps commit
latency flat (docs/LAKE.md). Both are the lake's own idempotent operations: a second
run finds nothing to do. ``execute: false`` only reports what would change.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, Param
from streamlake.airflow.operators import LakeCompactOperator, LakeExpireOperator

with DAG(
    dag_id="streamlake_lake_maintenance",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "table": Param("", type="string", description="one table (identifier); empty: every lake table"),
        "execute": Param(True, type="boolean", description="change the tables (false: report only)"),
        "min_files": Param(4, type="integer", minimum=2, description="compact a day holding at least this many files"),
    },
    tags=["streamlake", "lake"],
) as dag:
    compact = LakeCompactOperator(task_id="compact", table="{{ params.table }}", dry_run="{{ not params.execute }}",
                                  min_files="{{ params.min_files }}")
    expire = LakeExpireOperator(task_id="expire", table="{{ params.table }}", dry_run="{{ not params.execute }}")
    compact >> expire
