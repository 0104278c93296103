"""The ingestion pipeline over a batch of raw records.

decode → validate → key → sequence → policy → transform, record by record in
offset order, with per-key state folded through the batch. The result says,
for every input record, exactly one of: forward, drop (counted) or DLQ — and
which per-key states changed. Nothing here talks to Kafka.

Over 300 lines: the record checks (admit_record, shared with the producer SDK) and the
batch fold over them are one ordered set of rules; split, the order of the checks would
live in two places.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from ..errors import RetryableError
from ..partitioner import cached_partition_for_key as _partition_of
from ..topology import JSON_TYPES, Action, Stream
from .dlq import DeadLetter, H, Reason, Stage
from .records import ConsumedRecord, header_of
from .replay import REPLAY_ID_HEADER
from .sequence import MAX_SEQUENCE, KeyState, SequenceClass, classify_sequence

__all__ = ["Forward", "BatchResult", "StreamCounters", "process_batch", "admit_record", "Admission", "RecordRejected"]

# Provenance headers that change how the tracker treats a record (each defined once, where it is written):
#: a window replay's deliberate re-emit
REPLAY_ID = REPLAY_ID_HEADER
#: carried by every record sent back from the DLQ (retry or redrive): it was
#: held back on purpose, so when it comes back ``late`` it is accepted
RETURNED_FROM_DLQ = H.ATTEMPT

_ORDERING_REASON = {
    SequenceClass.IN_ORDER: Reason.ORDERING_IN_ORDER,
    SequenceClass.GAP: Reason.ORDERING_GAP,
    SequenceClass.DUPLICATE: Reason.ORDERING_DUPLICATE,
    SequenceClass.LATE: Reason.ORDERING_LATE,
}


class Forward(NamedTuple):
    """A record to produce to the output topic (same key, same headers).

    A named tuple, not a frozen dataclass: one is built per forwarded record, several times faster.
    """

    record: ConsumedRecord
    value: bytes


@dataclass(slots=True)
class StreamCounters:
    """Per-stream counters; ``records_in == forwarded + dropped + dlq`` always.

    ``repartitioned`` counts source records moved to their key's partition
    (``partitioning = repartition``): they enter ``records_in`` when read back
    from the repartition topic, not before.
    """

    records_in: int = 0
    forwarded: int = 0
    dropped: int = 0
    dlq: int = 0
    dlq_by_reason: collections.Counter = field(default_factory=collections.Counter)
    classes: collections.Counter = field(default_factory=collections.Counter)
    dropped_by_class: collections.Counter = field(default_factory=collections.Counter)
    gaps_opened: int = 0
    gaps_filled: int = 0
    gaps_forgotten: int = 0
    replayed: int = 0
    repartitioned: int = 0

    def add(self, other: StreamCounters) -> None:
        for name in ("records_in", "forwarded", "dropped", "dlq", "gaps_opened", "gaps_filled",
                     "gaps_forgotten", "replayed", "repartitioned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dlq_by_reason.update(other.dlq_by_reason)
        self.classes.update(other.classes)
        self.dropped_by_class.update(other.dropped_by_class)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamCounters:
        counters = cls()
        for name in ("records_in", "forwarded", "dropped", "dlq", "gaps_opened", "gaps_filled",
                     "gaps_forgotten", "replayed", "repartitioned"):
            setattr(counters, name, int(data.get(name, 0)))
        counters.dlq_by_reason.update(data.get("dlq_by_reason", {}))
        counters.classes.update(data.get("classes", {}))
        counters.dropped_by_class.update(data.get("dropped_by_class", {}))
        return counters

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_in": self.records_in, "forwarded": self.forwarded,
            "dropped_duplicates": self.dropped_by_class.get("duplicate", 0),
            "dropped": self.dropped, "dlq": self.dlq,
            "dlq_by_reason": dict(self.dlq_by_reason), "classes": dict(self.classes),
            "dropped_by_class": dict(self.dropped_by_class),
            "gaps_opened": self.gaps_opened, "gaps_filled": self.gaps_filled,
            "gaps_forgotten": self.gaps_forgotten, "replayed": self.replayed,
            "repartitioned": self.repartitioned,
        }


@dataclass(slots=True)
class BatchResult:
    forwards: list[Forward] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[bytes, KeyState] = field(default_factory=dict)  # keys whose state changed
    counters: StreamCounters = field(default_factory=StreamCounters)


class RecordRejected(Exception):
    """A stage of the pipeline refused the record: ``reason`` (and its ``stage``) say why."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def stage(self) -> Stage:
        return self.reason.stage


_Reject = RecordRejected  # the stages below raise it under its short name


class Admission(NamedTuple):
    """A record that passed decode, validate, key (and partition) and sequence."""

    doc: dict
    key: bytes
    seq: int


def admit_record(stream: Stream, record: ConsumedRecord, partitions: int | None = None) -> Admission:
    """Apply the stream's record rules (decode, validate, key, partition, sequence) to one record.

    The pure admission half of :func:`process_batch`, before ordering; a
    producer calls it to refuse at the source what ingestion would dead-letter.

    Raises:
        RecordRejected: naming the reason (and so the stage) of the first rule broken.
    """
    doc = _decode(record.value)
    _validate(doc, stream.required_fields)
    key = _key(doc, stream.key_field, record.key)
    if partitions is not None and _partition_of(key, partitions) != record.partition:
        raise _Reject(Reason.WRONG_PARTITION,
                      f"key {key[:64]!r} belongs on partition {_partition_of(key, partitions)} "
                      f"(Java default partitioner), not {record.partition}")
    return Admission(doc, key, _sequence(doc, record, stream))


def process_batch(stream: Stream, records: Iterable[ConsumedRecord],
                  load_state: Callable[[bytes], KeyState | None],
                  partitions: int | None = None,
                  processed: Mapping[str, int] | None = None) -> BatchResult:
    """Run every record of a batch through the pipeline, in order.

    *load_state* returns the stored state of a key; states changed earlier in
    the batch take precedence, so one batch equals the same records one by one.
    With *partitions* (the source's partition count), a record whose key the
    Java default partitioner puts elsewhere is rejected: its key's state lives
    on another partition, so its ordering cannot be checked here.

    *processed* maps a topic to the highest offset of this partition already
    processed. A record at or below it is being re-read (after an offset
    reset); if it would go to the DLQ again it is dropped as ``already-in-dlq``
    instead — its copy from the first pass is still in the DLQ.

    The stream's rules are read once per batch, and a key's partition is
    computed once per batch. The common record (a JSON object whose key field
    equals its record key, on its key's partition, next in its key's sequence,
    forwarded as it is) is decided inline; any other record takes
    :func:`admit_record` and :func:`_decide_admitted`, which name its reason.
    The inline checks only ever accept what those would accept, so the
    verdicts are the same.
    """
    result = BatchResult()
    dead: Callable[[BatchResult, DeadLetter], None]
    if processed:
        def dead(res: BatchResult, letter: DeadLetter) -> None:
            if letter.record.offset <= processed.get(letter.record.topic, -1):
                res.counters.dropped += 1
                res.counters.dropped_by_class["already-in-dlq"] += 1
            else:
                _dead(res, letter)
    else:
        dead = _dead
    states = result.states
    forward = result.forwards.append
    inline = (stream.sequence_header is None and stream.transform is None
              and stream.policies.in_order is Action.FORWARD)
    key_field = stream.key_field
    seq_field = stream.sequence_field
    required = stream.required_fields
    loads = orjson.loads
    # Named tuples built without their Python-level __new__ (about half the cost, twice per record)
    new_tuple = tuple.__new__
    homes: dict[bytes, int] = {}  # key -> its partition, for this batch
    seen = in_order = 0
    for record in records:
        seen += 1
        value = record.value
        if inline and value:
            try:
                doc = loads(value)
            except orjson.JSONDecodeError:
                doc = None
            name = doc.get(key_field) if type(doc) is dict else None
            if type(name) is str and name and (not required or _is_valid(doc, required)):
                try:
                    key = name.encode()
                except UnicodeEncodeError:
                    key = b""
                seq = doc.get(seq_field)
                if partitions is None:
                    home = record.partition
                elif (home := homes.get(key, -1)) < 0:
                    home = homes[key] = _partition_of(key, partitions)
                if (key and record.key == key and home == record.partition
                        and type(seq) is int and 0 <= seq < MAX_SEQUENCE):
                    state = states.get(key)
                    if state is None:
                        state = load_state(key)
                    if state is None:  # a new key: its first number is the baseline
                        states[key] = new_tuple(KeyState, (seq + 1, (), seq))
                    elif seq == state.next_seq:
                        states[key] = new_tuple(KeyState, (seq + 1, state.gaps, state.horizon))
                    else:
                        _decide_admitted(stream, result, dead, processed, record, doc, key, seq, state)
                        continue
                    in_order += 1
                    forward(new_tuple(Forward, (record, value)))
                    continue
        try:
            doc, key, seq = admit_record(stream, record, partitions)
        except _Reject as rej:
            dead(result, DeadLetter(record, rej.reason, str(rej)))
            continue
        state = states.get(key)
        _decide_admitted(stream, result, dead, processed, record, doc, key, seq,
                         load_state(key) if state is None else state)
    counters = result.counters
    counters.records_in += seen
    if in_order:
        counters.forwarded += in_order
        counters.classes[SequenceClass.IN_ORDER.value] += in_order
    return result


def _is_valid(doc: dict, required: Mapping[str, str]) -> bool:
    try:
        _validate(doc, required)
    except _Reject:
        return False
    return True


def _decide_admitted(stream: Stream, result: BatchResult, dead: Callable[[BatchResult, DeadLetter], None],
                     processed: Mapping[str, int] | None, record: ConsumedRecord,
                     doc: dict, key: bytes, seq: int, state: KeyState | None) -> None:
    """Order, policy and transform for one admitted record; *state* is its key's state before it."""
    counters = result.counters
    verdict = classify_sequence(state, seq)
    cls = verdict.cls
    counters.classes[cls.value] += 1
    action = getattr(stream.policies, cls.value)
    # A replayed copy is re-emitted once: not again when its offset is re-read.
    replayed = header_of(record, REPLAY_ID) is not None and not (
        processed and record.offset <= processed.get(record.topic, -1))
    if cls is SequenceClass.DUPLICATE and replayed:
        action = Action.FORWARD  # a deliberate re-emit; the tracker stays where it is
        counters.replayed += 1
    elif cls is SequenceClass.LATE and header_of(record, RETURNED_FROM_DLQ) is not None:
        action = Action.FORWARD  # retried or redriven: accept it and fill its gap
    if action is Action.DLQ:
        dead(result, DeadLetter(record, _ORDERING_REASON[cls],
                                f"sequence {seq} is {cls.value} for key {key!r} "
                                f"(expected {state.next_seq if state else seq})"))
        return
    states = result.states
    if action is Action.DROP:
        counters.dropped += 1
        counters.dropped_by_class[cls.value] += 1
        _accept(states, key, state, verdict.state, counters, verdict)
        return
    value = record.value
    if stream.transform is not None:
        try:
            value = _transform(stream, doc)
        except _Reject as rej:  # bad output
            dead(result, DeadLetter(record, rej.reason, str(rej)))
            return
        except RetryableError as exc:
            dead(result, DeadLetter.from_exception(record, Reason.TRANSFORM_RETRYABLE, exc))
            return
        except Exception as exc:  # the user's code: any failure is the record's, not the worker's
            dead(result, DeadLetter.from_exception(record, Reason.TRANSFORM_ERROR, exc))
            return
    if cls is not SequenceClass.DUPLICATE or not replayed:
        _accept(states, key, state, verdict.state, counters, verdict)
    counters.forwarded += 1
    result.forwards.append(Forward(record, value))  # type: ignore[arg-type]


def _accept(states: dict, key: bytes, old: KeyState | None, new: KeyState, counters: StreamCounters, verdict: Any) -> None:
    if new != old:
        states[key] = new
    counters.gaps_opened += verdict.gap_opened
    counters.gaps_filled += verdict.gap_filled
    counters.gaps_forgotten += verdict.gaps_forgotten


def _dead(result: BatchResult, letter: DeadLetter) -> None:
    result.dead_letters.append(letter)
    result.counters.dlq += 1
    result.counters.dlq_by_reason[letter.reason.value] += 1


def _decode(value: bytes | None) -> dict:
    if not value:
        raise _Reject(Reason.EMPTY_VALUE, "the value is null (a tombstone) or empty")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise _Reject(Reason.INVALID_UTF8, f"the value is not valid UTF-8: {uexc}") from None
        raise _Reject(Reason.INVALID_JSON, f"the value is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Reject(Reason.NOT_AN_OBJECT, f"the value is a JSON {_json_type(doc)}, not an object")
    return doc


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _validate(doc: dict, required: Mapping[str, str]) -> None:
    for name, type_name in required.items():
        value = doc.get(name)
        if value is None:
            raise _Reject(Reason.MISSING_FIELD, f"required field {name!r} is missing or null")
        if isinstance(value, bool) and type_name != "boolean" or not isinstance(value, JSON_TYPES[type_name]):
            raise _Reject(Reason.WRONG_TYPE, f"field {name!r} must be {type_name}, got {_json_type(value)}")


def _key(doc: dict, key_field: str, record_key: bytes | None) -> bytes:
    value = doc.get(key_field)
    if value is None or value == "":
        raise _Reject(Reason.MISSING_KEY, f"key field {key_field!r} is missing, null or empty")
    if not isinstance(value, str):
        raise _Reject(Reason.KEY_WRONG_TYPE, f"key field {key_field!r} must be a string, got {_json_type(value)}")
    try:
        key = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Reject(Reason.KEY_WRONG_TYPE, f"key field {key_field!r} is not encodable as UTF-8") from None
    if not record_key:
        raise _Reject(Reason.MISSING_RECORD_KEY,
                      f"the record has no key; producers must key it by {key_field!r} so it lands on the right partition")
    if record_key != key:
        raise _Reject(Reason.KEY_MISMATCH,
                      f"record key {record_key[:64]!r} differs from {key_field}={value[:64]!r}: "
                      f"the record may sit on the wrong partition")
    return key


def _sequence(doc: dict, record: ConsumedRecord, stream: Stream) -> int:
    if stream.sequence_header:
        raw = header_of(record, stream.sequence_header)
        if raw is None:
            raise _Reject(Reason.MISSING_SEQUENCE, f"header {stream.sequence_header!r} is missing")
        text = raw.decode("ascii", "replace").strip()
        if not text.lstrip("-").isdigit() or not text.isascii():
            raise _Reject(Reason.INVALID_SEQUENCE, f"header {stream.sequence_header!r}={raw[:32]!r} is not an integer")
        return _in_range(int(text), stream.sequence_header)
    name = stream.sequence_field
    value = doc.get(name)
    if value is None:
        raise _Reject(Reason.MISSING_SEQUENCE, f"sequence field {name!r} is missing or null")
    if isinstance(value, bool):
        raise _Reject(Reason.INVALID_SEQUENCE, f"sequence field {name!r} is a boolean, not an integer")
    if isinstance(value, float):
        if value.is_integer() and not 0 <= value < MAX_SEQUENCE:
            raise _Reject(Reason.SEQUENCE_OUT_OF_RANGE, f"sequence field {name!r}={value!r} is outside 0 <= seq < 2**63")
        raise _Reject(Reason.INVALID_SEQUENCE, f"sequence field {name!r}={value!r} is a number, not an integer")
    if not isinstance(value, int):
        raise _Reject(Reason.INVALID_SEQUENCE, f"sequence field {name!r} is a {_json_type(value)}, not an integer")
    return _in_range(value, name)  # type: ignore[arg-type]


def _in_range(value: int, name: str) -> int:
    if not 0 <= value < MAX_SEQUENCE:
        raise _Reject(Reason.SEQUENCE_OUT_OF_RANGE, f"sequence {name!r}={value} is outside 0 <= seq < 2**63")
    return value


def _transform(stream: Stream, doc: dict) -> bytes:
    out = stream.transform(doc)  # type: ignore[misc]
    if not isinstance(out, dict):
        raise _Reject(Reason.TRANSFORM_BAD_OUTPUT, f"the transform returned {type(out).__name__}, not a dict")
    try:
        return orjson.dumps(out)
    except TypeError as exc:
        raise _Reject(Reason.TRANSFORM_BAD_OUTPUT, f"the transform's output is not JSON-serialisable: {exc}") from None
