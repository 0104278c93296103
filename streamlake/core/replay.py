"""Replay planning: offset resets and window replays, without any Kafka client.

Everything here mirrors Kafka's own ``kafka-consumer-groups --reset-offsets``
(``ConsumerGroupCommand`` and ``GroupOffsetsResetter`` in Kafka 4.x):

- datetimes use Kafka's ``Utils.getDateTime`` formats: ``yyyy-MM-ddTHH:mm:ss.SSS``
  with an optional zone ``Z``, ``+HH:MM``, ``+HHMM`` or ``+HH`` (UTC when absent);
- durations use Java's ``Duration.parse`` (``PnDTnHnMn.nS``) and resolve to
  ``now - duration``;
- ``--to-offset``, ``--shift-by`` and ``--from-file`` targets are clamped to
  ``[earliest, latest]``; ``--to-datetime`` / ``--by-duration`` take the broker's
  time-index answer, or the end offset when no record is at or after the time;
- the export is Kafka's CSV: one ``topic,partition,offset`` line per partition,
  quoted the way Kafka's Jackson writer quotes (topic names over 24 characters).

The Kafka-facing side (:mod:`streamlake.kafka.offsets`) gathers the facts
(:class:`PartitionFacts`) and :func:`build_reset_plan` turns them into a plan.

Over 300 lines: reset-mode parsing, the reset plan, window planning and the replay
headers are one feature's pure rules, each small; the tests in
tests/unit/test_replay_plan.py follow the same order.
"""

from __future__ import annotations

import calendar
import csv
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import StreamLakeError

__all__ = [
    "ReplayError",
    "ReplayInputError",
    "ActiveGroupError",
    "GroupState",
    "ResetMode",
    "ResetSpec",
    "TopicScope",
    "PartitionFacts",
    "OffsetResetRow",
    "ReplayPlan",
    "WindowPartition",
    "WindowPlan",
    "ReplayDecision",
    "REPLAY_HEADER_PREFIX",
    "REPLAY_ID_HEADER",
    "ORIGIN_TOPIC_HEADER",
    "ORIGIN_PARTITION_HEADER",
    "ORIGIN_OFFSET_HEADER",
    "ORIGIN_TIMESTAMP_HEADER",
    "parse_kafka_datetime",
    "parse_iso_duration",
    "timestamp_for_duration",
    "parse_topic_scope",
    "parse_reset_file",
    "clamp_offset",
    "check_group_inactive",
    "build_reset_plan",
    "export_plan_csv",
    "build_window_plan",
    "decide_window_record",
    "replay_headers",
]


# --------------------------------------------------------------------------- errors

class ReplayError(StreamLakeError):
    """A replay or offset reset cannot go ahead."""


class ReplayInputError(ReplayError):
    """An option, datetime, duration or plan file is malformed."""


class ActiveGroupError(ReplayError):
    """The consumer group still has members, so its offsets cannot be reset."""

    def __init__(self, group: str, state: GroupState | str, members: int) -> None:
        self.group = group
        self.state = state.value if isinstance(state, GroupState) else state
        self.members = members
        super().__init__(
            f"consumer group {group!r} is {self.state} with {members} active member(s); "
            f"offsets can only be reset while the group is inactive (Empty or Dead). "
            f"Stop its workers first (every `faust worker` / `streamlake worker` of app {group!r}), "
            f"wait until `kafka-consumer-groups --describe --group {group}` shows no members, then retry."
        )


# --------------------------------------------------------------------------- groups

class GroupState(enum.Enum):
    """Classic consumer-group states as the broker reports them."""

    EMPTY = "Empty"
    DEAD = "Dead"
    STABLE = "Stable"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: str) -> GroupState:
        for state in cls:
            if state.value.lower() == (text or "").lower():
                return state
        return cls.UNKNOWN

    @property
    def is_inactive(self) -> bool:
        """Kafka resets offsets only in these states (and for unknown groups)."""
        return self in (GroupState.EMPTY, GroupState.DEAD)


def check_group_inactive(group: str, state: GroupState, members: int) -> None:
    """Raise :class:`ActiveGroupError` unless Kafka would allow a reset now."""
    if not state.is_inactive or members > 0:
        raise ActiveGroupError(group, state, members)


# --------------------------------------------------------------------------- datetimes

_DATETIME = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})T(?P<h>\d{1,2}):(?P<mi>\d{1,2}):(?P<s>\d{1,2})"
    r"\.(?P<ms>\d+)(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?$"
)
DATETIME_HELP = "yyyy-MM-ddTHH:mm:ss.SSS with an optional zone Z, +HH:MM, +HHMM or +HH (UTC when absent)"


def parse_kafka_datetime(text: str) -> int:
    """Parse a datetime the way Kafka's ``Utils.getDateTime`` does; return epoch ms.

    Where Kafka would silently misread the input, refuse instead: Kafka reads
    ``.5`` as 5 ms (so three millisecond digits are required) and drops the
    minutes of ``+HHMM`` (so ``+0530`` must be written ``+05:30``).
    """
    raw = text.strip()
    match = _DATETIME.match(raw)
    if not match:
        raise ReplayInputError(f"datetime {text!r} is not in Kafka's format {DATETIME_HELP}, e.g. 2024-05-01T13:45:00.000Z")
    g = match.groupdict()
    if len(g["ms"]) != 3:
        raise ReplayInputError(
            f"datetime {text!r}: write milliseconds with exactly three digits (e.g. .500); "
            f"Kafka reads the digits as a plain millisecond count, so .5 would mean 5 ms")
    year, month, day = int(g["y"]), int(g["mo"]), int(g["d"])
    hour, minute, second, millis = int(g["h"]), int(g["mi"]), int(g["s"]), int(g["ms"])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ReplayInputError(f"datetime {text!r} is not a calendar date")
    if hour > 23 or minute > 59 or second > 59:
        raise ReplayInputError(f"datetime {text!r} has a time of day out of range (HH 00-23, mm 00-59, ss 00-59)")
    offset_min = _zone_minutes(g["zone"], text)
    epoch_s = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset_min * 60
    millis_total = epoch_s * 1000 + millis
    if millis_total < 0:
        raise ReplayInputError(f"datetime {text!r} is before 1970; Kafka timestamps start at the epoch")
    return millis_total


def _zone_minutes(zone: str | None, text: str) -> int:
    if zone is None or zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if ":" not in zone and len(digits) == 4 and minutes:
        raise ReplayInputError(
            f"datetime {text!r}: write the zone as {zone[:3]}:{zone[3:]}; Kafka ignores the minutes of {zone}")
    if hours > 23 or minutes > 59:
        raise ReplayInputError(f"datetime {text!r} has a zone offset out of range")
    return sign * (hours * 60 + minutes)


# --------------------------------------------------------------------------- durations

# java.time.Duration.parse: days are exactly 24 hours; no years, months or weeks.
_DURATION = re.compile(
    r"^([-+]?)P(?:([-+]?[0-9]+)D)?"
    r"(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?$",
    re.IGNORECASE,
)
_NS = {"D": 86_400 * 10**9, "H": 3_600 * 10**9, "M": 60 * 10**9, "S": 10**9}


def parse_iso_duration(text: str) -> int:
    """Parse an ISO-8601 duration as Java's ``Duration.parse`` does; return nanoseconds."""
    raw = text.strip()
    match = _DURATION.match(raw)
    if not match:
        raise ReplayInputError(
            f"duration {text!r} is not an ISO-8601 duration Kafka accepts: PnDTnHnMn.nS, "
            f"e.g. PT1H, PT30M, P1DT2H30M (no years, months or weeks)")
    neg, days, tpart, hours, minutes, seconds, fraction = match.groups()
    if days is None and hours is None and minutes is None and seconds is None:
        raise ReplayInputError(f"duration {text!r} has no amount; e.g. PT1H or P1D")
    if tpart is not None and hours is None and minutes is None and seconds is None:
        raise ReplayInputError(f"duration {text!r} has a 'T' with nothing after it; e.g. P1DT2H")
    total = 0
    for amount, unit in ((days, "D"), (hours, "H"), (minutes, "M"), (seconds, "S")):
        if amount is not None:
            total += int(amount) * _NS[unit]
    if fraction:
        nanos = int(fraction.ljust(9, "0"))
        total += -nanos if seconds.startswith("-") else nanos
    return -total if neg == "-" else total


def timestamp_for_duration(duration_ns: int, now_ns: int) -> int:
    """Kafka's ``--by-duration``: ``now - duration`` as epoch ms (floored)."""
    return (now_ns - duration_ns) // 1_000_000


# --------------------------------------------------------------------------- scope

@dataclass(frozen=True)
class TopicScope:
    """``--topic T`` (every partition) or ``--topic T:0,2`` (those partitions)."""

    topic: str
    partitions: tuple[int, ...] | None = None


def parse_topic_scope(arg: str) -> TopicScope:
    """Parse one ``--topic`` argument like Kafka's tool: ``T`` or ``T:P,P...``."""
    if ":" not in arg:
        if not arg.strip():
            raise ReplayInputError("--topic needs a topic name, optionally followed by :P,P...")
        return TopicScope(arg.strip())
    topic, _, parts = arg.partition(":")
    if not topic or ":" in parts or not parts:
        raise ReplayInputError(f"invalid --topic {arg!r}: expected a topic name and partitions, e.g. {topic or 'T'}:0,1")
    try:
        partitions = tuple(sorted({int(p) for p in parts.split(",")}))
    except ValueError as exc:
        raise ReplayInputError(f"invalid partition in --topic {arg!r}: partitions are integers, e.g. {topic}:0,3") from exc
    if any(p < 0 for p in partitions):
        raise ReplayInputError(f"invalid partition in --topic {arg!r}: partitions are 0 or more")
    return TopicScope(topic, partitions)


# --------------------------------------------------------------------------- modes

class ResetMode(enum.Enum):
    TO_DATETIME = "to-datetime"
    BY_DURATION = "by-duration"
    TO_EARLIEST = "to-earliest"
    TO_LATEST = "to-latest"
    TO_OFFSET = "to-offset"
    SHIFT_BY = "shift-by"
    FROM_FILE = "from-file"

    @property
    def needs_timestamp(self) -> bool:
        return self in (ResetMode.TO_DATETIME, ResetMode.BY_DURATION)


@dataclass(frozen=True)
class ResetSpec:
    """What to reset to. ``timestamp_ms`` is resolved for datetime/duration modes."""

    mode: ResetMode
    offset: int | None = None                  # TO_OFFSET
    shift: int | None = None                   # SHIFT_BY
    timestamp_ms: int | None = None            # TO_DATETIME / BY_DURATION (resolved)
    argument: str | None = None                # the datetime or duration as given
    file_offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)  # FROM_FILE

    def describe(self) -> str:
        if self.mode is ResetMode.TO_OFFSET:
            return f"{self.mode.value} {self.offset}"
        if self.mode is ResetMode.SHIFT_BY:
            return f"{self.mode.value} {self.shift:+d}"
        if self.mode.needs_timestamp:
            return f"{self.mode.value} {self.argument} (timestamp {self.timestamp_ms})"
        return self.mode.value


def parse_reset_file(text: str, group: str) -> dict[tuple[str, int], int]:
    """Read a ``--from-file`` plan: ``topic,partition,offset`` lines (Kafka's export).

    Kafka's multi-group form ``group,topic,partition,offset`` is accepted too;
    only *group*'s lines are used then.
    """
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines:
        raise ReplayInputError("the --from-file plan is empty; expected topic,partition,offset lines")
    rows = list(csv.reader(lines, skipinitialspace=True))   # Kafka quotes long topic names
    width = len(rows[0])
    if width not in (3, 4):
        raise ReplayInputError(f"--from-file line 1 {lines[0]!r}: expected topic,partition,offset")
    plan: dict[tuple[str, int], int] = {}
    for number, (line, cells) in enumerate(zip(lines, rows, strict=False), 1):
        cells = [c.strip() for c in cells]
        if len(cells) != width:
            raise ReplayInputError(
                f"--from-file line {number} {line!r}: expected {width} columns like line 1 "
                f"({'topic,partition,offset' if width == 3 else 'group,topic,partition,offset'})")
        if width == 4:
            row_group, *cells = cells
            if row_group != group:
                continue
        topic, partition, offset = cells
        try:
            key = (topic, int(partition))
            plan[key] = int(offset)
        except ValueError as exc:
            raise ReplayInputError(f"--from-file line {number} {line!r}: partition and offset must be integers") from exc
        if not topic or key[1] < 0:
            raise ReplayInputError(f"--from-file line {number} {line!r}: needs a topic and a partition >= 0")
    if not plan:
        raise ReplayInputError(f"the --from-file plan has no lines for group {group!r}")
    return plan


# --------------------------------------------------------------------------- plans

@dataclass(frozen=True)
class PartitionFacts:
    """What the broker says about one partition, gathered before planning."""

    topic: str
    partition: int
    earliest: int
    latest: int
    committed: int | None = None
    offset_for_time: int | None = None   # time-index answer; None: no record at or after the time


@dataclass(frozen=True)
class OffsetResetRow:
    topic: str
    partition: int
    current: int | None
    target: int
    earliest: int
    latest: int
    clamped: bool = False

    @property
    def moves(self) -> int | None:
        """How far the committed offset moves (negative: re-read), None if there was none."""
        return None if self.current is None else self.target - self.current

    @property
    def changes(self) -> bool:
        return self.current != self.target


@dataclass(frozen=True)
class ReplayPlan:
    """An offset reset for one consumer group, row per partition, sorted."""

    group: str
    group_state: GroupState
    spec: ResetSpec
    rows: tuple[OffsetResetRow, ...]

    @property
    def targets(self) -> dict[tuple[str, int], int]:
        return {(r.topic, r.partition): r.target for r in self.rows}

    def to_dict(self) -> dict:
        return {
            "group": self.group,
            "group_state": self.group_state.value,
            "mode": self.spec.mode.value,
            "argument": self.spec.describe(),
            "rows": [
                {"topic": r.topic, "partition": r.partition, "current": r.current, "target": r.target,
                 "moves": r.moves, "earliest": r.earliest, "latest": r.latest, "clamped": r.clamped}
                for r in self.rows
            ],
        }


def clamp_offset(offset: int, earliest: int, latest: int) -> int:
    """Kafka's ``checkOffsetsRange``: above latest -> latest, below earliest -> earliest."""
    if offset > latest:
        return latest
    if offset < earliest:
        return earliest
    return offset


def build_reset_plan(group: str, state: GroupState, spec: ResetSpec,
                     facts: Iterable[PartitionFacts]) -> ReplayPlan:
    """Compute each partition's target exactly as Kafka's reset command does."""
    rows = []
    for f in sorted(facts, key=lambda f: (f.topic, f.partition)):
        clamped = False
        if spec.mode is ResetMode.TO_EARLIEST:
            target = f.earliest
        elif spec.mode is ResetMode.TO_LATEST:
            target = f.latest
        elif spec.mode.needs_timestamp:
            target = f.latest if f.offset_for_time is None else f.offset_for_time
        else:
            if spec.mode is ResetMode.TO_OFFSET:
                wanted = _required(spec.offset, "to-offset")
            elif spec.mode is ResetMode.SHIFT_BY:
                if f.committed is None:
                    raise ReplayInputError(
                        f"cannot shift the offset of {f.topic}:{f.partition}: group {group!r} has no committed "
                        f"offset there (Kafka refuses this too); use --to-offset, --to-datetime or --to-earliest "
                        f"for that partition, or leave it out with --topic {f.topic}:P,...")
                wanted = f.committed + _required(spec.shift, "shift-by")
            else:
                try:
                    wanted = spec.file_offsets[(f.topic, f.partition)]
                except KeyError:
                    raise ReplayInputError(f"{f.topic}:{f.partition} is not in the --from-file plan") from None
            target = clamp_offset(wanted, f.earliest, f.latest)
            clamped = target != wanted
        rows.append(OffsetResetRow(f.topic, f.partition, f.committed, target, f.earliest, f.latest, clamped))
    return ReplayPlan(group, state, spec, tuple(rows))


def _required(value: int | None, what: str) -> int:
    if value is None:
        raise ReplayInputError(f"--{what} needs a value")
    return value


def export_plan_csv(plan: ReplayPlan) -> str:
    """Kafka's single-group export: ``topic,partition,offset`` per line, byte for byte.

    Kafka writes it with Jackson's CSV writer, which quotes any string longer
    than 24 characters (and any with a character below ``-``, a quote or a comma).
    """
    return "".join(f"{_csv_field(r.topic)},{r.partition},{r.target}\n" for r in plan.rows)


_JACKSON_MAX_QUOTE_CHECK = 24


def _csv_field(text: str) -> str:
    if len(text) > _JACKSON_MAX_QUOTE_CHECK or any(c < "-" or c in '",' for c in text):
        return '"' + text.replace('"', '""') + '"'
    return text


# --------------------------------------------------------------------------- window replay

REPLAY_HEADER_PREFIX = "streamlake.replay."
REPLAY_ID_HEADER = "streamlake.replay.id"
ORIGIN_TOPIC_HEADER = "streamlake.replay.origin.topic"
ORIGIN_PARTITION_HEADER = "streamlake.replay.origin.partition"
ORIGIN_OFFSET_HEADER = "streamlake.replay.origin.offset"
ORIGIN_TIMESTAMP_HEADER = "streamlake.replay.origin.timestamp"


@dataclass(frozen=True)
class WindowPartition:
    """Read ``[first_offset, stop_offset)`` of one source partition."""

    partition: int
    first_offset: int
    stop_offset: int

    @property
    def upper_bound(self) -> int:
        """Offsets to read; the records replayed are at most this many."""
        return max(0, self.stop_offset - self.first_offset)


@dataclass(frozen=True)
class WindowPlan:
    topic: str
    into: str
    start_ms: int
    end_ms: int
    key: bytes | None
    replay_id: str
    partitions: tuple[WindowPartition, ...]

    @property
    def upper_bound(self) -> int:
        return sum(p.upper_bound for p in self.partitions)

    def to_dict(self) -> dict:
        return {
            "topic": self.topic, "into": self.into, "start_ms": self.start_ms, "end_ms": self.end_ms,
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "replay_id": self.replay_id, "upper_bound": self.upper_bound,
            "partitions": [
                {"partition": p.partition, "first_offset": p.first_offset, "stop_offset": p.stop_offset,
                 "upper_bound": p.upper_bound}
                for p in self.partitions
            ],
        }


def build_window_plan(topic: str, into: str, start_ms: int, end_ms: int, replay_id: str,
                      start_offsets: Mapping[int, int | None], end_time_offsets: Mapping[int, int | None],
                      end_offsets: Mapping[int, int], key: bytes | None = None) -> WindowPlan:
    """Bound every partition by the time index: from ``start``'s offset to ``end``'s.

    A partition with no record at or after ``start`` has nothing to replay; the
    stop offset never passes the end offset captured now, so records written
    during the replay (including the replay's own, when ``into`` is the source)
    are never read.
    """
    if end_ms <= start_ms:
        raise ReplayInputError("--end must be after --start: the window is [start, end)")
    parts = []
    for partition in sorted(end_offsets):
        end = end_offsets[partition]
        first = start_offsets.get(partition)
        first = end if first is None else min(first, end)
        stop = end_time_offsets.get(partition)
        stop = end if stop is None else min(stop, end)
        parts.append(WindowPartition(partition, first, max(first, stop)))
    return WindowPlan(topic, into, start_ms, end_ms, key, replay_id, tuple(parts))


class ReplayDecision(enum.Enum):
    """What window replay does with one record it read."""

    REPLAY = "replay"
    SKIP_KEY = "skip-key"            # --key given and the record has another key
    SKIP_BEFORE_START = "skip-before-start"  # an out-of-order timestamp before start
    STOP = "stop"                    # at or past end: this partition is done


def decide_window_record(plan: WindowPlan, part: WindowPartition, offset: int, timestamp: int,
                         key: bytes | None) -> ReplayDecision:
    """Include ``start``, exclude ``end``; stop a partition at its first record at or after ``end``."""
    if offset >= part.stop_offset or timestamp >= plan.end_ms:
        return ReplayDecision.STOP
    if timestamp < plan.start_ms:
        return ReplayDecision.SKIP_BEFORE_START
    if plan.key is not None and key != plan.key:
        return ReplayDecision.SKIP_KEY
    return ReplayDecision.REPLAY


def replay_headers(original: Sequence[tuple[str, bytes]], replay_id: str, topic: str, partition: int,
                   offset: int, timestamp: int) -> list[tuple[str, bytes]]:
    """The original headers in order, minus older ``streamlake.replay.*`` ones, plus provenance."""
    kept = [(k, v) for k, v in original if not k.startswith(REPLAY_HEADER_PREFIX)]
    return kept + [
        (REPLAY_ID_HEADER, replay_id.encode()),
        (ORIGIN_TOPIC_HEADER, topic.encode()),
        (ORIGIN_PARTITION_HEADER, str(partition).encode()),
        (ORIGIN_OFFSET_HEADER, str(offset).encode()),
        (ORIGIN_TIMESTAMP_HEADER, str(timestamp).encode()),
    ]
