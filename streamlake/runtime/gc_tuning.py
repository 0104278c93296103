"""A worker's garbage collector: rarer young collections, and start-up objects left out of later ones.

A worker allocates a few short-lived container objects per record (records,
tuples, futures), which reference counting frees; Python's collector still
runs every 700 allocations and every hundredth run walks every object the
worker holds since start-up (Faust's, aiokafka's, the modules'). In a
1M-record run that was 2.8 s of the worker's 13.6 s of CPU, most of it in
about forty full collections (docs/BENCHMARKS.md). Freezing what exists once
the worker has started takes those objects out of every later collection.
Neither change delays freeing: only objects in reference cycles wait for a
collection, and cycles created after start-up are still collected.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["collect_young_less_often", "freeze_startup_objects"]

log = logging.getLogger("streamlake.startup")


def collect_young_less_often(young_threshold: int) -> None:
    """Run the young collection every *young_threshold* allocations (0: leave the collector as it is)."""
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


def freeze_startup_objects(young_threshold: int) -> None:
    """Move every object tracked now out of later collections (0: leave the collector as it is)."""
    if young_threshold > 0:
        gc.freeze()
        log.info("garbage collector: %d start-up objects frozen, young collection every %d allocations",
                 gc.get_freeze_count(), gc.get_threshold()[0])
