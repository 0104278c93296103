"""What the console knows: a sampler over the broker, and the views its pages and JSON API show.

The numbers come from the same library functions as the CLI, never from a
worker: stream totals from the counters changelogs (:class:`CountersReader`,
as the demo's reconciliation), lag, owners and DLQ depth from the group
(:func:`read_group_status`, as ``streamlake status``), DLQ records and
redrives from :mod:`streamlake.kafka.dlq` and :mod:`streamlake.kafka.redrive`
(as ``streamlake dlq``). The sampler keeps a short :class:`History` while the console runs; a broker that does not
answer is reported on every page and retried at the next tick, and never
ends the console.

Invariant: a view is a plain JSON-ready dict, the same one the page renders
and the API returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from ..catalog import Catalog, TopicRole, load_catalog
from ..config import Settings
from ..core.dlq import Reason
from ..core.dlq_policy import DlqError, DlqFilter, HeaderStyle
from ..core.pipeline import StreamCounters
from ..errors import StreamLakeError
from ..kafka.dlq import dlq_stats, inspect_dlq
from ..kafka.group_status import CountersReader, GroupStatus, read_group_status
from ..kafka.redrive import RedriveMode, new_redrive_id, redrive_dlq
from ..topology import Stream, discover_streams
from . import lake as lake_views
from .history import History, Sample, StreamSample

__all__ = ["StreamTopics", "ConsoleState", "stage_of"]

log = logging.getLogger("streamlake.console")

#: Table metadata changes once per lander commit: reading it every few seconds is enough.
LAKE_SAMPLE_SECONDS = 5.0


def stage_of(reason: str) -> str:
    """The stage a reason code belongs to (``unknown`` for a code this version does not know)."""
    try:
        return Reason(reason).stage.value
    except ValueError:
        return "unknown"


@dataclass(frozen=True)
class StreamTopics:
    """One stream's topics, as the catalog names them."""

    name: str
    source: str
    retry: str
    dlq: str
    output: str

    @property
    def consumed(self) -> tuple[str, str]:
        """The topics the ingestion agents read: their lag is the stream's consumer lag."""
        return self.source, self.retry

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "retry": self.retry, "dlq": self.dlq, "output": self.output}


def _topics(streams: list[Stream], catalog: Catalog) -> dict[str, StreamTopics]:
    return {s.name: StreamTopics(s.name, catalog.for_stream(s.name, TopicRole.SOURCE).name,
                                 catalog.for_stream(s.name, TopicRole.RETRY).name,
                                 catalog.for_stream(s.name, TopicRole.DLQ).name,
                                 catalog.for_stream(s.name, TopicRole.OUTPUT).name)
            for s in streams}


class ConsoleState:
    """The sampler and the views of one console process."""

    def __init__(self, settings: Settings, interval: float = 2.0, capacity: int = 900) -> None:
        if interval <= 0:
            raise StreamLakeError("the sample interval must be positive")
        self.settings = settings
        self.interval = interval
        streams = discover_streams(settings.topologies_dir)
        self.catalog = load_catalog(settings, streams)
        self.topics = _topics(streams, self.catalog)
        self.history = History(capacity)
        self.status: GroupStatus | None = None
        self.error: str | None = None
        self.sampled_at: float | None = None
        self.lake_freshness: dict[str, dict[str, Any]] = {}
        self.verified: dict[str, dict[str, Any]] = {}  # table -> its last verify report
        self.lake_error: str | None = None
        self._lake_sampled_at = 0.0
        self._reader: CountersReader | None = None
        self._reader_stack: contextlib.AsyncExitStack | None = None
        self._dlq_lock = asyncio.Lock()  # one DLQ scan at a time: each reads a whole topic

    # -- sampling ----------------------------------------------------------------------------

    async def sample_once(self) -> None:
        """Take one sample: stream totals, group status; on a broker error remember it and drop the reader."""
        try:
            if self._reader is None:
                stack = contextlib.AsyncExitStack()
                self._reader = await stack.enter_async_context(
                    CountersReader(self.settings, {name: t.source for name, t in self.topics.items()}))
                self._reader_stack = stack
            totals = await self._reader.poll()
            status = await read_group_status(self.settings, self.catalog)
        except (StreamLakeError, KafkaError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("console sample failed: %s", self.error)
            await self.close()
            return
        now = time.time()
        depth = {d.topic: d.depth for d in status.dlq}
        self.history.add(Sample(now, {
            name: StreamSample(totals.get(name, StreamCounters()), status.total_lag(t.consumed), depth.get(t.dlq, 0))
            for name, t in self.topics.items()}))
        self.status = status
        self.sampled_at = now
        self.error = None
        if lake_views.available() and now - self._lake_sampled_at >= max(self.interval, LAKE_SAMPLE_SECONDS):
            await self._sample_lake(now)

    async def _sample_lake(self, now: float) -> None:
        self._lake_sampled_at = now
        try:
            self.lake_freshness = await asyncio.to_thread(lake_views.freshness_by_stream, self.settings)
            self.lake_error = None
        except Exception as exc:  # a catalog or warehouse problem: shown on the page, the console goes on
            self.lake_error = f"{type(exc).__name__}: {exc}"
            log.warning("console lake sample failed: %s", self.lake_error)

    async def run_sampler(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        try:
            while True:
                began = time.monotonic()
                await self.sample_once()
                await asyncio.sleep(max(self.interval - (time.monotonic() - began), 0.05))
        finally:
            await self.close()

    async def close(self) -> None:
        stack, self._reader_stack, self._reader = self._reader_stack, None, None
        if stack is not None:
            try:
                await stack.aclose()
            except (KafkaError, OSError) as exc:  # the broker went away; nothing left to release
                log.debug("closing the counters reader: %s", exc)

    # -- views -------------------------------------------------------------------------------

    def _frame(self) -> dict[str, Any]:
        return {"sampled_at": self.sampled_at, "interval": self.interval, "error": self.error,
                "samples": len(self.history.samples), "app_id": self.settings.app_id}

    def stream_topics(self, name: str) -> StreamTopics:
        try:
            return self.topics[name]
        except KeyError:
            raise StreamLakeError(f"no stream {name!r} is declared; known streams: "
                                  f"{', '.join(sorted(self.topics)) or 'none'}") from None

    def _latest(self, name: str) -> StreamSample:
        latest = self.history.latest
        if latest is None or name not in latest.streams:
            return StreamSample(StreamCounters())
        return latest.streams[name]

    def overview(self) -> dict[str, Any]:
        """One card per stream: totals, ordering classes, lag, DLQ depth, rate series and lake freshness."""
        cards = []
        lake = self.lake_freshness
        for name, topics in sorted(self.topics.items()):
            latest = self._latest(name)
            cards.append({
                "name": name, "topics": topics.as_dict(), "totals": latest.counters.to_dict(),
                "classes": dict(sorted(latest.counters.classes.items())), "lag": latest.lag,
                "dlq_depth": latest.dlq_depth, "rates": self.history.rates(name), "lake": lake.get(name),
            })
        return {**self._frame(), "lake_available": lake_views.available(), "lake_error": self.lake_error,
                "streams": cards}

    def stream_view(self, name: str) -> dict[str, Any]:
        """Per-partition lag and owner, DLQ by stage and reason over time, gaps opened and filled."""
        topics = self.stream_topics(name)
        latest = self._latest(name)
        partitions = []
        members: list[dict[str, Any]] = []
        if self.status is not None:
            wanted = {topics.source: "source", topics.retry: "retry", topics.dlq: "dlq"}
            partitions = [{**p.as_dict(), "role": wanted[p.topic]} for p in self.status.lags if p.topic in wanted]
            members = [m.as_dict() for m in self.status.members]
        c = latest.counters
        by_reason = [{"stage": stage_of(r), "reason": r, "count": n}
                     for r, n in sorted(c.dlq_by_reason.items(), key=lambda item: (stage_of(item[0]), item[0]))]
        return {
            **self._frame(), "name": name, "topics": topics.as_dict(), "totals": c.to_dict(),
            "lag": latest.lag, "dlq_depth": latest.dlq_depth,
            "group": None if self.status is None else {"group": self.status.group, "state": self.status.state,
                                                        "members": members},
            "partitions": partitions, "dlq_by_reason": by_reason,
            "gaps": {"opened": c.gaps_opened, "filled": c.gaps_filled, "forgotten": c.gaps_forgotten},
            "dlq_rates": self.history.dlq_rates_by_reason(name), "levels": self.history.levels(name),
        }

    # -- DLQ ---------------------------------------------------------------------------------

    async def dlq_records(self, name: str, filt: DlqFilter, limit: int, preview_chars: int = 200,
                          style: HeaderStyle = HeaderStyle.STREAMLAKE) -> dict[str, Any]:
        """Matching DLQ records of stream *name*, as ``streamlake dlq inspect --json`` shows them."""
        topics = self.stream_topics(name)
        if not 1 <= limit <= 1000:
            raise DlqError("limit must be between 1 and 1000")
        async with self._dlq_lock:
            records = await inspect_dlq(self.settings, topics.dlq, filt, limit, style, preview_chars)
        return {**self._frame(), "stream": name, "topic": topics.dlq, "filter": filter_as_dict(filt),
                "limit": limit, "show_payload": self.settings.dlq_log_payload, "records": records}

    async def dlq_summary(self, name: str) -> dict[str, Any]:
        """``streamlake dlq stats --stream NAME``: counts by stage and reason, parked, retried, depth."""
        self.stream_topics(name)
        async with self._dlq_lock:
            stats = await dlq_stats(self.settings, name)
        return dict(stats["streams"][name], max_attempts=stats["max_attempts"])

    async def redrive(self, name: str, filt: DlqFilter, execute: bool, redrive_id: str | None) -> dict[str, Any]:
        """``streamlake dlq redrive`` for the filter: a dry run, or (execute) the sends."""
        topics = self.stream_topics(name)
        mode = RedriveMode.EXECUTE if execute else RedriveMode.DRY_RUN
        async with self._dlq_lock:
            report = await redrive_dlq(self.settings, topics.dlq, filt, mode=mode,
                                       redrive_id=redrive_id or new_redrive_id())
        return {**report.to_dict(), "stream": name, "filter": filter_as_dict(filt)}

    # -- lake --------------------------------------------------------------------------------

    async def lake_view(self) -> dict[str, Any]:
        """Tables, snapshots, row counts and the last verify result of each (when lake landing is installed)."""
        view = await asyncio.to_thread(lake_views.lake_overview, self.settings, dict(self.verified))
        return {**self._frame(), **view}

    async def verify_table(self, table: str) -> dict[str, Any]:
        """Run ``streamlake lake verify`` for *table* and keep its report for the lake page."""
        report = await asyncio.to_thread(lake_views.verify, self.settings, table)
        self.verified[report["table"]] = report
        return report


def filter_as_dict(filt: DlqFilter) -> dict[str, Any]:
    """A filter as JSON (key as UTF-8 text, times in ms)."""
    return {"reason": filt.reason, "stage": filt.stage, "since_ms": filt.since_ms, "until_ms": filt.until_ms,
            "key": None if filt.key is None else filt.key.decode("utf-8", "replace")}
