"""StreamLakeMonitor: the committed offsets /metrics shows, through Faust's sensor hooks (no broker)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from streamlake.runtime.monitor import StreamLakeMonitor

A0, A1, B0 = TP("a", 0), TP("a", 1), TP("b", 0)


def rebalance(monitor: StreamLakeMonitor, app: SimpleNamespace, found: dict[TP, int]) -> None:
    """One rebalance as Faust drives the sensors: start, the consumer's seek reports what it found, end."""
    app.rebalancing_count += 1
    state = monitor.on_rebalance_start(app)
    monitor.on_tp_commit(found)
    monitor.on_rebalance_end(app, state)


def test_offsets_found_at_the_seek_outlive_the_rebalance_end_and_commits_move_them() -> None:
    monitor, app = StreamLakeMonitor(), SimpleNamespace(rebalancing_count=0)
    rebalance(monitor, app, {A0: 10, A1: 7})
    assert monitor.tp_committed_offsets == {A0: 10, A1: 7}
    monitor.on_tp_commit({A0: 15})
    assert monitor.tp_committed_offsets == {A0: 15, A1: 7}
    assert monitor.rebalances == 1


def test_a_revoked_partition_is_forgotten_at_the_next_rebalance() -> None:
    monitor, app = StreamLakeMonitor(), SimpleNamespace(rebalancing_count=0)
    rebalance(monitor, app, {A0: 10, B0: 3})
    rebalance(monitor, app, {A0: 12})
    assert monitor.tp_committed_offsets == {A0: 12}
    assert monitor.rebalances == 2
