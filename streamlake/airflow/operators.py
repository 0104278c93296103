"""Operators over StreamLake's library: the functions the CLI calls, one per operator.

Every operator:
* is idempotent: running it twice leaves the same state as running it once
  (topics apply converges; a window replay, a redrive and an offset reset are
  keyed by an id or a target, and a rerun reports that it is done);
* returns a JSON-ready dict, which Airflow pushes to XCom as ``return_value``;
* fails with StreamLake's own message: a refusal or bad input fails the task
  without retries (retrying cannot help), an unreachable broker may be retried.
Changes are dry runs by default (``dry_run=True``), as in the CLI; the flag is
kept as ``is_dry_run`` (``BaseOperator.dry_run`` is a method) and may be templated.

Over 300 lines: one operator class per library call (topics, replay, offsets, DLQ, lake),
each small; they share the base operator's error mapping and are found in one place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from ..catalog import Catalog, TopicRole, load_catalog
from ..config import Settings
from ..core.dlq_policy import DlqFilter, parse_time
from ..core.replay_options import reset_spec_from_options
from ..core.thresholds import depth_by_reason, reasons_over
from ..errors import BrokerError, StreamLakeError
from ..kafka import admin, dlq, redrive, replay
from ..kafka.replay_ledger import record_replay, replay_recorded
from ..topology import discover_streams
from .calls import json_ready, run_library
from .hooks import Deployment, StreamLakeHook

__all__ = ["StreamLakeOperator", "TopicsApplyOperator", "ReplayWindowOperator", "ResetOffsetsOperator",
           "DlqStatsOperator", "DlqRedriveOperator", "LakeQueryToTableOperator", "LakeCompactOperator",
           "LakeExpireOperator", "kafka_datetime",
           "run_scoped_id"]


class StreamLakeOperator(BaseOperator):
    """Base: resolves the connection into settings and turns StreamLake errors into task failures."""

    ui_color = "#d6ecff"
    deployment: Deployment

    def __init__(self, *, streamlake_conn_id: str = StreamLakeHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.streamlake_conn_id = streamlake_conn_id

    def execute(self, context: Context) -> Any:
        try:
            self.deployment = StreamLakeHook(self.streamlake_conn_id).get_deployment()
            result = self.run(self.deployment.settings, context)
        except BrokerError as exc:
            raise AirflowException(f"{self.task_id}: {exc}") from exc
        except (StreamLakeError, ValueError) as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from exc
        return json_ready(result)

    def run(self, settings: Settings, context: Context) -> Any:
        raise NotImplementedError


def _is_true(flag: Any) -> bool:
    """A flag that may arrive rendered as text from a template: only True/"true" mean yes."""
    if isinstance(flag, str):
        if flag.strip().lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {flag!r}")
        return flag.strip().lower() == "true"
    return bool(flag)


def _catalog(settings: Settings) -> Catalog:
    return load_catalog(settings, discover_streams(settings.topologies_dir))


class TopicsApplyOperator(StreamLakeOperator):
    """``streamlake topics plan`` (dry run, the default) or ``topics apply``: converge the broker on the catalog."""

    def __init__(self, *, dry_run: bool = True, allow_partition_increase: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.is_dry_run = dry_run
        self.allow_partition_increase = allow_partition_increase

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        catalog = _catalog(settings)
        if _is_true(self.is_dry_run):
            plan = run_library(admin.plan_catalog, settings, catalog, self.allow_partition_increase)
            return {"dry_run": True, "in_sync": plan.in_sync, "plan": plan.as_dict()}
        report = run_library(admin.apply_catalog, settings, catalog, self.allow_partition_increase)
        if report.outcome is admin.ApplyOutcome.REFUSED:
            reasons = "; ".join(f"{c.kind.value} {c.topic}: {c.reason}" for c in report.plan.refused)
            raise AirflowFailException(f"{self.task_id}: topics apply refused, nothing was changed: {reasons}")
        return {"dry_run": False, **report.as_dict()}


def kafka_datetime(value: Any) -> str:
    """A datetime (or ISO text, as a template renders it) in Kafka's format, UTC: ``yyyy-MM-ddTHH:mm:ss.SSSZ``."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return value  # already Kafka's format, or wrong: the library's parser says which
    if not isinstance(value, datetime):
        raise ValueError(f"expected a datetime or ISO text, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def run_scoped_id(context: Context, task_id: str) -> str:
    """An id for this task and this run's logical date (the run id when there is none).

    Rerunning the task, or the DAG for the same date, gives the same id, so the
    library's per-id bookkeeping makes the rerun a no-op. a-z, 0-9 and '-', at
    most 64 characters.
    """
    dag_run = context["dag_run"]
    logical = getattr(dag_run, "logical_date", None)
    when = logical.strftime("%Y%m%dt%H%M%S") if logical is not None else dag_run.run_id
    raw = f"{dag_run.dag_id}-{task_id}-{when}".lower()
    text = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
    if len(text) > 64:
        text = f"{text[:55].rstrip('-')}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
    return text


class ReplayWindowOperator(StreamLakeOperator):
    """``streamlake replay window``: re-publish ``[start, end)`` of a topic; by default the run's data interval.

    Idempotent by replay id (default: one per task and logical date): a finished
    replay is recorded, and running it again sends nothing and says so.
    """

    template_fields: Sequence[str] = ("topic", "start", "end", "into", "key", "replay_id", "is_dry_run")

    def __init__(self, *, topic: str, start: Any = "{{ data_interval_start }}", end: Any = "{{ data_interval_end }}",
                 into: str | None = None, key: str | None = None, replay_id: str | None = None,
                 dry_run: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.topic, self.start, self.end, self.into, self.key = topic, start, end, into, key
        self.replay_id = replay_id
        self.is_dry_run = dry_run

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        replay_id = self.replay_id or run_scoped_id(context, self.task_id)
        plan = run_library(replay.plan_window, settings, self.topic, kafka_datetime(self.start),
                           kafka_datetime(self.end), into=self.into, key=self.key, replay_id=replay_id)
        if _is_true(self.is_dry_run):
            return {"dry_run": True, "outcome": "planned", **plan.to_dict()}
        if run_library(replay_recorded, settings, plan):
            self.log.info("replay %s of %s already finished; nothing sent", replay_id, self.topic)
            return {"dry_run": False, "outcome": "already-done", "replayed": 0, **plan.to_dict()}
        result = run_library(replay.replay_window, settings, plan)
        run_library(record_replay, settings, plan)
        self.log.info("replayed %d record(s) of %s into %s (replay id %s)", result.replayed, self.topic,
                      plan.into, replay_id)
        return {"dry_run": False, "outcome": "replayed", **result.to_dict()}


class ResetOffsetsOperator(StreamLakeOperator):
    """``streamlake replay reset-offsets`` with an absolute target; refuses while the group has members.

    Absolute targets only (a datetime, earliest, latest, an offset, a plan
    file): a rerun finds the group at its targets and changes nothing. A
    relative shift would move again on every run; export a plan and use
    ``from_file`` instead.
    """

    template_fields: Sequence[str] = ("group", "topics", "to_datetime", "from_file")

    def __init__(self, *, group: str, topics: Sequence[str] = (), all_topics: bool = False,
                 to_datetime: Any = None, to_earliest: bool = False, to_latest: bool = False,
                 to_offset: int | None = None, from_file: str | None = None, dry_run: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group, self.topics, self.all_topics = group, topics, all_topics
        self.to_datetime, self.to_earliest, self.to_latest = to_datetime, to_earliest, to_latest
        self.to_offset, self.from_file, self.is_dry_run = to_offset, from_file, dry_run

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        spec = reset_spec_from_options(
            group=self.group, to_datetime=None if self.to_datetime is None else kafka_datetime(self.to_datetime),
            to_earliest=self.to_earliest, to_latest=self.to_latest, to_offset=self.to_offset,
            from_file=self.from_file)
        plan = run_library(replay.plan_offset_reset, settings, self.group, spec, tuple(self.topics), self.all_topics)
        if _is_true(self.is_dry_run):
            return {**plan.to_dict(), "dry_run": True}
        result = run_library(replay.execute_offset_reset, settings, plan)
        return {**result.to_dict(), "dry_run": False}


def _dlq_topic_of(settings: Settings, stream: str) -> str:
    return _catalog(settings).for_stream(stream, TopicRole.DLQ).name


class DlqStatsOperator(StreamLakeOperator):
    """``streamlake dlq stats`` for one stream; fails when a reason's depth is over its threshold.

    ``fail_over`` maps a reason (or ``stage/reason``, or ``*`` for the rest) to
    the most records it may have; the stats are pushed to XCom either way.
    """

    template_fields: Sequence[str] = ("stream", "fail_over")

    def __init__(self, *, stream: str, fail_over: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self.fail_over: Any = dict(fail_over or {}) if not isinstance(fail_over, str) else fail_over

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        stats = run_library(dlq.dlq_stats, settings, self.stream)["streams"][self.stream]
        if not isinstance(self.fail_over, Mapping):
            raise ValueError(f"fail_over must be a mapping of reason to record count, got {self.fail_over!r}; "
                             "render it natively (DAG(render_template_as_native_obj=True))")
        depths = depth_by_reason(stats.get("by_reason", []), self.fail_over)
        over = reasons_over(depths)
        result = {**stats, "stream": self.stream, "thresholds": self.fail_over,
                  "over": [d.as_dict() for d in over]}
        if over:
            listed = ", ".join(f"{d.stage}/{d.reason} {d.depth} > {d.threshold}" for d in over)
            context["ti"].xcom_push(key="stats", value=json_ready(result))
            raise AirflowFailException(f"{self.task_id}: DLQ of {self.stream} is over its thresholds: {listed}; "
                                       f"inspect with `streamlake dlq inspect --topic {stats['topic']}`")
        return result


class DlqRedriveOperator(StreamLakeOperator):
    """``streamlake dlq redrive``: send matching DLQ records back to their origin (dry run by default).

    Resumable and exactly once per redrive id (default: one per task and logical
    date): a rerun continues after the last committed batch, so running the
    task twice sends each record once.
    """

    template_fields: Sequence[str] = ("stream", "topic", "reason", "stage", "since", "until", "key", "redrive_id",
                                      "is_dry_run")

    def __init__(self, *, stream: str | None = None, topic: str | None = None, reason: str | None = None,
                 stage: str | None = None, since: Any = None, until: Any = None, key: str | None = None,
                 dry_run: bool = True, redrive_id: str | None = None, max_attempts: int | None = None,
                 limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (stream is None) == (topic is None):
            raise ValueError("DlqRedriveOperator needs exactly one of stream= (its DLQ) or topic= (a DLQ topic)")
        self.stream, self.topic, self.reason, self.stage = stream, topic, reason, stage
        self.since, self.until, self.key = since, until, key
        self.is_dry_run, self.redrive_id, self.max_attempts, self.limit = dry_run, redrive_id, max_attempts, limit

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        topic = self.topic or _dlq_topic_of(settings, str(self.stream))
        filt = DlqFilter(
            reason=self.reason or None, stage=self.stage or None,
            since_ms=parse_time(kafka_datetime(self.since), "since") if self.since else None,
            until_ms=parse_time(kafka_datetime(self.until), "until") if self.until else None,
            key=self.key.encode() if self.key else None)
        redrive_id = self.redrive_id or run_scoped_id(context, self.task_id)
        mode = redrive.RedriveMode.DRY_RUN if _is_true(self.is_dry_run) else redrive.RedriveMode.EXECUTE
        report = run_library(redrive.redrive_dlq, settings, topic, filt, mode=mode, redrive_id=redrive_id,
                             max_attempts=self.max_attempts, limit=self.limit)
        return report.to_dict()



class LakeQueryToTableOperator(StreamLakeOperator):
    """Run SQL over the lake (DuckDB) and replace one key's rows of a lake table with the answer.

    Idempotent: the key's rows (for example one data interval) are overwritten
    in one commit, so a rerun leaves the same table.
    """

    template_fields: Sequence[str] = ("sql", "table", "key_column", "key_value")
    template_ext: Sequence[str] = (".sql",)

    def __init__(self, *, sql: str, table: str, key_column: str, key_value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sql, self.table, self.key_column, self.key_value = sql, table, key_column, key_value

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        from .lake_tables import replace_rows_from_query

        result = replace_rows_from_query(settings, self.deployment.lake(), self.sql, self.table, self.key_column,
                                         str(self.key_value))
        self.log.info("%s: %d row(s) for %s = %s", self.table, result["rows"], self.key_column, self.key_value)
        return result


class LakeCompactOperator(StreamLakeOperator):
    """``streamlake lake compact [TABLE]``: rewrite day partitions of many files (dry run by default).

    Idempotent (the lake's own rule): rows and landed offsets are unchanged, and a
    second run finds nothing to rewrite.
    """

    template_fields: Sequence[str] = ("table", "is_dry_run", "min_files")

    def __init__(self, *, table: str | None = None, dry_run: bool = True, min_files: Any = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table, self.is_dry_run, self.min_files = table, dry_run, min_files

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        from ..lake.maintenance import compact_tables

        execute = not _is_true(self.is_dry_run)
        plans = compact_tables(settings, self.table or None, execute=execute, min_files=int(self.min_files),
                               lake=self.deployment.lake())
        return {"dry_run": not execute, "tables": [p.as_dict() for p in plans]}


class LakeExpireOperator(StreamLakeOperator):
    """``streamlake lake expire [TABLE]``: expire old snapshots and remove orphan files (dry run by default)."""

    template_fields: Sequence[str] = ("table", "is_dry_run")

    def __init__(self, *, table: str | None = None, dry_run: bool = True, older_than: float | None = None,
                 retain_last: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table, self.is_dry_run = table, dry_run
        self.older_than, self.retain_last = older_than, retain_last

    def run(self, settings: Settings, context: Context) -> dict[str, Any]:
        from ..lake.maintenance import expire_tables

        execute = not _is_true(self.is_dry_run)
        plans = expire_tables(settings, self.table or None, execute=execute, older_than=self.older_than,
                              retain_last=self.retain_last, lake=self.deployment.lake())
        return {"dry_run": not execute, "tables": [p.as_dict() for p in plans]}
