"""Per-key sequence classification.

State per key is the next expected number plus a bounded list of open gaps
(half-open ranges of numbers never seen). A record is:

* ``in_order`` – the expected next number (the first record of a key sets the baseline);
* ``gap`` – ahead of the expected number: the skipped range is recorded;
* ``late`` – inside a recorded gap: it fills that hole;
* ``duplicate`` – already seen.

The first number seen for a key is the baseline; anything below it arrives
``late`` (it was delayed past its successors), never as a duplicate.

Bound: at most :data:`MAX_GAPS` open gaps per key. On overflow the oldest gap
is forgotten and its upper end becomes ``horizon``: a number below the
horizon that is in no known gap can no longer be told apart from a duplicate,
so it is classified ``late`` (DLQ by default) rather than dropped. Nothing is
silently discarded because state overflowed.

Changelog codec: :func:`encode_key_state` / :func:`decode_key_state`. A state
is a tag byte and little-endian unsigned numbers (32-bit when both fit, else
64-bit); the gap list is written only for a key that has gaps, so the common
state is 9 bytes, and the stored value is the changelog value itself (no
decode on restore). Values
written before the codec existed (JSON ``[next_seq, gaps, horizon]``) still
decode: a JSON value starts with ``[``, never with a tag byte.
"""

from __future__ import annotations

import bisect
import enum
import struct
from typing import NamedTuple

import orjson

__all__ = ["SequenceClass", "KeyState", "SequenceVerdict", "classify_sequence", "MAX_GAPS", "MAX_SEQUENCE",
           "encode_key_state", "decode_key_state", "StateCodecError"]

MAX_GAPS = 64
MAX_SEQUENCE = 2**63  # exclusive


class SequenceClass(enum.Enum):
    IN_ORDER = "in_order"
    GAP = "gap"
    DUPLICATE = "duplicate"
    LATE = "late"


class KeyState(NamedTuple):
    """What is known about one key: next expected number and open gaps.

    Named tuples, not frozen dataclasses: the hot path builds one per record.
    """

    next_seq: int
    gaps: tuple[tuple[int, int], ...] = ()  # sorted, disjoint [lo, hi) ranges
    horizon: int = 0  # numbers below it that are in no gap are ambiguous (see module doc)

    def to_json(self) -> list:
        return [self.next_seq, [list(g) for g in self.gaps], self.horizon]

    @classmethod
    def from_json(cls, data: list) -> KeyState:
        return cls(int(data[0]), tuple((int(lo), int(hi)) for lo, hi in data[1]), int(data[2]))


class SequenceVerdict(NamedTuple):
    cls: SequenceClass
    state: KeyState  # the state if this record is accepted (forwarded or dropped)
    gap_opened: bool = False
    gap_filled: bool = False
    gaps_forgotten: int = 0
    ambiguous: bool = False  # late only because state overflowed


_IN_ORDER = SequenceClass.IN_ORDER


def classify_sequence(state: KeyState | None, seq: int, max_gaps: int = MAX_GAPS) -> SequenceVerdict:
    """Classify *seq* against *state*; return the class and the would-be new state.

    The caller stores ``verdict.state`` only when the record is accepted, so a
    record that ends in the DLQ is never counted as seen.
    """
    if state is None:
        # Numbers below the first one seen were never seen either: a record that
        # shows up there later is late (its predecessor was delayed), not a duplicate.
        return SequenceVerdict(_IN_ORDER, KeyState(seq + 1, (), seq))
    nxt = state.next_seq
    if seq == nxt:
        return SequenceVerdict(_IN_ORDER, KeyState(seq + 1, state.gaps, state.horizon))
    if seq > nxt:
        gaps, horizon, forgotten = _bound(state.gaps + ((nxt, seq),), state.horizon, max_gaps)
        return SequenceVerdict(SequenceClass.GAP, KeyState(seq + 1, gaps, horizon), gap_opened=True,
                               gaps_forgotten=forgotten)
    gaps = state.gaps
    i = bisect.bisect_right(gaps, (seq, MAX_SEQUENCE)) - 1
    if i >= 0 and gaps[i][0] <= seq < gaps[i][1]:
        lo, hi = gaps[i]
        pieces = tuple(g for g in ((lo, seq), (seq + 1, hi)) if g[0] < g[1])
        new_gaps, horizon, forgotten = _bound(gaps[:i] + pieces + gaps[i + 1:], state.horizon, max_gaps)
        return SequenceVerdict(SequenceClass.LATE, KeyState(nxt, new_gaps, horizon), gap_filled=not pieces,
                               gaps_forgotten=forgotten)
    if seq < state.horizon:
        return SequenceVerdict(SequenceClass.LATE, state, ambiguous=True)
    return SequenceVerdict(SequenceClass.DUPLICATE, state)


def _bound(gaps: tuple[tuple[int, int], ...], horizon: int,
           max_gaps: int) -> tuple[tuple[tuple[int, int], ...], int, int]:
    """Forget the oldest gaps beyond *max_gaps*, raising the horizon past them."""
    if len(gaps) <= max_gaps:
        return gaps, horizon, 0
    forgotten = len(gaps) - max_gaps
    return gaps[forgotten:], max(horizon, gaps[forgotten - 1][1]), forgotten


# -- changelog codec ------------------------------------------------------------

_TAG_NO_GAPS = 0x01  # tag, next_seq, horizon (64-bit)
_TAG_GAPS = 0x02  # tag, next_seq, horizon, then (lo, hi) per gap (64-bit)
_TAG_NO_GAPS_32 = 0x03  # tag, next_seq, horizon (32-bit): the common case
_HEAD = struct.Struct("<BQQ")
_HEAD_SIZE = _HEAD.size
_SMALL = struct.Struct("<BII")
_SMALL_SIZE = _SMALL.size
_SMALL_LIMIT = 2**32
_JSON_LIST = ord("[")


class StateCodecError(ValueError):
    """A stored per-key state that is neither the binary format nor the JSON one."""


def encode_key_state(state: KeyState) -> bytes:
    """The changelog (and in-memory) value of *state*: 9 bytes, or 17 plus 16 per gap."""
    if not state.gaps:
        if state.next_seq < _SMALL_LIMIT and state.horizon < _SMALL_LIMIT:
            return _SMALL.pack(_TAG_NO_GAPS_32, state.next_seq, state.horizon)
        return _HEAD.pack(_TAG_NO_GAPS, state.next_seq, state.horizon)
    flat = [n for gap in state.gaps for n in gap]
    return _HEAD.pack(_TAG_GAPS, state.next_seq, state.horizon) + struct.pack(f"<{len(flat)}Q", *flat)


def decode_key_state(raw: bytes) -> KeyState:
    """Read a value written by :func:`encode_key_state`, or the older JSON list."""
    if not raw:
        raise StateCodecError("empty per-key state")
    tag = raw[0]
    try:
        if tag == _TAG_NO_GAPS_32 and len(raw) == _SMALL_SIZE:
            _, next_seq, horizon = _SMALL.unpack(raw)
            return KeyState(next_seq, (), horizon)
        if tag == _TAG_NO_GAPS and len(raw) == _HEAD_SIZE:
            _, next_seq, horizon = _HEAD.unpack(raw)
            return KeyState(next_seq, (), horizon)
        if tag == _TAG_GAPS and len(raw) > _HEAD_SIZE and (len(raw) - _HEAD_SIZE) % 16 == 0:
            _, next_seq, horizon = _HEAD.unpack_from(raw)
            flat = struct.unpack_from(f"<{(len(raw) - _HEAD_SIZE) // 8}Q", raw, _HEAD_SIZE)
            return KeyState(next_seq, tuple(zip(flat[::2], flat[1::2], strict=True)), horizon)
        if tag == _JSON_LIST:
            return KeyState.from_json(orjson.loads(raw))
    except (ValueError, TypeError, IndexError, struct.error) as exc:
        raise StateCodecError(f"unreadable per-key state {raw[:40]!r}: {exc}") from exc
    raise StateCodecError(f"unreadable per-key state {raw[:40]!r}: unknown format (tag {tag:#04x}, {len(raw)} bytes)")
