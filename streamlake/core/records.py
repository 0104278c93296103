"""The record shape the core works on, independent of any Kafka client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

Headers = Sequence[tuple[str, bytes]]


class ConsumedRecord(Protocol):
    """What the core reads from a record: aiokafka's ``ConsumerRecord`` has it, and so does :class:`SourceRecord`.

    The fast path hands aiokafka's records to the core as they are, so
    building a second object per record is not on the hot path.
    """

    # Read-only members: a NamedTuple's fields and aiokafka's record attributes both satisfy them.
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # ms since the epoch
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


def header_of(record: ConsumedRecord, name: str) -> bytes | None:
    """The last value of header *name* on *record*, or None."""
    found = None
    for hname, hvalue in record.headers:
        if hname == name:
            found = hvalue
    return found


class SourceRecord(NamedTuple):
    """One consumed record, exactly as it came off the source topic.

    A named tuple rather than a frozen dataclass: every record of every
    stream is built once, and a tuple builds several times faster.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        """The last value of header *name*, or None."""
        return header_of(self, name)
