"""How records reach a stream binding, decided once from the settings and passed in."""

from __future__ import annotations

import enum

from ..config import Settings

__all__ = ["RecordPath"]


class RecordPath(enum.Enum):
    """How records reach the binding, and how results and state leave it."""

    #: Faust's per-event path; sends and table writes join the transaction of
    #: the source partition, committed with its offset.
    EXACTLY_ONCE = "exactly_once"
    #: A Faust agent with ``take_events`` batches; state written after each batch.
    CLASSIC = "classic"
    #: The batch fast path (fastpath.py); state written before each offset commit.
    FAST = "fast"

    @classmethod
    def for_settings(cls, settings: Settings) -> RecordPath:
        """exactly_once keeps Faust's per-event path (its sends must join Faust's transactions)."""
        if settings.processing_guarantee == "exactly_once":
            return cls.EXACTLY_ONCE
        return cls.FAST if settings.fast_path else cls.CLASSIC

    @property
    def batch_consumer(self) -> bool:
        """Whether StreamLake's consumer (fastpath.BatchConsumer) owns the read positions."""
        return self is not RecordPath.EXACTLY_ONCE
