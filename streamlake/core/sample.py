"""A realistic, reproducible ``sales.orders`` load: the pure generator behind ``produce-sample`` and the demo.

Many keys, each with its own increasing ``seq``; a small, configurable share of
ordering anomalies (duplicates, gaps, late records) and of malformed records of
several kinds. Every record carries the kind it was made as, and
:func:`expected_outcome` says where the pipeline must put it, so a run can be
reconciled against what the workers counted. No Kafka here.

Over 300 lines: the generator and its oracle (expected_outcome, reconciliation) must
change together, kind by kind.
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import StreamLakeError
from ..topology import Action, Policies
from .dlq import Reason
from .pipeline import StreamCounters

__all__ = [
    "SampleKind", "SampleMix", "SampleRecord", "SampleSummary", "Outcome",
    "generate_sample", "expected_outcome", "summarize_sample", "MALFORMED_KINDS", "ORDERING_KINDS",
    "Reconciliation", "counters_delta",
]

#: Open gaps per key stay well below the tracker's bound (sequence.MAX_GAPS), so no gap is forgotten.
_MAX_OPEN_GAPS = 16


class SampleKind(enum.Enum):
    """What a sample record was made to be."""

    IN_ORDER = "in_order"
    GAP = "gap"
    DUPLICATE = "duplicate"
    LATE = "late"
    INVALID_UTF8 = "invalid-utf8"
    INVALID_JSON = "invalid-json"
    NOT_AN_OBJECT = "not-an-object"
    EMPTY_VALUE = "empty-value"
    MISSING_KEY = "missing-key"
    MISSING_RECORD_KEY = "missing-record-key"
    KEY_MISMATCH = "key-mismatch"
    WRONG_PARTITION = "wrong-partition"
    MISSING_SEQUENCE = "missing-sequence"
    INVALID_SEQUENCE = "invalid-sequence"
    SEQUENCE_OUT_OF_RANGE = "sequence-out-of-range"


ORDERING_KINDS = (SampleKind.IN_ORDER, SampleKind.GAP, SampleKind.DUPLICATE, SampleKind.LATE)
MALFORMED_KINDS = tuple(k for k in SampleKind if k not in ORDERING_KINDS)
_ROUTABLE_KINDS = tuple(k for k in MALFORMED_KINDS if k is not SampleKind.WRONG_PARTITION)


class Outcome(enum.Enum):
    """Where a record ends: exactly one of these."""

    FORWARD = "forwarded"
    DROP = "dropped"
    DLQ = "dlq"


@dataclass(frozen=True)
class SampleMix:
    """Shares of the load (0..1). What is left after them is in-order records."""

    bad: float = 0.01
    duplicate: float = 0.01
    gap: float = 0.01
    late: float = 0.005

    def __post_init__(self) -> None:
        for name in ("bad", "duplicate", "gap", "late"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise StreamLakeError(f"the {name} ratio must be between 0 and 1, got {value}")
        if self.bad + self.duplicate + self.gap + self.late > 1.0:
            raise StreamLakeError("the bad, duplicate, gap and late ratios add up to more than 1; lower them")


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """One record to produce.

    ``route_key`` is the key whose partition the record goes to (the Java default
    partitioner); ``misroute`` asks the producer for the next partition instead.
    """

    kind: SampleKind
    key: bytes | None
    value: bytes | None
    route_key: bytes
    seq: int | None = None
    misroute: bool = False


def generate_sample(events: int, keys: int = 1000, mix: SampleMix = SampleMix(), seed: int = 1,
                    key_prefix: str = "ord", start_ms: int = 1_700_000_000_000,
                    misroute: bool = True) -> Iterator[SampleRecord]:
    """Yield *events* records over *keys* keys; the same arguments always give the same records.

    Per key, sequences start at 1 and increase. Anomalies are made so that each
    is classified as its kind when the key's records are read in order:
    a duplicate repeats the key's last number, a gap skips one to three numbers,
    a late record is a skipped number of some key with an open gap (each sent once). A kind that
    a key cannot take yet (no history, no open gap) becomes an in-order record.
    ``misroute=False`` leaves out wrong-partition records (a one-partition topic has no wrong partition).
    """
    if events < 0:
        raise StreamLakeError(f"--events must be 0 or more, got {events}")
    if keys < 1:
        raise StreamLakeError(f"--keys must be at least 1, got {keys}")
    rng = random.Random(seed)
    names = [f"{key_prefix}-{i:06d}" for i in range(keys)]
    next_seq: dict[str, int] = {}
    skipped: dict[str, list[int]] = collections.defaultdict(list)
    gaps_opened: collections.Counter = collections.Counter()
    pending: list[str] = []  # keys with skipped numbers not yet sent late
    cuts = _cumulative(mix)
    for n in range(events):
        name = names[rng.randrange(keys)]
        roll = rng.random()
        ts = start_ms + n
        if roll < cuts[0]:
            yield _malformed(rng, name, names, ts, MALFORMED_KINDS if misroute else _ROUTABLE_KINDS)
            continue
        nxt = next_seq.get(name)
        if nxt is not None and roll < cuts[1]:
            yield _order(SampleKind.DUPLICATE, name, nxt - 1, ts, rng)
            continue
        if nxt is not None and roll < cuts[2] and gaps_opened[name] < _MAX_OPEN_GAPS:
            skip = rng.randint(1, 3)
            if not skipped[name]:
                pending.append(name)
            skipped[name].extend(range(nxt, nxt + skip))
            gaps_opened[name] += 1
            next_seq[name] = nxt + skip + 1
            yield _order(SampleKind.GAP, name, nxt + skip, ts, rng)
            continue
        if roll < cuts[3] and pending:
            # a late record belongs to a key with an open gap, whichever key was drawn
            late_name = pending[rng.randrange(len(pending))]
            holes = skipped[late_name]
            late = holes.pop(rng.randrange(len(holes)))
            if not holes:
                pending.remove(late_name)
            yield _order(SampleKind.LATE, late_name, late, ts, rng)
            continue
        seq = 1 if nxt is None else nxt
        next_seq[name] = seq + 1
        yield _order(SampleKind.IN_ORDER, name, seq, ts, rng)


def _cumulative(mix: SampleMix) -> tuple[float, float, float, float]:
    a = mix.bad
    b = a + mix.duplicate
    c = b + mix.gap
    return a, b, c, c + mix.late


def _doc(name: str, seq: Any, ts: int, rng: random.Random) -> dict[str, Any]:
    return {
        "order_id": name, "seq": seq, "customer_id": f"cust-{rng.randrange(5000):05d}",
        "amount": round(rng.uniform(3, 900), 2), "currency": rng.choice(("EUR", "USD", "GBP")),
        "status": rng.choice(("created", "paid", "packed", "shipped")), "ts": ts,
    }


def _order(kind: SampleKind, name: str, seq: int, ts: int, rng: random.Random) -> SampleRecord:
    key = name.encode()
    return SampleRecord(kind, key, orjson.dumps(_doc(name, seq, ts, rng)), key, seq)


def _malformed(rng: random.Random, name: str, names: list[str], ts: int,
               kinds: tuple[SampleKind, ...]) -> SampleRecord:
    kind = rng.choice(kinds)
    key = name.encode()
    doc = _doc(name, 1, ts, rng)
    value: bytes | None
    record_key: bytes | None = key
    if kind is SampleKind.INVALID_UTF8:
        value = b'{"order_id": "' + key + b'", "note": "\xff\xfe"}'
    elif kind is SampleKind.INVALID_JSON:
        value = orjson.dumps(doc)[:-7]
    elif kind is SampleKind.NOT_AN_OBJECT:
        value = orjson.dumps([name, 1])
    elif kind is SampleKind.EMPTY_VALUE:
        value = b""
    elif kind is SampleKind.MISSING_KEY:
        value = orjson.dumps({k: v for k, v in doc.items() if k != "order_id"})
    elif kind is SampleKind.MISSING_RECORD_KEY:
        value, record_key = orjson.dumps(doc), None
    elif kind is SampleKind.KEY_MISMATCH:
        other = names[(names.index(name) + 1) % len(names)] if len(names) > 1 else name + "-x"
        value, record_key = orjson.dumps(doc), other.encode()
        return SampleRecord(kind, record_key, value, record_key)
    elif kind is SampleKind.WRONG_PARTITION:
        return SampleRecord(kind, key, orjson.dumps(doc), key, misroute=True)
    elif kind is SampleKind.MISSING_SEQUENCE:
        value = orjson.dumps({k: v for k, v in doc.items() if k != "seq"})
    elif kind is SampleKind.INVALID_SEQUENCE:
        value = orjson.dumps({**doc, "seq": rng.choice(["7", 2.5, True])})
    else:  # SEQUENCE_OUT_OF_RANGE
        value = orjson.dumps({**doc, "seq": -rng.randint(1, 100)})
    return SampleRecord(kind, record_key, value, key)


_DLQ_REASON = {
    SampleKind.INVALID_UTF8: Reason.INVALID_UTF8,
    SampleKind.INVALID_JSON: Reason.INVALID_JSON,
    SampleKind.NOT_AN_OBJECT: Reason.NOT_AN_OBJECT,
    SampleKind.EMPTY_VALUE: Reason.EMPTY_VALUE,
    SampleKind.MISSING_KEY: Reason.MISSING_KEY,
    SampleKind.MISSING_RECORD_KEY: Reason.MISSING_RECORD_KEY,
    SampleKind.KEY_MISMATCH: Reason.KEY_MISMATCH,
    SampleKind.WRONG_PARTITION: Reason.WRONG_PARTITION,
    SampleKind.MISSING_SEQUENCE: Reason.MISSING_SEQUENCE,
    SampleKind.INVALID_SEQUENCE: Reason.INVALID_SEQUENCE,
    SampleKind.SEQUENCE_OUT_OF_RANGE: Reason.SEQUENCE_OUT_OF_RANGE,
    SampleKind.IN_ORDER: Reason.ORDERING_IN_ORDER,
    SampleKind.GAP: Reason.ORDERING_GAP,
    SampleKind.DUPLICATE: Reason.ORDERING_DUPLICATE,
    SampleKind.LATE: Reason.ORDERING_LATE,
}


def expected_outcome(kind: SampleKind, policies: Policies = Policies()) -> tuple[Outcome, str | None]:
    """Where a record of *kind* must end under *policies*, and its DLQ reason if it goes there."""
    if kind in ORDERING_KINDS:
        action = getattr(policies, kind.value)
        if action is Action.FORWARD:
            return Outcome.FORWARD, None
        if action is Action.DROP:
            return Outcome.DROP, None
    return Outcome.DLQ, _DLQ_REASON[kind].value


@dataclass
class SampleSummary:
    """What a sample run produced, by kind, and where its records must end."""

    produced: int = 0
    by_kind: collections.Counter = field(default_factory=collections.Counter)
    expected_forwarded: int = 0
    expected_dropped: int = 0
    expected_dlq: int = 0
    expected_dlq_by_reason: collections.Counter = field(default_factory=collections.Counter)

    def add(self, record: SampleRecord, policies: Policies = Policies()) -> None:
        self.produced += 1
        self.by_kind[record.kind.value] += 1
        outcome, reason = expected_outcome(record.kind, policies)
        if outcome is Outcome.FORWARD:
            self.expected_forwarded += 1
        elif outcome is Outcome.DROP:
            self.expected_dropped += 1
        else:
            self.expected_dlq += 1
            self.expected_dlq_by_reason[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {
            "produced": self.produced, "by_kind": dict(sorted(self.by_kind.items())),
            "expected": {"forwarded": self.expected_forwarded, "dropped": self.expected_dropped,
                         "dlq": self.expected_dlq, "dlq_by_reason": dict(sorted(self.expected_dlq_by_reason.items()))},
        }


def summarize_sample(records: Iterator[SampleRecord] | list[SampleRecord],
                     policies: Policies = Policies()) -> SampleSummary:
    """Count *records* by kind and expected outcome."""
    summary = SampleSummary()
    for record in records:
        summary.add(record, policies)
    return summary


def counters_delta(after: StreamCounters, before: StreamCounters) -> StreamCounters:
    """What was counted between two snapshots of a stream's totals."""
    delta = StreamCounters()
    delta.add(after)
    for name in ("records_in", "forwarded", "dropped", "dlq", "gaps_opened", "gaps_filled", "gaps_forgotten", "replayed"):
        setattr(delta, name, getattr(delta, name) - getattr(before, name))
    delta.dlq_by_reason.subtract(before.dlq_by_reason)
    delta.classes.subtract(before.classes)
    delta.dropped_by_class.subtract(before.dropped_by_class)
    for counter in (delta.dlq_by_reason, delta.classes, delta.dropped_by_class):
        for key in [k for k, v in counter.items() if v == 0]:
            del counter[key]
    return delta


@dataclass(frozen=True)
class Reconciliation:
    """What the workers counted against what was produced (and where it should have ended)."""

    produced: SampleSummary
    counted: StreamCounters

    @property
    def balanced(self) -> bool:
        """records in = forwarded + dropped + DLQ."""
        c = self.counted
        return c.records_in == c.forwarded + c.dropped + c.dlq

    @property
    def complete(self) -> bool:
        """Every produced record was read (and none twice)."""
        return self.counted.records_in == self.produced.produced

    @property
    def as_expected(self) -> bool:
        """Every record ended where its kind says."""
        c, p = self.counted, self.produced
        return (c.forwarded == p.expected_forwarded and c.dropped == p.expected_dropped and c.dlq == p.expected_dlq
                and +c.dlq_by_reason == +p.expected_dlq_by_reason)

    @property
    def ok(self) -> bool:
        return self.balanced and self.complete and self.as_expected

    def rows(self) -> list[tuple[str, int, int | None]]:
        """(measure, counted, expected) in display order; DLQ reasons of either side included."""
        c, p = self.counted, self.produced
        rows: list[tuple[str, int, int | None]] = [
            ("records in", c.records_in, p.produced),
            ("forwarded", c.forwarded, p.expected_forwarded),
            ("dropped (duplicates)", c.dropped, p.expected_dropped),
            ("dlq", c.dlq, p.expected_dlq),
        ]
        for reason in sorted(set(c.dlq_by_reason) | set(p.expected_dlq_by_reason)):
            rows.append((f"  dlq {reason}", c.dlq_by_reason.get(reason, 0), p.expected_dlq_by_reason.get(reason, 0)))
        return rows

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"produced": self.produced.as_dict(), "counted": self.counted.to_dict(),
                "checks": {"balanced": self.balanced, "complete": self.complete, "as_expected": self.as_expected},
                "ok": self.ok}
