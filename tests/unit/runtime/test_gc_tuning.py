"""The worker's garbage-collector settings (runtime/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streamlake.runtime.gc_tuning import collect_young_less_often, freeze_startup_objects


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_a_threshold_sets_the_young_collection_and_freezes_start_up_objects() -> None:
    gc.set_threshold(700, 10, 10)
    collect_young_less_often(10_000)
    assert gc.get_threshold() == (10_000, 10, 10)
    kept = object.__new__(type("Kept", (), {}))  # a tracked object made before the freeze
    freeze_startup_objects(10_000)
    assert gc.get_freeze_count() > 0 and not any(o is kept for o in gc.get_objects())


@pytest.mark.usefixtures("collector")
def test_zero_leaves_the_collector_as_it_is() -> None:
    gc.set_threshold(700, 10, 10)
    collect_young_less_often(0)
    freeze_startup_objects(0)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
