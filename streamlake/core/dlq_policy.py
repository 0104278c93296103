"""DLQ rules without a broker: retry schedule, filters, previews, header styles, redrive headers.

Everything here is pure (no Faust, no aiokafka): the DLQ agents
(:mod:`streamlake.runtime.dlq_agents`) and the ``streamlake dlq`` commands
(:mod:`streamlake.kafka.dlq`, :mod:`streamlake.kafka.redrive`) apply these rules to
records they read. The DLQ context header names live in :mod:`streamlake.core.dlq`.

Over 300 lines: filters, verdicts, redrive headers, previews and the one DLQ tally are
the DLQ feature's pure rules, used alike by the agents, the commands and the console;
kept in one module so a rule and its counterpart (retry verdict and tally, redrive verdict
and redrive headers) change together.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import StreamLakeError
from ..partitioner import partition_for_key
from .dlq import CONNECT_NAMES, PREFIX, SPRING_NAMES, H, Reason, Stage, read_dlq_context
from .records import Headers

__all__ = [
    "DlqError", "HeaderStyle", "RetryVerdict", "RedriveVerdict", "DlqEntry", "DlqFilter", "DlqTally",
    "retry_delay", "retry_schedule", "decide_retry", "judge_redrive", "redrive_partition", "redrive_headers",
    "styled_headers",
    "render_preview", "parse_time", "format_ms",
    "REDRIVE_ID", "REDRIVE_DLQ_TOPIC", "REDRIVE_DLQ_PARTITION", "REDRIVE_DLQ_OFFSET", "REDRIVE_PREFIX",
]

#: Provenance a redriven record carries (besides the carried attempt headers).
REDRIVE_PREFIX = "streamlake.redrive."
REDRIVE_ID = "streamlake.redrive.id"
REDRIVE_DLQ_TOPIC = "streamlake.redrive.dlq.topic"
REDRIVE_DLQ_PARTITION = "streamlake.redrive.dlq.partition"
REDRIVE_DLQ_OFFSET = "streamlake.redrive.dlq.offset"

#: DLQ context headers a redrive carries over; every other ``streamlake.dlq.*`` is dropped.
CARRIED_ON_REDRIVE = (H.ATTEMPT, H.FIRST_FAILED_AT)

#: The origin headers a record needs before it can go back to its source.
_ORIGIN_HEADERS = (H.ORIGIN_TOPIC, H.ORIGIN_PARTITION)


class DlqError(StreamLakeError):
    """A DLQ command got something it cannot work with (bad option, missing topic)."""


class HeaderStyle(enum.Enum):
    """Whose names the DLQ context is shown or exported under."""

    STREAMLAKE = "streamlake"
    CONNECT = "connect"  # Kafka Connect: __connect.errors.*
    SPRING = "spring"    # Spring Kafka: kafka_dlt-*


class RetryVerdict(enum.Enum):
    """What the DLQ agent does with one DLQ record."""

    RETRY = "retry"                    # transient, attempts left: back to <source>.retry after a backoff
    PARK_EXHAUSTED = "park-exhausted"  # transient, but the attempt cap is reached
    PARK = "park"                      # not transient: stays in the DLQ for a human (inspect, redrive)
    MALFORMED = "malformed"            # headers missing or unreadable: stays in the DLQ, logged and counted


class RedriveVerdict(enum.Enum):
    """Whether ``dlq redrive`` sends one matching record."""

    SEND = "send"
    REFUSED_ATTEMPT_CAP = "refused-attempt-cap"  # the loop guard
    REFUSED_NO_ORIGIN = "refused-no-origin"      # no origin topic/partition header: nowhere to send it


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One record read from a DLQ topic, with its context decoded."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch: when it was dead-lettered
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    context: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, topic: str, partition: int, offset: int, timestamp: int, key: bytes | None,
           value: bytes | None, headers: Headers | None) -> DlqEntry:
        hdrs = tuple((str(k), bytes(v) if v is not None else b"") for k, v in (headers or ()))
        return cls(topic, partition, offset, timestamp, key, value, hdrs, read_dlq_context(hdrs))

    @property
    def reason_code(self) -> str:
        return self.context.get(H.REASON, "") or "unknown"

    @property
    def reason(self) -> Reason | None:
        try:
            return Reason(self.context.get(H.REASON, ""))
        except ValueError:
            return None

    @property
    def stage_code(self) -> str:
        return self.context.get(H.STAGE, "") or "unknown"

    @property
    def attempt(self) -> int | None:
        """The failure count, or None when the header is missing or not a positive integer."""
        text = self.context.get(H.ATTEMPT, "").strip()
        return int(text) if text.isdigit() and int(text) > 0 else None

    @property
    def origin_topic(self) -> str | None:
        return self.context.get(H.ORIGIN_TOPIC) or None

    @property
    def origin_partition(self) -> int | None:
        text = self.context.get(H.ORIGIN_PARTITION, "").strip()
        return int(text) if text.isdigit() else None

    @property
    def origin_offset(self) -> int | None:
        text = self.context.get(H.ORIGIN_OFFSET, "").strip()
        return int(text) if text.isdigit() else None

    @property
    def first_failed_at(self) -> int | None:
        text = self.context.get(H.FIRST_FAILED_AT, "").strip()
        return int(text) if text.isdigit() else None

    def problems(self) -> list[str]:
        """Why the record is not a well-formed StreamLake DLQ record (empty when it is)."""
        found = [f"header {name} is missing" for name in (H.REASON, H.STAGE, *_ORIGIN_HEADERS)
                 if not self.context.get(name)]
        if self.context.get(H.ORIGIN_PARTITION) and self.origin_partition is None:
            found.append(f"header {H.ORIGIN_PARTITION}={self.context[H.ORIGIN_PARTITION]!r} is not a partition number")
        if self.context.get(H.REASON) and self.reason is None:
            found.append(f"unknown reason code {self.context[H.REASON]!r}")
        if self.attempt is None:
            found.append(f"header {H.ATTEMPT} is missing or not a positive integer")
        return found


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Return the seconds to wait before retry number *attempt*: ``base * 2**(attempt-1)``, at most *cap*."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if base <= 0:
        return 0.0
    exponent = min(attempt - 1, 62)  # 2**62 * base exceeds any sane cap; avoid huge floats
    return float(min(base * (2 ** exponent), cap))


def retry_schedule(attempts: int, base: float, cap: float) -> list[float]:
    """Return the delays before each retry a transient failure gets (``attempts - 1`` of them)."""
    return [retry_delay(n, base, cap) for n in range(1, max(attempts, 1))]


def decide_retry(entry: DlqEntry, max_attempts: int) -> RetryVerdict:
    """Decide what the DLQ agent does with *entry*.

    ``max_attempts`` counts failures: with 3, a record is tried by the pipeline
    at most 3 times (the first try and two retries) before it is parked.
    """
    if entry.problems():
        return RetryVerdict.MALFORMED
    if entry.reason is None or not entry.reason.retryable:
        return RetryVerdict.PARK
    assert entry.attempt is not None  # problems() checked it
    return RetryVerdict.RETRY if entry.attempt < max_attempts else RetryVerdict.PARK_EXHAUSTED


def judge_redrive(entry: DlqEntry, max_attempts: int) -> RedriveVerdict:
    """Apply the loop guard: refuse records whose attempt count has reached *max_attempts*."""
    if not entry.origin_topic or entry.origin_partition is None:
        return RedriveVerdict.REFUSED_NO_ORIGIN
    if (entry.attempt or 0) >= max_attempts:
        return RedriveVerdict.REFUSED_ATTEMPT_CAP
    return RedriveVerdict.SEND


def redrive_partition(entry: DlqEntry, origin_partitions: int) -> int:
    """The partition a redrive sends *entry* to: its origin, or its key's when it was on the wrong one.

    A ``wrong-partition`` record came from a producer with another partitioner;
    sending it back to its origin partition would dead-letter it again. It goes
    to its key's Java-partitioner partition instead, where its key's state is.
    """
    assert entry.origin_partition is not None  # judge_redrive refused it otherwise
    if entry.reason is Reason.WRONG_PARTITION and entry.key:
        return partition_for_key(entry.key, origin_partitions)
    return entry.origin_partition


def redrive_headers(entry: DlqEntry, redrive_id: str) -> list[tuple[str, bytes]]:
    """Return the headers of the redriven copy of *entry*.

    The original headers, without the DLQ context (except the attempt count and
    first-failure time, which the next failure builds on) and without an
    earlier redrive's provenance, plus this redrive's provenance.
    """
    headers = [(k, v) for k, v in entry.headers
               if not k.startswith(PREFIX) and not k.startswith(REDRIVE_PREFIX)]
    headers += [(k, v) for k, v in entry.headers if k in CARRIED_ON_REDRIVE]
    headers += [
        (REDRIVE_ID, redrive_id.encode()),
        (REDRIVE_DLQ_TOPIC, entry.topic.encode()),
        (REDRIVE_DLQ_PARTITION, str(entry.partition).encode()),
        (REDRIVE_DLQ_OFFSET, str(entry.offset).encode()),
    ]
    return headers


def styled_headers(headers: Headers, style: HeaderStyle) -> list[tuple[str, bytes]]:
    """Return *headers* with the DLQ context renamed to *style*'s names.

    Context headers the other tool has no slot for keep their StreamLake name,
    so nothing is lost; non-DLQ headers are untouched. The Connect style puts
    the reason code in ``__connect.errors.class.name`` (Connect has no reason
    code; see :data:`streamlake.core.dlq.CONNECT_NAMES`).
    """
    mapping: Mapping[str, str] = {HeaderStyle.CONNECT: CONNECT_NAMES, HeaderStyle.SPRING: SPRING_NAMES}.get(style, {})
    return [(mapping.get(k, k), v) for k, v in headers]


@dataclass(frozen=True)
class DlqFilter:
    """Which DLQ records a command looks at; an unset field matches everything.

    Times compare with the DLQ record's timestamp (when it was dead-lettered),
    ``since`` inclusive and ``until`` exclusive.
    """

    reason: str | None = None
    stage: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in {r.value for r in Reason}:
            raise DlqError(f"unknown reason {self.reason!r}; use one of: {', '.join(r.value for r in Reason)}")
        if self.stage is not None and self.stage not in {s.value for s in Stage}:
            raise DlqError(f"unknown stage {self.stage!r}; use one of: {', '.join(s.value for s in Stage)}")
        if self.since_ms is not None and self.until_ms is not None and self.since_ms >= self.until_ms:
            raise DlqError("--since must be earlier than --until")

    def matches(self, entry: DlqEntry) -> bool:
        if self.reason is not None and entry.context.get(H.REASON) != self.reason:
            return False
        if self.stage is not None and entry.context.get(H.STAGE) != self.stage:
            return False
        if self.since_ms is not None and entry.timestamp < self.since_ms:
            return False
        if self.until_ms is not None and entry.timestamp >= self.until_ms:
            return False
        if self.key is not None and entry.key != self.key:
            return False
        return True


def parse_time(text: str, option: str = "--since") -> int:
    """Parse an ISO 8601 time (a naive one is UTC) into ms since the epoch."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise DlqError(f"{option} {text!r} is not an ISO 8601 time; write e.g. 2024-05-01T12:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def format_ms(ms: int | None) -> str | None:
    """Render ms since the epoch as an ISO 8601 UTC time (None stays None)."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_preview(data: bytes | None, limit: int = 200) -> str:
    """Return a one-line, terminal-safe preview of *data*, at most about *limit* characters.

    UTF-8 text is shown as text with control characters escaped (so a value
    cannot move the cursor or change colours); anything else (invalid UTF-8,
    NUL bytes, mostly control characters) is shown as escaped bytes. A cut preview ends with how many bytes were left out.
    """
    if data is None:
        return "<null>"
    if not data:
        return "<empty>"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _cut(data, limit, _escape_bytes, "binary ")
    controls = sum(1 for c in text if not c.isprintable() and c not in "\t\n\r ")
    if "\x00" in text or controls * 3 > len(text):  # valid UTF-8, but not text anyone wrote
        return _cut(data, limit, _escape_bytes, "binary ")
    return _cut(text, limit, _escape_text, "")


def _cut(data: Any, limit: int, escape: Any, label: str) -> str:
    # Escape piece by piece so the cut never splits an escape sequence.
    out: list[str] = []
    size = 0
    used = 0
    for item in data:
        piece = escape(item)
        if size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
        used += 1
    rest = len(data) - used
    body = "".join(out)
    if rest:
        unit = "bytes" if isinstance(data, bytes) else "chars"
        body += f"… (+{rest} {unit})"
    return f"{label}b'{body}'" if label else body


def _escape_text(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable() or ch == " ":
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape_bytes(byte: int) -> str:
    if byte == 0x5C:
        return "\\\\"
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return f"\\x{byte:02x}"


@dataclass
class _ReasonTally:
    count: int = 0
    oldest_ms: int | None = None
    newest_ms: int | None = None


@dataclass
class DlqTally:
    """Counts over DLQ records: by stage and reason, oldest/newest failure, retried and parked.

    ``parked`` counts records the DLQ agent does not retry (they wait for a
    human); ``exhausted`` is the part of them that ran out of retry attempts;
    ``retried`` counts records the agent sends back through the retry topic.
    """

    max_attempts: int
    records: int = 0
    retried: int = 0
    parked: int = 0
    exhausted: int = 0
    malformed: int = 0
    oldest_ms: int | None = None
    newest_ms: int | None = None
    by_reason: dict[tuple[str, str], _ReasonTally] = field(default_factory=dict)

    def add(self, entry: DlqEntry) -> RetryVerdict:
        verdict = decide_retry(entry, self.max_attempts)
        self.count(entry, verdict)
        return verdict

    def count(self, entry: DlqEntry, verdict: RetryVerdict) -> None:
        """Count *entry*, whose *verdict* was already decided."""
        self.records += 1
        ts = entry.timestamp
        self.oldest_ms = ts if self.oldest_ms is None else min(self.oldest_ms, ts)
        self.newest_ms = ts if self.newest_ms is None else max(self.newest_ms, ts)
        item = self.by_reason.setdefault((entry.stage_code, entry.reason_code), _ReasonTally())
        item.count += 1
        item.oldest_ms = ts if item.oldest_ms is None else min(item.oldest_ms, ts)
        item.newest_ms = ts if item.newest_ms is None else max(item.newest_ms, ts)
        if verdict is RetryVerdict.RETRY:
            self.retried += 1
        else:
            self.parked += 1
            self.exhausted += verdict is RetryVerdict.PARK_EXHAUSTED
            self.malformed += verdict is RetryVerdict.MALFORMED

    @classmethod
    def from_counts(cls, counts: dict[str, Any], max_attempts: int = 0) -> DlqTally:
        """A tally from the DLQ agent's counts-table value (see :meth:`to_counts`)."""
        tally = cls(max_attempts, records=counts.get("records", 0), retried=counts.get("retried", 0),
                    parked=counts.get("parked", 0), exhausted=counts.get("exhausted", 0),
                    malformed=counts.get("malformed", 0))
        for name, item in counts.get("by_reason", {}).items():
            stage, _, reason = name.partition("/")
            tally.by_reason[(stage, reason)] = _ReasonTally(item["count"], item["oldest"], item["newest"])
        return tally

    def to_counts(self) -> dict[str, Any]:
        """The DLQ agent's counts-table value: plain JSON, reasons keyed ``stage/reason``."""
        return {"records": self.records, "retried": self.retried, "parked": self.parked,
                "exhausted": self.exhausted, "malformed": self.malformed,
                "by_reason": {f"{stage}/{reason}": {"count": item.count, "oldest": item.oldest_ms,
                                                    "newest": item.newest_ms}
                              for (stage, reason), item in self.by_reason.items()}}

    def to_dict(self) -> dict[str, Any]:
        by_stage: dict[str, int] = {}
        for (stage, _), item in self.by_reason.items():
            by_stage[stage] = by_stage.get(stage, 0) + item.count
        return {
            "records": self.records, "retried": self.retried, "parked": self.parked,
            "exhausted": self.exhausted, "malformed": self.malformed,
            "oldest": format_ms(self.oldest_ms), "newest": format_ms(self.newest_ms),
            "by_stage": dict(sorted(by_stage.items())),
            "by_reason": [
                {"stage": stage, "reason": reason, "count": item.count,
                 "oldest": format_ms(item.oldest_ms), "newest": format_ms(item.newest_ms)}
                for (stage, reason), item in sorted(self.by_reason.items())
            ],
        }
