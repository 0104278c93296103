"""The record shape the core works on, independent of any Kafka client."""

from __future__ import annotations

from typing import NamedTuple, Sequence

Headers = Sequence[tuple[str, bytes]]


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
        found = None
        for hname, hvalue in self.headers:
            if hname == name:
                found = hvalue
        return found
