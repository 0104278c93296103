"""Errors of :mod:`streamlake.producer`, rooted in :class:`ProducerError`."""

from __future__ import annotations

from ..core.dlq import Reason, Stage
from ..errors import StreamLakeError

__all__ = ["ProducerError", "RecordRefused", "DeliveryFailed", "SequenceStoreError"]


class ProducerError(StreamLakeError):
    """A producer could not be set up, or was used wrongly."""


class RecordRefused(ProducerError):
    """The record breaks a rule of its stream: ingestion would dead-letter it, so it was never sent.

    Attributes:
        stage: the pipeline stage that refused it (decode, validate, key, sequence).
        reason: the DLQ reason code ingestion would have given it.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"refused at stage {reason.stage.value} ({reason.value}): {message}")
        self.reason = reason
        self.detail = message

    @property
    def stage(self) -> Stage:
        return self.reason.stage


class DeliveryFailed(ProducerError):
    """The broker did not acknowledge a record (after the client's own retries)."""


class SequenceStoreError(ProducerError):
    """The durable sequence allocator's file cannot be used (locked by another producer, unreadable)."""
