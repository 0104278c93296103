"""The console's short in-memory history: samples taken while it runs, and the rates between them.

Pure: no I/O. A :class:`Sample` holds, per stream, the stream totals (the
counters changelog, summed over every worker), the consumer lag and the DLQ
depth at one moment. :class:`History` keeps the last ``capacity`` samples;
rates are the difference of two consecutive samples over the time between
them, never negative (a total that went down, e.g. a reset counters topic,
shows as 0 for that step, not as a negative rate). Nothing survives a
restart of the console: the durable numbers stay in Kafka.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from ..core.pipeline import StreamCounters

__all__ = ["StreamSample", "Sample", "History", "RATE_SERIES"]

#: Rate series of the overview charts: name -> the counter it is the rate of.
RATE_SERIES = ("records_in", "forwarded", "dropped", "dlq")


@dataclass(frozen=True)
class StreamSample:
    """One stream at one moment."""

    counters: StreamCounters
    lag: int = 0
    dlq_depth: int = 0


@dataclass(frozen=True)
class Sample:
    """Every stream at one moment (``at`` in seconds since the epoch)."""

    at: float
    streams: dict[str, StreamSample] = field(default_factory=dict)


def _rate(newer: int, older: int, seconds: float) -> float:
    if seconds <= 0:
        return 0.0
    return max(newer - older, 0) / seconds


class History:
    """The last *capacity* samples, oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("a history needs room for at least 2 samples to show a rate")
        self.samples: collections.deque[Sample] = collections.deque(maxlen=capacity)

    def add(self, sample: Sample) -> None:
        if self.samples and sample.at <= self.samples[-1].at:
            return  # a clock step back: keep the series monotonic rather than draw a loop
        self.samples.append(sample)

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def _pairs(self, stream: str) -> list[tuple[float, float, StreamSample, StreamSample]]:
        """(time, seconds, older, newer) for each consecutive pair in which *stream* appears."""
        out = []
        previous: Sample | None = None
        for sample in self.samples:
            if previous is not None and stream in sample.streams and stream in previous.streams:
                out.append((sample.at, sample.at - previous.at, previous.streams[stream], sample.streams[stream]))
            previous = sample
        return out

    def rates(self, stream: str) -> dict[str, list[float]]:
        """Per-second rates of :data:`RATE_SERIES` for *stream*, with their times (``t``), oldest first."""
        out: dict[str, list[float]] = {"t": [], **{name: [] for name in RATE_SERIES}}
        for at, seconds, older, newer in self._pairs(stream):
            out["t"].append(at)
            for name in RATE_SERIES:
                out[name].append(_rate(getattr(newer.counters, name), getattr(older.counters, name), seconds))
        return out

    def dlq_rates_by_reason(self, stream: str) -> dict[str, Any]:
        """Per-second DLQ rates per reason for *stream*: ``{"t": [...], "reasons": {reason: [...]}}``."""
        pairs = self._pairs(stream)
        reasons = sorted({r for _, _, _, newer in pairs for r in newer.counters.dlq_by_reason})
        series: dict[str, list[float]] = {r: [] for r in reasons}
        for _, seconds, older, newer in pairs:
            for r in reasons:
                series[r].append(_rate(newer.counters.dlq_by_reason.get(r, 0), older.counters.dlq_by_reason.get(r, 0),
                                       seconds))
        return {"t": [at for at, *_ in pairs], "reasons": series}

    def levels(self, stream: str) -> dict[str, list[float]]:
        """Levels over time for *stream*: lag, DLQ depth, gaps opened / filled / still open."""
        out: dict[str, list[float]] = {k: [] for k in ("t", "lag", "dlq_depth", "gaps_opened", "gaps_filled",
                                                       "gaps_open")}
        for sample in self.samples:
            s = sample.streams.get(stream)
            if s is None:
                continue
            c = s.counters
            out["t"].append(sample.at)
            out["lag"].append(s.lag)
            out["dlq_depth"].append(s.dlq_depth)
            out["gaps_opened"].append(c.gaps_opened)
            out["gaps_filled"].append(c.gaps_filled)
            out["gaps_open"].append(max(c.gaps_opened - c.gaps_filled - c.gaps_forgotten, 0))
        return out
