"""Prometheus metrics of one worker, read from the bindings and Faust at scrape time.

Nothing is counted twice: the collector turns the counters the ingestion path
already keeps (:class:`~streamlake.core.pipeline.StreamCounters`) and Faust's
consumer state into metric families when ``/metrics`` is scraped. Each app
has its own :class:`CollectorRegistry`, so several apps in one process (tests)
never share or clash.

Faust state read here, through public seams where Faust has them: the
committed offsets (as Kafka stores them: the next offset to read) and the
rebalance count from ``app.monitor`` (:class:`~streamlake.runtime.monitor.StreamLakeMonitor`,
fed by Faust's sensor hooks), ``app.rebalancing``, and the consumer's
assignment and highwaters. Two reads go through :mod:`streamlake.runtime.compat`:
whether table recovery completed (Faust has no public flag that does not start
the recovery service), and, on the exactly_once path only, the offsets Faust's
own consumer found at assignment (it reports commits to the monitor, not seeks).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.dlq import Reason
from .compat import committed_offsets, recovery_completed

if TYPE_CHECKING:
    from .factory import StreamLakeApp

__all__ = ["StreamLakeCollector", "metrics_registry", "render_metrics", "partition_offsets", "readiness"]

_VIOLATIONS = ("gap", "duplicate", "late")


def _stage_of(reason: str) -> str:
    try:
        return Reason(reason).stage.value
    except ValueError:
        return "unknown"


class StreamLakeCollector(Collector):
    """Yield StreamLake's metric families from one app's live state."""

    def __init__(self, app: StreamLakeApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._stream_metrics()
        yield from self._consumer_metrics()

    def _stream_metrics(self) -> Iterator[Metric]:
        records_in = CounterMetricFamily("streamlake_records_in", "Records read from the source, per stream.", labels=["stream"])
        forwarded = CounterMetricFamily("streamlake_records_forwarded", "Records produced to the output topic.",
                                        labels=["stream"])
        dropped = CounterMetricFamily("streamlake_records_dropped", "Records dropped on purpose, by ordering class.",
                                      labels=["stream", "class"])
        dlq = CounterMetricFamily("streamlake_records_dlq", "Records sent to the DLQ, by failing stage and reason.",
                                  labels=["stream", "stage", "reason"])
        classes = CounterMetricFamily("streamlake_sequence_records", "Records classified by the sequence tracker.",
                                      labels=["stream", "class"])
        violations = CounterMetricFamily("streamlake_ordering_violations",
                                         "Ordering violations (gap, duplicate, late), whatever their policy did.",
                                         labels=["stream", "class"])
        gaps = CounterMetricFamily("streamlake_gaps", "Sequence gaps opened, filled and forgotten (state bound).",
                                   labels=["stream", "event"])
        repartitioned = CounterMetricFamily(
            "streamlake_records_repartitioned",
            "Source records on another partition than their key's, moved there through the repartition topic.",
            labels=["stream"])
        for binding in self.app.bindings:
            name = binding.stream.name
            c = binding.counters
            records_in.add_metric([name], c.records_in)
            forwarded.add_metric([name], c.forwarded)
            repartitioned.add_metric([name], c.repartitioned)
            for cls, n in sorted(c.dropped_by_class.items()):
                dropped.add_metric([name, cls], n)
            for reason, n in sorted(c.dlq_by_reason.items()):
                dlq.add_metric([name, _stage_of(reason), reason], n)
            for cls, n in sorted(c.classes.items()):
                classes.add_metric([name, cls], n)
            for cls in _VIOLATIONS:
                violations.add_metric([name, cls], c.classes.get(cls, 0))
            for event, n in (("opened", c.gaps_opened), ("filled", c.gaps_filled), ("forgotten", c.gaps_forgotten)):
                gaps.add_metric([name, event], n)
        yield from (records_in, forwarded, dropped, dlq, classes, violations, gaps, repartitioned)

    def _consumer_metrics(self) -> Iterator[Metric]:
        app = self.app
        lag = GaugeMetricFamily("streamlake_consumer_lag", "Records not yet committed: highwater - committed offset.",
                                labels=["topic", "partition"])
        committed = GaugeMetricFamily("streamlake_consumer_committed_offset", "Committed offset (next to read).",
                                      labels=["topic", "partition"])
        highwater = GaugeMetricFamily("streamlake_consumer_highwater", "Log end offset the consumer last saw.",
                                      labels=["topic", "partition"])
        for (topic, partition), (hw, done) in sorted(partition_offsets(app).items()):
            labels = [topic, str(partition)]
            if hw is not None:
                highwater.add_metric(labels, hw)
            if done is not None:
                committed.add_metric(labels, done)
            if hw is not None:
                lag.add_metric(labels, max(hw - (done or 0), 0))
        ready, checks = readiness(app)
        yield lag
        yield committed
        yield highwater
        yield CounterMetricFamily("streamlake_rebalances", "Rebalances this worker took part in.",
                                  value=app.monitor.rebalances)
        yield GaugeMetricFamily("streamlake_rebalancing", "1 while a rebalance is in progress.",
                                value=1 if app.rebalancing else 0)
        yield GaugeMetricFamily("streamlake_assigned_partitions", "Source partitions assigned to this worker.",
                                value=len(checks["assigned"]))
        yield GaugeMetricFamily("streamlake_ready", "1 when the worker is ready (see /ready).", value=1 if ready else 0)


def _source_topics(app: StreamLakeApp) -> set[str]:
    names: set[str] = set()
    for binding in app.bindings:
        names.update(binding.topics.input_names)
    return names


def _assignment(app: StreamLakeApp) -> set[Any]:
    try:
        return set(app.consumer.assignment())
    except Exception:  # no consumer thread yet (starting): nothing assigned
        return set()


def _committed(app: StreamLakeApp) -> Mapping[Any, int | None]:
    offsets: dict[Any, int | None] = dict(app.monitor.tp_committed_offsets)
    if not app.record_path.batch_consumer:
        # Faust's own consumer (exactly_once) reports its commits to the monitor, not what it found at the seek
        for tp, offset in committed_offsets(app.consumer).items():
            offsets.setdefault(tp, offset)
    return offsets


def partition_offsets(app: StreamLakeApp) -> dict[tuple[str, int], tuple[int | None, int | None]]:
    """(highwater, committed offset) per assigned source partition of this worker."""
    sources = _source_topics(app)
    consumer = app.consumer
    committed_map = _committed(app)
    out: dict[tuple[str, int], tuple[int | None, int | None]] = {}
    for tp in _assignment(app):
        if tp.topic not in sources:
            continue
        try:
            hw = consumer.highwater(tp)
        except Exception:  # not fetched yet
            hw = None
        out[(tp.topic, tp.partition)] = (hw, committed_map.get(tp))
    return out


def readiness(app: StreamLakeApp) -> tuple[bool, dict[str, Any]]:
    """Whether the worker is ready to process, and the checks behind the answer.

    Ready means: the worker has joined the group (its consumer has a
    generation), no rebalance is in progress, and table recovery has completed.
    A worker can be ready with no source partitions (more workers than
    partitions); ``assigned`` lists what it owns.
    """
    recovered = recovery_completed(app)
    joined = app.consumer_generation_id not in (None, 0, -1)
    rebalancing = bool(app.rebalancing)
    sources = _source_topics(app)
    assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in _assignment(app) if tp.topic in sources)
    checks = {"joined": joined, "rebalancing": rebalancing, "recovery_completed": recovered, "assigned": assigned,
              "rebalances": app.monitor.rebalances}
    return joined and recovered and not rebalancing, checks


def metrics_registry(app: StreamLakeApp) -> CollectorRegistry:
    """Return the app's own registry, creating it (with StreamLake's collector) once."""
    registry = app.metrics_registry
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StreamLakeCollector(app))
        app.metrics_registry = registry
    return registry


def render_metrics(app: StreamLakeApp) -> bytes:
    """The Prometheus text exposition of *app*'s metrics."""
    return generate_latest(metrics_registry(app))
