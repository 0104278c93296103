"""partition_offsets (/metrics' lag and committed offset): committed offsets from the monitor, no broker."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from streamlake.runtime.metrics import partition_offsets
from streamlake.runtime.monitor import StreamLakeMonitor
from streamlake.runtime.record_path import RecordPath

SRC0, SRC1, OTHER = TP("src", 0), TP("src", 1), TP("changelog", 0)


class FakeConsumer:
    """Faust's consumer as metrics sees it: assignment, highwaters, and its own committed-offset map."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self._committed_offset = committed

    def assignment(self) -> set[TP]:
        return {SRC0, SRC1, OTHER}

    def highwater(self, tp: TP) -> int:
        return 100


def app(path: RecordPath, monitor_offsets: dict[TP, int], consumer_offsets: dict[TP, int | None]) -> SimpleNamespace:
    monitor = StreamLakeMonitor()
    monitor.on_tp_commit(monitor_offsets)
    binding = SimpleNamespace(topics=SimpleNamespace(input_names=["src"]))
    return SimpleNamespace(record_path=path, monitor=monitor, consumer=FakeConsumer(consumer_offsets), bindings=[binding])


def test_committed_offsets_come_from_the_monitor_on_streamlakes_consumer() -> None:
    offsets = partition_offsets(app(RecordPath.FAST, {SRC0: 40}, {SRC0: 10, SRC1: 20}))  # type: ignore[arg-type]
    assert offsets == {("src", 0): (100, 40), ("src", 1): (100, None)}


def test_exactly_once_falls_back_to_the_offsets_fausts_consumer_found_at_its_seek() -> None:
    offsets = partition_offsets(app(RecordPath.EXACTLY_ONCE, {SRC0: 40}, {SRC0: 10, SRC1: 20}))  # type: ignore[arg-type]
    assert offsets == {("src", 0): (100, 40), ("src", 1): (100, 20)}
