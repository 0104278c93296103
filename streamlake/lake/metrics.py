"""The lander's counters, its Prometheus metrics and its web server (/health, /ready, /metrics).

Counters are plain numbers the lander updates after each commit; the collector turns
them, and the live lag, into metric families at scrape time. The web server binds to
loopback unless told otherwise; port 0 binds any free port, and the line
``web server listening on http://HOST:PORT`` names the port it got.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["TableCounters", "LanderCounters", "LanderCollector", "serve_lander_web", "COMMIT_BUCKETS"]

log = logging.getLogger("streamlake.lander")

COMMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class TableCounters:
    """What one lander did to one table since it started."""

    rows: int = 0
    files: int = 0
    bytes: int = 0
    record_bytes: int = 0
    commits: int = 0
    conflicts: int = 0
    rewinds: int = 0
    duplicates: int = 0
    dlq_by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    commit_seconds: list[float] = field(default_factory=list)  # bounded: the last 10,000

    def observe_commit(self, seconds: float) -> None:
        self.commit_seconds.append(seconds)
        if len(self.commit_seconds) > 10_000:
            del self.commit_seconds[:1_000]

    def as_dict(self) -> dict[str, Any]:
        latencies = sorted(self.commit_seconds)
        return {"rows": self.rows, "files": self.files, "bytes": self.bytes, "commits": self.commits,
                "conflicts": self.conflicts, "rewinds": self.rewinds, "duplicates_dropped": self.duplicates,
                "dlq": dict(self.dlq_by_reason),
                "commit_p50_s": latencies[len(latencies) // 2] if latencies else None}


@dataclass
class LanderCounters:
    tables: dict[str, TableCounters] = field(default_factory=dict)

    def table(self, name: str) -> TableCounters:
        return self.tables.setdefault(name, TableCounters())


class LanderCollector(Collector):
    """Metric families from the lander's counters and its live lag."""

    def __init__(self, counters: LanderCounters, lag: Callable[[], dict[tuple[str, int], int]],
                 ready: Callable[[], bool]) -> None:
        self.counters = counters
        self.lag = lag
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        families = {
            "rows": CounterMetricFamily("streamlake_lake_rows", "Rows landed in the table.", labels=["table"]),
            "files": CounterMetricFamily("streamlake_lake_files", "Data files written.", labels=["table"]),
            "bytes": CounterMetricFamily("streamlake_lake_bytes", "Data file bytes written.", labels=["table"]),
            "record_bytes": CounterMetricFamily("streamlake_lake_record_bytes",
                                                "Kafka record bytes (key + value) landed.", labels=["table"]),
            "commits": CounterMetricFamily("streamlake_lake_commits", "Table commits.", labels=["table"]),
            "conflicts": CounterMetricFamily("streamlake_lake_commit_conflicts",
                                             "Commits retried after another writer committed first.",
                                             labels=["table"]),
            "rewinds": CounterMetricFamily("streamlake_lake_rewinds",
                                           "Partitions re-read because the table moved under a batch.",
                                           labels=["table"]),
            "duplicates": CounterMetricFamily("streamlake_lake_duplicates_dropped",
                                              "Records dropped because their (key, seq) already landed.",
                                              labels=["table"]),
        }
        dlq = CounterMetricFamily("streamlake_lake_dlq", "Records sent to the landing DLQ.", labels=["table", "reason"])
        latency = HistogramMetricFamily("streamlake_lake_commit_seconds", "Table commit latency.", labels=["table"])
        for name, c in sorted(self.counters.tables.items()):
            for key, family in families.items():
                family.add_metric([name], getattr(c, key))
            for reason, n in sorted(c.dlq_by_reason.items()):
                dlq.add_metric([name, reason], n)
            buckets = [(str(b), sum(1 for s in c.commit_seconds if s <= b)) for b in COMMIT_BUCKETS]
            buckets.append(("+Inf", len(c.commit_seconds)))
            latency.add_metric([name], buckets, sum_value=sum(c.commit_seconds))
        yield from families.values()
        yield dlq
        yield latency
        lag = GaugeMetricFamily("streamlake_lake_lag", "Records in the topic not yet landed (end - landed offset).",
                                labels=["topic", "partition"])
        for (topic, partition), value in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        yield GaugeMetricFamily("streamlake_lake_ready", "1 once the lander sought its partitions.",
                                value=1 if self.ready() else 0)


async def serve_lander_web(host: str, port: int, registry: CollectorRegistry,
                           health: Callable[[], dict[str, Any]], ready: Callable[[], dict[str, Any]]
                           ) -> web.AppRunner:
    """Start the lander's web server; returns its runner (``await runner.cleanup()`` stops it)."""

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    async def health_view(request: web.Request) -> web.Response:
        body = health()
        return web.json_response(body, status=200 if body["alive"] else 503)

    async def ready_view(request: web.Request) -> web.Response:
        body = ready()
        return web.json_response(body, status=200 if body["ready"] else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/health", health_view)
    app.router.add_get("/ready", ready_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("web server listening on http://%s:%d", f"[{host}]" if ":" in host else host, runner.addresses[0][1])
    return runner
