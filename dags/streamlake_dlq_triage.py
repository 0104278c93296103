"""streamlake_dlq_triage: DLQ stats, fail (and alert) over a threshold, redrive a chosen reason after a fix.

Run it with params, e.g.
``./scripts/airflow dags test streamlake_dlq_triage -c '{"redrive_reason": "transform-error", "execute": true}'``.
* ``check_thresholds`` fails when a reason's DLQ depth is over ``fail_over``
  (a reason, ``stage/reason`` or ``*`` -> records); its failure is the alert
  (wire ``on_failure_callback`` or email to it).
* ``redrive`` does not depend on the check (the fix is deployed; now send the
  records back, whatever the depth): only records of ``redrive_reason``, only
  with ``execute``; otherwise it reports what it would send. The redrive id is the
  run's, so running the DAG run again resumes it and sends nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, Param, task
from streamlake.airflow.operators import DlqRedriveOperator, DlqStatsOperator

with DAG(
    dag_id="streamlake_dlq_triage",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "stream": Param("sales.orders", type="string", description="<domain>.<dataset>"),
        "fail_over": Param({"*": 1000}, type="object", description="reason (or stage/reason, or *) -> max records"),
        "redrive_reason": Param("", type="string", description="redrive only this reason; empty: no redrive"),
        "execute": Param(False, type="boolean", description="send for real (default: a dry run)"),
    },
    tags=["streamlake"],
) as dag:
    DlqStatsOperator(task_id="check_thresholds", stream="{{ params.stream }}",
                             fail_over="{{ params.fail_over }}")

    @task.short_circuit
    def reason_chosen(params: dict | None = None) -> bool:
        """Skip the redrive unless a reason was named: a redrive never takes the whole DLQ by default."""
        return bool(params and params.get("redrive_reason"))

    redrive = DlqRedriveOperator(
        task_id="redrive", stream="{{ params.stream }}", reason="{{ params.redrive_reason }}",
        dry_run="{{ not params.execute }}")

    reason_chosen() >> redrive
