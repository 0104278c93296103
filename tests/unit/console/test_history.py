"""The console's in-memory history: bounded, monotonic, rates never negative."""

from __future__ import annotations

import pytest

from streamlake.console.history import History, Sample, StreamSample
from streamlake.core.pipeline import StreamCounters


def counters(records_in: int, forwarded: int = 0, dlq: int = 0, **by_reason: int) -> StreamCounters:
    c = StreamCounters(records_in=records_in, forwarded=forwarded, dlq=dlq)
    c.dlq_by_reason.update({k.replace("_", "-"): v for k, v in by_reason.items()})
    return c


def test_rates_are_differences_over_time_between_consecutive_samples():
    h = History(10)
    h.add(Sample(100.0, {"s": StreamSample(counters(0))}))
    h.add(Sample(102.0, {"s": StreamSample(counters(100, forwarded=90, dlq=10))}))
    h.add(Sample(103.0, {"s": StreamSample(counters(130, forwarded=110, dlq=20))}))
    rates = h.rates("s")
    assert rates["t"] == [102.0, 103.0]
    assert rates["records_in"] == [50.0, 30.0]
    assert rates["forwarded"] == [45.0, 20.0]
    assert rates["dlq"] == [5.0, 10.0]


def test_a_total_that_goes_down_shows_a_zero_rate_not_a_negative_one():
    h = History(10)
    h.add(Sample(1.0, {"s": StreamSample(counters(500))}))
    h.add(Sample(2.0, {"s": StreamSample(counters(10))}))
    assert h.rates("s")["records_in"] == [0.0]


def test_capacity_bounds_the_history_and_a_clock_step_back_is_ignored():
    h = History(3)
    for t in range(5):
        h.add(Sample(float(t), {"s": StreamSample(counters(t))}))
    h.add(Sample(1.0, {"s": StreamSample(counters(99))}))
    assert [s.at for s in h.samples] == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        History(1)


def test_dlq_rates_per_reason_include_reasons_that_appear_later():
    h = History(10)
    h.add(Sample(0.0, {"s": StreamSample(counters(0))}))
    h.add(Sample(1.0, {"s": StreamSample(counters(5, dlq=2, invalid_json=2))}))
    h.add(Sample(2.0, {"s": StreamSample(counters(9, dlq=5, invalid_json=3, missing_key=2))}))
    view = h.dlq_rates_by_reason("s")
    assert view["t"] == [1.0, 2.0]
    assert view["reasons"] == {"invalid-json": [2.0, 1.0], "missing-key": [0.0, 2.0]}


def test_levels_show_lag_depth_and_open_gaps():
    c = counters(10)
    c.gaps_opened, c.gaps_filled, c.gaps_forgotten = 5, 2, 1
    h = History(4)
    h.add(Sample(1.0, {"s": StreamSample(c, lag=7, dlq_depth=3)}))
    levels = h.levels("s")
    assert (levels["lag"], levels["dlq_depth"], levels["gaps_open"]) == ([7], [3], [2])
    assert h.levels("other")["t"] == []
