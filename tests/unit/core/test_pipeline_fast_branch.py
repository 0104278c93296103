"""process_batch's inline branch decides exactly as the full record rules do.

process_batch decides the common record inline (a JSON object whose key field
equals its record key, on its key's partition, next in its key's sequence) and
sends every other record through admit_record and _decide_admitted. The inline
checks must only accept what those accept, with the same outcome. The reference
below sends every record through the full rules; seeded random batches of
hostile records must get the same forwards, dead letters, states and counters
from both, on streams where the inline branch is on and streams where it is off.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson
import pytest

from streamlake.core.dlq import DeadLetter, H, Reason
from streamlake.core.pipeline import (
    BatchResult,
    RecordRejected,
    _decide_admitted,
    admit_record,
    process_batch,
)
from streamlake.core.records import SourceRecord
from streamlake.core.replay import REPLAY_ID_HEADER
from streamlake.core.sequence import MAX_SEQUENCE, KeyState, SequenceClass
from streamlake.errors import RetryableError
from streamlake.partitioner import partition_for_key
from streamlake.topology import Action, Policies, Stream

TOPIC = "sales.orders.raw.v1"
OTHER_TOPIC = "sales.orders.raw.v1.repartition"
SEQ_HEADER = "x-seq"
PARTITIONS = 8
RECORDS_PER_CASE = 2500
# "edge" starts just below MAX_SEQUENCE, "crowded" with MAX_GAPS open gaps (see initial_states).
KEYS = ("k0", "k1", "k2", "k3", "k4", "k5", "0", "é", "ключ", "😀", "a b", "k\u0000", "edge", "crowded")
KEY_WEIGHTS = (4,) * (len(KEYS) - 2) + (1, 2)


def decide_one_by_one(stream: Stream, records: list[SourceRecord], load_state: Callable[[bytes], KeyState | None],
                      partitions: int | None = None, processed: Mapping[str, int] | None = None) -> BatchResult:
    """Decide every record by admit_record then _decide_admitted: process_batch without its inline branch."""
    result = BatchResult()

    def dead(res: BatchResult, letter: DeadLetter) -> None:
        # A re-read record's first copy is already in the DLQ: drop it rather than dead-letter it again.
        if processed and letter.record.offset <= processed.get(letter.record.topic, -1):
            res.counters.dropped += 1
            res.counters.dropped_by_class["already-in-dlq"] += 1
        else:
            res.dead_letters.append(letter)
            res.counters.dlq += 1
            res.counters.dlq_by_reason[letter.reason.value] += 1

    for record in records:
        result.counters.records_in += 1
        try:
            doc, key, seq = admit_record(stream, record, partitions)
        except RecordRejected as rej:
            dead(result, DeadLetter(record, rej.reason, str(rej)))
            continue
        state = result.states.get(key)  # a state changed earlier in the batch takes precedence
        if state is None:
            state = load_state(key)
        _decide_admitted(stream, result, dead, processed, record, doc, key, seq, state)
    return result


def enrich(doc: dict) -> object:
    """A transform that fails in every way a user's transform can, on request."""
    boom = doc.get("boom")
    if boom == "error":
        raise ValueError("boom")
    if boom == "retry":
        raise RetryableError("try later")
    if boom == "list":
        return [doc]
    if boom == "set":
        return {"tags": {1, 2}}
    return {**doc, "enriched": True}


def _escaped(text: str) -> bytes:
    """*text* as a JSON string with every UTF-16 unit escaped: the same string once decoded."""
    units = text.encode("utf-16-be")
    return b'"' + b"".join(b"\\u%04x" % int.from_bytes(units[i:i + 2], "big") for i in range(0, len(units), 2)) + b'"'


REQUIRED = {"amount": "number", "qty": "integer", "paid": "boolean", "tags": "array"}
VALID_OF_TYPE = {"number": (b"12", b"-0.5", b"1e3"), "integer": (b"0", b"7", b"-3"), "boolean": (b"true", b"false"),
                 "array": (b"[]", b'[1,"a"]'), "string": (b'""', b'"x"'), "object": (b"{}", b'{"a":1}')}
WRONG_OF_TYPE = {"number": (b"true", b'"12"', b"[]", b"null"), "integer": (b"7.0", b"false", b'"7"', b"{}"),
                 "boolean": (b"0", b"1", b'"true"', b"null"), "array": (b'"[]"', b"{}", b"1"),
                 "string": (b"1",), "object": (b"[]",)}
HOSTILE_SEQUENCES = (b"true", b"false", b"3.0", b"3.5", b"-1", b"-0", b"1e3", b'"3"', b'" 3"', b"null", b"[1]",
                 b'{"n":1}', b"-9223372036854775808", b"-9223372036854775809",
                 b"9223372036854775808", b"18446744073709551615", b"18446744073709551616", b"1.8e19", b"0")
HOSTILE_SEQ_HEADERS = (b"3", b" 3 ", b"+3", b"-1", b"-0", b"abc", b"\xff", b"3.0", "٣".encode(), "９".encode(), b"",
                   b"9223372036854775808", b"00", b"1_0")
NOT_OBJECTS = (b"[]", b"[1,2]", b"1", b"-3.5", b'"k0"', b"null", b"true", b'[{"order_id":"k0","seq":1}]')
SURROGATE_NAMES = (b'"\\ud800"', b'"k\\udfff"', b'"\\ud83d"', b'"\\udc00\\ud800"')


def initial_states(rng: random.Random) -> dict[bytes, KeyState]:
    """Stored states before the first batch: some keys have one, with or without gaps; others are new."""
    states = {b"edge": KeyState(MAX_SEQUENCE - 3, (), 0),
              b"crowded": KeyState(1000, tuple((i * 10, i * 10 + 5) for i in range(64)), 0)}
    for name in KEYS[:-2]:
        if rng.random() < 0.5:
            nxt = rng.randrange(0, 40)
            gaps = ((nxt - 10, nxt - 6),) if nxt > 12 and rng.random() < 0.5 else ()
            states[name.encode()] = KeyState(nxt, gaps, rng.choice((0, min(nxt, 3))))
    return states


@dataclass
class Draft:
    """One record being built: JSON fields as raw (name, value) pairs, so duplicates and escapes survive."""

    pairs: list[tuple[bytes, bytes]]
    key: bytes | None
    partition: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    raw_value: bool = False  # when set, value replaces the pairs
    value: bytes | None = None

    def body(self) -> bytes:
        return b"{" + b",".join(name + b":" + value for name, value in self.pairs) + b"}"


class HostileRecords:
    """Seeded records for one stream: most valid and in order, the rest broken in one or two ways."""

    def __init__(self, rng: random.Random, stream: Stream, partitions: int | None, states: Mapping[bytes, KeyState]):
        self.rng, self.stream, self.partitions = rng, stream, partitions
        # What the generator expects next per key: only a guide (the verdicts are not predicted here),
        # resynchronised with the stored states after every batch.
        self.next_seq = {name: rng.randrange(0, 40) for name in KEYS}
        self.follow(states)
        self.offset = 0

    def follow(self, states: Mapping[bytes, KeyState]) -> None:
        for name in KEYS:
            if name.encode() in states:
                self.next_seq[name] = states[name.encode()].next_seq

    def batch(self, size: int) -> list[SourceRecord]:
        return [self.record() for _ in range(size)]

    def _sequence(self, name: str, broken: bool) -> int:
        rng, nxt = self.rng, self.next_seq[name]
        roll = rng.random()
        if roll < 0.75 or nxt == 0:
            if not broken:
                self.next_seq[name] = nxt + 1
            return nxt
        if roll < 0.85:  # duplicate or late
            return rng.randrange(max(0, nxt - 12), nxt)
        if roll < 0.93:  # ahead: a gap
            seq = nxt + rng.randrange(1, 6)
            if not broken and self.stream.policies.gap is not Action.DLQ:
                self.next_seq[name] = seq + 1
            return seq
        return rng.randrange(0, nxt + 3)

    def record(self) -> SourceRecord:
        rng, stream = self.rng, self.stream
        name = rng.choices(KEYS, KEY_WEIGHTS)[0]
        broken = rng.random() < 0.4
        seq = self._sequence(name, broken)
        key = name.encode()
        pairs = [(orjson.dumps(stream.key_field), orjson.dumps(name))]
        headers: list[tuple[str, bytes]] = []
        if stream.sequence_header:
            headers.append((stream.sequence_header, str(seq).encode()))
        else:
            pairs.append((orjson.dumps(stream.sequence_field), orjson.dumps(seq)))
        for fname, tname in stream.required_fields.items():
            pairs.append((orjson.dumps(fname), rng.choice(VALID_OF_TYPE[tname])))
        if rng.random() < 0.2:
            pairs.append((b'"note"', rng.choice((b'"hi"', b'{"deep":[1,{"x":null}]}', b"null", b'"\\u00e9"'))))
        if rng.random() < 0.3:
            rng.shuffle(pairs)
        if rng.random() < 0.03:
            headers.append((REPLAY_ID_HEADER, b"r1"))
        if rng.random() < 0.03:
            headers.append((H.ATTEMPT, b"1"))
        partition = partition_for_key(key, PARTITIONS) if self.partitions else rng.randrange(PARTITIONS)
        draft = Draft(pairs, key, partition, headers)
        if broken:
            for _ in range(1 if rng.random() < 0.85 else 2):
                rng.choice(self.MUTATIONS)(self, draft, name)
        value = draft.value if draft.raw_value else draft.body()
        self.offset += 1
        topic = OTHER_TOPIC if rng.random() < 0.1 else TOPIC
        return SourceRecord(topic, draft.partition, self.offset, 1000 + self.offset, draft.key, value,
                            tuple(draft.headers))

    # -- one way each to break (or to disguise) a record ------------------------------------------

    def _set(self, draft: Draft, fname: str | None, raw: bytes | None) -> None:
        """Set field *fname* to *raw* (None: remove it)."""
        name = orjson.dumps(fname)
        draft.pairs = [(n, v) for n, v in draft.pairs if n != name]
        if raw is not None:
            draft.pairs.append((name, raw))

    def key_field_missing_or_empty(self, draft: Draft, name: str) -> None:
        self._set(draft, self.stream.key_field, self.rng.choice((None, b"null", b'""')))

    def key_field_not_a_string(self, draft: Draft, name: str) -> None:
        self._set(draft, self.stream.key_field, self.rng.choice((b"5", b"0", b"true", b"1.5", b'["k0"]', b'{"k":"k0"}')))

    def key_field_other_key(self, draft: Draft, name: str) -> None:
        self._set(draft, self.stream.key_field, orjson.dumps(self.rng.choice(KEYS)))

    def key_field_escaped(self, draft: Draft, name: str) -> None:
        self._set(draft, self.stream.key_field, _escaped(name))

    def key_field_surrogate(self, draft: Draft, name: str) -> None:
        self._set(draft, self.stream.key_field, self.rng.choice(SURROGATE_NAMES))

    def key_field_twice(self, draft: Draft, name: str) -> None:
        # The last of two equal names wins; the first may be anything.
        draft.pairs.insert(0, (orjson.dumps(self.stream.key_field), orjson.dumps(self.rng.choice(KEYS))))

    def record_key_broken(self, draft: Draft, name: str) -> None:
        key = name.encode()
        draft.key = self.rng.choice((None, b"", self.rng.choice(KEYS).encode(), b"\xff" + key, key + b"\x80",
                                     b"\xed\xa0\x80", name.upper().encode(), key + b"\x00", key + b" "))

    def wrong_partition(self, draft: Draft, name: str) -> None:
        draft.partition = (draft.partition + self.rng.randrange(1, PARTITIONS)) % PARTITIONS

    def sequence_broken(self, draft: Draft, name: str) -> None:
        if self.stream.sequence_header:
            draft.headers = [(n, v) for n, v in draft.headers if n != self.stream.sequence_header]
            for _ in range(self.rng.choice((0, 1, 1, 2))):
                draft.headers.append((self.stream.sequence_header, self.rng.choice(HOSTILE_SEQ_HEADERS)))
            if self.rng.random() < 0.3:  # a sequence field where the header is expected
                self._set(draft, "seq", b"3")
        else:
            self._set(draft, self.stream.sequence_field, self.rng.choice((None, *HOSTILE_SEQUENCES)))

    def sequence_shifted(self, draft: Draft, name: str) -> None:
        raw = str(self.next_seq[name] + self.rng.choice((-2, -1, 1, 2, 100))).encode()
        if self.stream.sequence_header:
            draft.headers = [(n, v) for n, v in draft.headers if n != self.stream.sequence_header]
            draft.headers.append((self.stream.sequence_header, raw))
        else:
            self._set(draft, self.stream.sequence_field, raw)

    def required_field_broken(self, draft: Draft, name: str) -> None:
        if not self.stream.required_fields:
            return self.value_hostile(draft, name)
        fname, tname = self.rng.choice(list(self.stream.required_fields.items()))
        self._set(draft, fname, self.rng.choice((None, b"null", *WRONG_OF_TYPE[tname])))

    def value_hostile(self, draft: Draft, name: str) -> None:
        rng, body = self.rng, draft.body()
        draft.raw_value = True
        draft.value = rng.choice((
            None, b"", rng.choice(NOT_OBJECTS), b"{", b'{"a":1,}', b'{"a":NaN}', b"\xef\xbb\xbf" + body,
            body[:-1], body + b"x", body.replace(b'"', b"'"), b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
            body.replace(b'":', b'":\xff', 1), b'{"order_id":"\xed\xa0\x80","seq":1}', b'{"seq":1e400}',
            rng.randbytes(rng.randrange(1, 24)), b" \n\t" + body + b" ", body + body,
        ))

    def transform_trap(self, draft: Draft, name: str) -> None:
        draft.pairs.append((b'"boom"', orjson.dumps(self.rng.choice(("error", "retry", "list", "set", "no")))))

    def provenance(self, draft: Draft, name: str) -> None:
        draft.headers.append(self.rng.choice(((REPLAY_ID_HEADER, b"r2"), (H.ATTEMPT, b"2"))))

    MUTATIONS = (key_field_missing_or_empty, key_field_not_a_string, key_field_other_key, key_field_escaped,
                 key_field_surrogate, key_field_twice, record_key_broken, wrong_partition, sequence_broken,
                 sequence_broken, sequence_shifted, required_field_broken, value_hostile, value_hostile,
                 transform_trap, provenance)


def outcome(result: BatchResult) -> dict[str, object]:
    return {
        "forwards": [(f.record, f.value) for f in result.forwards],
        "dead_letters": [(d.record.offset, d.reason, d.message, d.exc_class) for d in result.dead_letters],
        "states": {key: (type(state), state) for key, state in result.states.items()},
        "counters": result.counters.to_dict(),
    }


def first_diverging_record(stream: Stream, batch: list[SourceRecord], load_state: Callable[[bytes], KeyState | None],
                           partitions: int | None, processed: Mapping[str, int] | None) -> SourceRecord | None:
    """The record whose addition first makes the two deciders differ (for the failure message)."""
    for n in range(1, len(batch) + 1):
        args = (stream, batch[:n], load_state, partitions, processed)
        if outcome(process_batch(*args)) != outcome(decide_one_by_one(*args)):
            return batch[n - 1]
    return None


def _stream(dataset: str, **options: object) -> Stream:
    return Stream(domain="sales", dataset=dataset, key_field="order_id", **options)  # type: ignore[arg-type]


D, F, X = Action.DLQ, Action.FORWARD, Action.DROP
# (stream, whether process_batch decides records inline on it)
STREAMS = {
    "default": (_stream("orders"), True),
    "required-fields": (_stream("orders", required_fields=REQUIRED), True),
    "all-out-of-order-to-dlq": (_stream("orders", policies=Policies(gap=D, duplicate=D, late=D)), True),
    "out-of-order-forwarded-or-dropped": (_stream("orders", policies=Policies(gap=X, duplicate=F, late=F)), True),
    "in-order-dropped": (_stream("orders", policies=Policies(in_order=X)), False),
    "in-order-to-dlq": (_stream("orders", policies=Policies(in_order=D, late=X)), False),
    "transform": (_stream("orders", transform=enrich), False),
    "sequence-header": (_stream("orders", sequence_field=None, sequence_header=SEQ_HEADER), False),
}
ADMISSION_REASONS = {Reason.EMPTY_VALUE, Reason.INVALID_UTF8, Reason.INVALID_JSON, Reason.NOT_AN_OBJECT,
                     Reason.MISSING_KEY, Reason.KEY_WRONG_TYPE, Reason.MISSING_RECORD_KEY, Reason.KEY_MISMATCH,
                     Reason.MISSING_SEQUENCE, Reason.INVALID_SEQUENCE, Reason.SEQUENCE_OUT_OF_RANGE}
ORDERING_REASONS = {"in_order": Reason.ORDERING_IN_ORDER, "gap": Reason.ORDERING_GAP,
                    "duplicate": Reason.ORDERING_DUPLICATE, "late": Reason.ORDERING_LATE}


def expected_reasons(stream: Stream, partitions: int | None) -> set[Reason]:
    """Every reason the generated records must reach on *stream*, so the comparison covers each rule."""
    reasons = set(ADMISSION_REASONS)
    if partitions:
        reasons.add(Reason.WRONG_PARTITION)
    if stream.required_fields:
        reasons |= {Reason.MISSING_FIELD, Reason.WRONG_TYPE}
    if stream.transform:
        reasons |= {Reason.TRANSFORM_ERROR, Reason.TRANSFORM_RETRYABLE, Reason.TRANSFORM_BAD_OUTPUT}
    reasons |= {reason for cls, reason in ORDERING_REASONS.items() if getattr(stream.policies, cls) is Action.DLQ}
    return reasons


def _processed(rng: random.Random, first: int, size: int) -> dict[str, int] | None:
    """Offsets already processed: none, some or all of the batch being re-read, on either topic."""
    return rng.choice((None, {}, {TOPIC: first + rng.randrange(size)}, {TOPIC: first + size},
                       {OTHER_TOPIC: first + rng.randrange(size)}, {TOPIC: first - 1}))


@pytest.mark.parametrize("partitions", [PARTITIONS, None], ids=["partitions=8", "partitions=None"])
@pytest.mark.parametrize("name", list(STREAMS))
def test_batch_decides_every_record_as_the_full_rules_do(name, partitions):
    stream, inline = STREAMS[name]
    assert inline == (stream.sequence_header is None and stream.transform is None
                      and stream.policies.in_order is Action.FORWARD)
    seed = list(STREAMS).index(name) * 2 + (partitions is None)
    rng = random.Random(seed)
    store = initial_states(rng)
    records = HostileRecords(rng, stream, partitions, store)
    reasons: Counter[Reason] = Counter()
    totals = BatchResult().counters
    done = 0
    while done < RECORDS_PER_CASE:
        size = rng.randint(1, 400)
        batch = records.batch(size)
        processed = _processed(rng, batch[0].offset, size)
        args = (stream, batch, store.get, partitions, processed)
        result = process_batch(*args)
        got, want = outcome(result), outcome(decide_one_by_one(*args))
        if got != want:
            culprit = first_diverging_record(*args)
            for part in want:
                assert got[part] == want[part], f"{part} differ; seed {seed}, first diverging record {culprit!r}"
        reasons.update(letter.reason for letter in result.dead_letters)
        totals.add(result.counters)
        store.update(result.states)
        records.follow(store)
        done += size
    # The records reached every rule, and the in-order records the inline branch takes are common.
    assert expected_reasons(stream, partitions) <= set(reasons)
    assert {cls.value for cls in SequenceClass} <= set(totals.classes)
    assert totals.classes["in_order"] >= RECORDS_PER_CASE // 3
    assert totals.dropped_by_class["already-in-dlq"] > 0
