"""Triggers for the deferrable sensors: poll StreamLake's state on the triggerer's event loop.

Each trigger keeps its own deadline (``timeout_at``, epoch seconds) and ends
with exactly one event, ``{"status": "success" | "timeout" | "error", ...}``,
so the sensor can fail cleanly with the last evidence. ``dag.test()`` runs
triggers inline and does not enforce a deferral timeout itself; the deadline
here makes the behaviour the same under the triggerer and under test.
A broker that cannot be reached is retried until the deadline (and reported
in the timeout); any other StreamLake error (bad input, unknown table) ends
the trigger at once with its message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ..catalog import TopicRole, load_catalog
from ..config import Settings
from ..core.completeness import CompletenessReport
from ..core.thresholds import DepthCondition, depth_by_reason, depth_condition_met
from ..errors import BrokerError, StreamLakeError
from ..kafka.completeness import check_lake_complete
from ..kafka.group_status import read_group_status
from ..topology import discover_streams
from .calls import await_library, json_ready
from .hooks import Deployment, StreamLakeHook

__all__ = ["StreamLakeTrigger", "LakeCompleteTrigger", "DlqDepthTrigger", "ConsumerLagTrigger",
           "lake_completeness", "dlq_depth", "consumer_lag"]


class StreamLakeTrigger(BaseTrigger):
    """Poll :meth:`check` every ``poll_interval`` seconds until it says done or the deadline passes."""

    def __init__(self, *, streamlake_conn_id: str, poll_interval: float, timeout_at: float) -> None:
        super().__init__()
        self.streamlake_conn_id = streamlake_conn_id
        self.poll_interval = poll_interval
        self.timeout_at = timeout_at

    def _common(self) -> dict[str, Any]:
        return {"streamlake_conn_id": self.streamlake_conn_id, "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at}

    async def check(self, deployment: Deployment) -> tuple[bool, dict[str, Any], str]:
        """Return (done, evidence, one-line summary)."""
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            deployment = await StreamLakeHook(self.streamlake_conn_id).aget_deployment()
        except StreamLakeError as exc:
            yield TriggerEvent({"status": "error", "message": str(exc)})
            return
        evidence: dict[str, Any] = {}
        summary = "not checked yet"
        while True:
            try:
                done, evidence, summary = await self.check(deployment)
            except BrokerError as exc:  # the broker may come back before the deadline
                summary = str(exc)
                done = False
            except StreamLakeError as exc:
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            if done:
                yield TriggerEvent({"status": "success", "message": summary, "evidence": json_ready(evidence)})
                return
            left = self.timeout_at - time.time()
            if left <= 0:
                yield TriggerEvent({"status": "timeout", "message": summary, "evidence": json_ready(evidence)})
                return
            self.log.info("waiting: %s", summary)
            await asyncio.sleep(min(self.poll_interval, left))


# -- lake completeness -------------------------------------------------------------------------------

async def lake_completeness(deployment: Deployment, table: str, until_ms: int, grace_ms: int = 0,
                            bounds: Mapping[str, Mapping[int, int]] | None = None) -> CompletenessReport:
    """Judge *table* at *until_ms* (the lake names the stream and reads the landed offsets)."""
    from ..lake.info import resolve_target

    settings = deployment.settings
    lake = deployment.lake()
    target = await await_library(resolve_target, settings, table)

    async def landed() -> Mapping[int, int]:
        offsets: Mapping[int, int] = await await_library(_landed_offsets, settings, lake, target)
        return offsets

    return await check_lake_complete(settings, target.stream, target.name, until_ms, landed=landed,
                                     bounds=bounds, grace_ms=grace_ms)


def _landed_offsets(settings: Settings, lake: Any, target: Any) -> Mapping[int, int]:
    """The table's landed offsets; none while no lander has created the table yet (that is waiting, not an error)."""
    from ..lake.info import LakeSession, table_offsets

    with LakeSession(settings, lake) as session:
        if not session.catalog.table_exists(target.identifier):
            return {}
    return table_offsets(settings, target.name, lake)


class LakeCompleteTrigger(StreamLakeTrigger):
    """Fires when the table holds every record produced to its source before ``until_ms``.

    Each hop's bounds (the source's time-index bounds, then the barriers of the
    repartition and valid topics) are kept from the check that took them, so the
    wait ends once the readers reach them.
    """

    def __init__(self, *, table: str, until_ms: int, grace_ms: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.until_ms = until_ms
        self.grace_ms = grace_ms
        self._bounds: dict[str, dict[int, int]] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("streamlake.airflow.triggers.LakeCompleteTrigger",
                {"table": self.table, "until_ms": self.until_ms, "grace_ms": self.grace_ms, **self._common()})

    async def check(self, deployment: Deployment) -> tuple[bool, dict[str, Any], str]:
        report = await lake_completeness(deployment, self.table, self.until_ms, self.grace_ms, self._bounds)
        self._bounds = report.bounds  # the kept ones, plus any taken by this check
        return report.complete, report.as_dict(), report.describe()


# -- DLQ depth ---------------------------------------------------------------------------------------

async def dlq_depth(settings: Settings, stream: str, thresholds: Mapping[str, int],
                    condition: DepthCondition) -> tuple[bool, dict[str, Any], str]:
    """DLQ records per reason of *stream* against *thresholds*."""
    from ..kafka import dlq

    stats = (await await_library(dlq.dlq_stats, settings, stream))["streams"][stream]
    depths = depth_by_reason(stats.get("by_reason", []), thresholds)
    met = depth_condition_met(depths, condition)
    over = [d for d in depths if d.over]
    summary = (f"DLQ of {stream}: {stats.get('records', 0)} record(s); "
               + (", ".join(f"{d.stage}/{d.reason} {d.depth} > {d.threshold}" for d in over) or "no reason over")
               + f" (waiting until the depth {condition.value} its thresholds)")
    return met, {"stream": stream, "topic": stats["topic"], "records": stats.get("records", 0),
                 "condition": condition.value, "depths": [d.as_dict() for d in depths]}, summary


class DlqDepthTrigger(StreamLakeTrigger):
    """Fires when a stream's DLQ depth per reason meets the condition (exceeds or within its thresholds)."""

    def __init__(self, *, stream: str, thresholds: Mapping[str, int], condition: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self.thresholds = dict(thresholds)
        self.condition = DepthCondition(condition)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("streamlake.airflow.triggers.DlqDepthTrigger",
                {"stream": self.stream, "thresholds": self.thresholds, "condition": self.condition.value,
                 **self._common()})

    async def check(self, deployment: Deployment) -> tuple[bool, dict[str, Any], str]:
        return await dlq_depth(deployment.settings, self.stream, self.thresholds, self.condition)


# -- consumer lag ------------------------------------------------------------------------------------

#: What ingestion reads: a record held in the retry or repartition topic is not consumed yet.
_INGESTED = (TopicRole.SOURCE, TopicRole.RETRY, TopicRole.REPARTITION)


async def consumer_lag(settings: Settings, max_lag: int, stream: str | None) -> tuple[bool, dict[str, Any], str]:
    """The ingestion group's lag on the streams' source, retry and repartition topics against *max_lag*."""
    streams = discover_streams(settings.topologies_dir)
    catalog = load_catalog(settings, streams)
    status = await await_library(read_group_status, settings, catalog)
    names = [s.name for s in streams] if stream is None else [stream]
    for name in names:
        catalog.for_stream(name, TopicRole.SOURCE)  # an unknown stream is an error that names it
    topics = {t.name for t in catalog.topics if t.stream in names and t.role in _INGESTED}
    lag = status.total_lag(topics)
    partitions = [p.as_dict() for p in status.lags if p.topic in topics]
    summary = f"group {status.group} ({status.state}) has lag {lag} on {', '.join(sorted(topics))}; max {max_lag}"
    return lag <= max_lag, {"group": status.group, "state": status.state, "lag": lag, "max_lag": max_lag,
                            "partitions": partitions}, summary


class ConsumerLagTrigger(StreamLakeTrigger):
    """Fires when the ingestion group's lag is at most ``max_lag``."""

    def __init__(self, *, max_lag: int, stream: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_lag = max_lag
        self.stream = stream

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("streamlake.airflow.triggers.ConsumerLagTrigger",
                {"max_lag": self.max_lag, "stream": self.stream, **self._common()})

    async def check(self, deployment: Deployment) -> tuple[bool, dict[str, Any], str]:
        return await consumer_lag(deployment.settings, self.max_lag, self.stream)
