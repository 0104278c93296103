"""DLQ stages, reason codes and the headers a dead-lettered record carries.

A DLQ record keeps the original key, value and headers byte for byte and adds
the ``streamlake.dlq.*`` headers below (UTF-8). :data:`CONNECT_NAMES` and
:data:`SPRING_NAMES` map them to Kafka Connect's and Spring Kafka's names.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .records import ConsumedRecord, Headers

__all__ = [
    "Stage", "Reason", "DeadLetter", "H", "build_dlq_headers", "read_dlq_context",
    "CONNECT_NAMES", "SPRING_NAMES", "MAX_STACKTRACE_BYTES", "strip_dlq_headers", "VALUE_OMITTED",
]

MAX_STACKTRACE_BYTES = 8 * 1024
MAX_MESSAGE_BYTES = 1024
PREFIX = "streamlake.dlq."


class Stage(enum.Enum):
    """Where in the pipeline a record failed."""

    DECODE = "decode"
    VALIDATE = "validate"
    KEY = "key"
    SEQUENCE = "sequence"
    PROCESS = "process"
    PRODUCE = "produce"
    LAND = "land"  # the lake lander (streamlake.lake) could not turn a valid record into a row


class Reason(enum.Enum):
    """Documented reason codes; each belongs to one stage."""

    EMPTY_VALUE = "empty-value"            # null (tombstone) or zero-length value
    INVALID_UTF8 = "invalid-utf8"
    INVALID_JSON = "invalid-json"          # incl. NaN/Infinity, nesting deeper than 1024
    NOT_AN_OBJECT = "not-an-object"        # a JSON scalar or array
    MISSING_FIELD = "missing-field"        # a required field is absent or null
    WRONG_TYPE = "wrong-type"              # a required field has the wrong JSON type
    MISSING_KEY = "missing-key"            # the key field is absent, null or empty
    KEY_WRONG_TYPE = "key-wrong-type"      # the key field is not a string
    MISSING_RECORD_KEY = "missing-record-key"  # the Kafka record key is null or empty
    KEY_MISMATCH = "key-mismatch"          # the record key differs from the key field
    WRONG_PARTITION = "wrong-partition"    # the key belongs on another partition (non-Java partitioner)
    MISSING_SEQUENCE = "missing-sequence"
    INVALID_SEQUENCE = "invalid-sequence"  # not an integer (float, string, bool, ...)
    SEQUENCE_OUT_OF_RANGE = "sequence-out-of-range"  # negative or >= 2**63
    ORDERING_IN_ORDER = "ordering-in-order"  # an ordering class whose policy is dlq
    ORDERING_GAP = "ordering-gap"
    ORDERING_DUPLICATE = "ordering-duplicate"
    ORDERING_LATE = "ordering-late"
    TRANSFORM_ERROR = "transform-error"
    TRANSFORM_RETRYABLE = "transform-retryable"  # RetryableError: retried by the DLQ agent
    TRANSFORM_BAD_OUTPUT = "transform-bad-output"  # transform returned a non-dict or unserialisable value
    PRODUCE_FAILED = "produce-failed"      # the output topic rejected the record (e.g. too large)
    LAND_UNDECODABLE = "land-undecodable"  # the valid record's key or value cannot be decoded (not a JSON object)
    LAND_MISSING_IDENTITY = "land-missing-identity"  # no record key or no usable sequence number
    LAND_CAST_FAILED = "land-cast-failed"  # a field does not cast to its declared column type
    LAND_FIELD_TOO_LARGE = "land-field-too-large"  # a string field or _extra exceeds [lake] max_field_bytes

    @property
    def stage(self) -> Stage:
        return _STAGE_OF[self]

    @property
    def retryable(self) -> bool:
        return self is Reason.TRANSFORM_RETRYABLE


_STAGE_OF = {
    **dict.fromkeys((Reason.EMPTY_VALUE, Reason.INVALID_UTF8, Reason.INVALID_JSON, Reason.NOT_AN_OBJECT), Stage.DECODE),
    **dict.fromkeys((Reason.MISSING_FIELD, Reason.WRONG_TYPE), Stage.VALIDATE),
    **dict.fromkeys((Reason.MISSING_KEY, Reason.KEY_WRONG_TYPE, Reason.MISSING_RECORD_KEY, Reason.KEY_MISMATCH,
                     Reason.WRONG_PARTITION), Stage.KEY),
    **dict.fromkeys((Reason.MISSING_SEQUENCE, Reason.INVALID_SEQUENCE, Reason.SEQUENCE_OUT_OF_RANGE,
                     Reason.ORDERING_IN_ORDER, Reason.ORDERING_GAP, Reason.ORDERING_DUPLICATE,
                     Reason.ORDERING_LATE), Stage.SEQUENCE),
    **dict.fromkeys((Reason.TRANSFORM_ERROR, Reason.TRANSFORM_RETRYABLE, Reason.TRANSFORM_BAD_OUTPUT), Stage.PROCESS),
    Reason.PRODUCE_FAILED: Stage.PRODUCE,
    **dict.fromkeys((Reason.LAND_UNDECODABLE, Reason.LAND_MISSING_IDENTITY, Reason.LAND_CAST_FAILED,
                     Reason.LAND_FIELD_TOO_LARGE), Stage.LAND),
}


class H:
    """Header names."""

    ORIGIN_TOPIC = "streamlake.dlq.origin.topic"
    ORIGIN_PARTITION = "streamlake.dlq.origin.partition"
    ORIGIN_OFFSET = "streamlake.dlq.origin.offset"
    ORIGIN_TIMESTAMP = "streamlake.dlq.origin.timestamp"
    GROUP = "streamlake.dlq.group"
    STAGE = "streamlake.dlq.stage"
    REASON = "streamlake.dlq.reason"
    EXC_CLASS = "streamlake.dlq.exception.class"
    EXC_MESSAGE = "streamlake.dlq.exception.message"
    EXC_STACKTRACE = "streamlake.dlq.exception.stacktrace"
    ATTEMPT = "streamlake.dlq.attempt"
    FIRST_FAILED_AT = "streamlake.dlq.first-failed-at"
    WORKER = "streamlake.dlq.worker"


#: On a DLQ record written without its value (too large for the DLQ): the value's size in bytes.
VALUE_OMITTED = "streamlake.dlq.value-omitted"


CONNECT_NAMES: Mapping[str, str] = {
    H.ORIGIN_TOPIC: "__connect.errors.topic",
    H.ORIGIN_PARTITION: "__connect.errors.partition",
    H.ORIGIN_OFFSET: "__connect.errors.offset",
    H.STAGE: "__connect.errors.stage",
    H.REASON: "__connect.errors.class.name",  # Connect has no reason code; closest slot is documented
    H.EXC_CLASS: "__connect.errors.exception.class.name",
    H.EXC_MESSAGE: "__connect.errors.exception.message",
    H.EXC_STACKTRACE: "__connect.errors.exception.stacktrace",
    H.GROUP: "__connect.errors.connector.name",
    H.WORKER: "__connect.errors.task.id",
}

SPRING_NAMES: Mapping[str, str] = {
    H.ORIGIN_TOPIC: "kafka_dlt-original-topic",
    H.ORIGIN_PARTITION: "kafka_dlt-original-partition",
    H.ORIGIN_OFFSET: "kafka_dlt-original-offset",
    H.ORIGIN_TIMESTAMP: "kafka_dlt-original-timestamp",
    H.GROUP: "kafka_dlt-original-consumer-group",
    H.EXC_CLASS: "kafka_dlt-exception-fqcn",
    H.EXC_MESSAGE: "kafka_dlt-exception-message",
    H.EXC_STACKTRACE: "kafka_dlt-exception-stacktrace",
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the pipeline could not accept, and why."""

    record: ConsumedRecord
    reason: Reason
    message: str
    exc_class: str = ""
    stacktrace: str = ""
    shrink: int = 0  # how often the DLQ refused it as too large (see binding._dead_letter)

    def shrunk(self) -> DeadLetter:
        """The same letter with less context, for a DLQ that refused it as too large."""
        return replace(self, message=self.message[:200], stacktrace="", shrink=self.shrink + 1)

    @property
    def stage(self) -> Stage:
        return self.reason.stage

    @classmethod
    def from_exception(cls, record: ConsumedRecord, reason: Reason, exc: BaseException) -> DeadLetter:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(record, reason, str(exc), f"{type(exc).__module__}.{type(exc).__qualname__}", trace)


def _bounded(text: str, limit: int, keep_tail: bool = False) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    marker = b"...[truncated]..."
    room = limit - len(marker)
    cut = data[-room:] if keep_tail else data[:room]
    cut = cut.decode("utf-8", "ignore").encode()  # never split a multi-byte char
    return marker + cut if keep_tail else cut + marker


def strip_dlq_headers(headers: Headers) -> list[tuple[str, bytes]]:
    """The headers without any ``streamlake.dlq.*`` entries."""
    return [(k, v) for k, v in headers if not k.startswith(PREFIX)]


def build_dlq_headers(letter: DeadLetter, group: str, worker: str, now_ms: int) -> list[tuple[str, bytes]]:
    """Original headers plus the DLQ context.

    A record that failed before (it carries ``streamlake.dlq.attempt``) keeps its
    first-failure time and gets the next attempt number.
    """
    rec = letter.record
    previous = read_dlq_context(rec.headers)
    attempt = int(previous.get(H.ATTEMPT, "0") or 0) + 1 if H.ATTEMPT in previous else 1
    first = previous.get(H.FIRST_FAILED_AT) or str(now_ms)
    headers = strip_dlq_headers(rec.headers)
    headers += [
        (H.ORIGIN_TOPIC, rec.topic.encode()),
        (H.ORIGIN_PARTITION, str(rec.partition).encode()),
        (H.ORIGIN_OFFSET, str(rec.offset).encode()),
        (H.ORIGIN_TIMESTAMP, str(rec.timestamp).encode()),
        (H.GROUP, group.encode()),
        (H.STAGE, letter.stage.value.encode()),
        (H.REASON, letter.reason.value.encode()),
        (H.EXC_CLASS, letter.exc_class.encode()),
        (H.EXC_MESSAGE, _bounded(letter.message, MAX_MESSAGE_BYTES)),
        (H.EXC_STACKTRACE, _bounded(letter.stacktrace, MAX_STACKTRACE_BYTES, keep_tail=True)),
        (H.ATTEMPT, str(attempt).encode()),
        (H.FIRST_FAILED_AT, first.encode()),
        (H.WORKER, worker.encode()),
    ]
    return headers


def read_dlq_context(headers: Headers) -> dict[str, str]:
    """The ``streamlake.dlq.*`` headers as text (last value wins)."""
    return {k: v.decode("utf-8", "replace") for k, v in headers if k.startswith(PREFIX)}
