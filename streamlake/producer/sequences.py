"""Where a record's per-key sequence number comes from, and the durable local allocator.

Two sources (:class:`SequenceSource`):

* ``FIELD``: the record already carries its sequence (the stream's
  ``sequence_field`` or ``sequence_header``), set by the system that owns the
  data (a database's row version, an outbox id, a file's line order). Right when
  several producers may send the same key, when a record may be re-sent (the
  same seq makes it a counted duplicate downstream), and for files that are
  re-loaded.
* ``ALLOCATE``: the producer numbers each key's records itself from a local
  SQLite file. Right for a single service that owns its keys and has no
  natural sequence. **Precondition: one producer per key** — two allocators
  for one key would both hand out 1, 2, 3 … and ingestion would drop one side's
  records as duplicates. The file is locked so that one process uses it at a time.

Allocator invariants: a number is stored (committed, fsynced) before any
record carrying it is handed to the Kafka client, so after a crash or restart
the next number is always above every number that may have been sent — a
restart can open a gap (numbers stored but never sent; ingestion forwards
past it and counts the gap) but never reuses a number. Numbers of refused
records are not consumed. No Kafka client is imported here.
"""

from __future__ import annotations

import enum
import fcntl
import os
import sqlite3
from pathlib import Path

from .errors import SequenceStoreError

__all__ = ["SequenceSource", "SequenceAllocator", "FIRST_SEQUENCE"]

FIRST_SEQUENCE = 1


class SequenceSource(enum.Enum):
    """Where the per-key sequence number comes from."""

    FIELD = "field"
    ALLOCATE = "allocate"


class SequenceAllocator:
    """Per-key increasing numbers that survive a restart (a SQLite file, group-committed).

    :meth:`peek` says what :meth:`take` would return; :meth:`take` consumes it in
    memory; :meth:`persist` stores every number taken since the last call in one
    transaction. Callers persist before they send.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._next: dict[bytes, int] = {}
        self._dirty: dict[bytes, int] = {}
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SequenceStoreError(
                f"{self.path} is in use by another producer; the allocator needs one producer per key, "
                "so give each producer its own file (and its own keys) or use sequences from a source field") from None
        self._lock_fd = fd
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a stored number survives power loss, not just a crash
            db.execute("CREATE TABLE IF NOT EXISTS next_sequence (key BLOB PRIMARY KEY, next INTEGER NOT NULL)")
        except sqlite3.Error as exc:
            self.close()
            raise SequenceStoreError(f"cannot open the sequence store {self.path}: {exc}") from exc
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def peek(self, key: bytes) -> int:
        """The number :meth:`take` would hand out for *key* next."""
        nxt = self._next.get(key)
        if nxt is None:
            if self._db is None:
                raise SequenceStoreError("the sequence store is not open")
            row = self._db.execute("SELECT next FROM next_sequence WHERE key = ?", (key,)).fetchone()
            nxt = self._next[key] = row[0] if row else FIRST_SEQUENCE
        return nxt

    def take(self, key: bytes) -> int:
        seq = self.peek(key)
        self._next[key] = self._dirty[key] = seq + 1
        return seq

    @property
    def unpersisted(self) -> int:
        """Keys whose numbers were taken but are not stored yet."""
        return len(self._dirty)

    def persist(self) -> None:
        """Store every number taken so far (one transaction); only then may records carrying them be sent."""
        if not self._dirty:
            return
        if self._db is None:
            raise SequenceStoreError("the sequence store is not open")
        rows = list(self._dirty.items())
        with self._db:  # BEGIN … COMMIT
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO next_sequence (key, next) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET next = excluded.next", rows)
        self._dirty.clear()
