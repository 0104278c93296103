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
"""

from __future__ import annotations

import bisect
import enum
from typing import NamedTuple

__all__ = ["SequenceClass", "KeyState", "SequenceVerdict", "classify_sequence", "MAX_GAPS", "MAX_SEQUENCE"]

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
    def from_json(cls, data: list) -> "KeyState":
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


def _bound(gaps: tuple[tuple[int, int], ...], horizon: int, max_gaps: int) -> tuple[tuple[tuple[int, int], ...], int, int]:
    """Forget the oldest gaps beyond *max_gaps*, raising the horizon past them."""
    if len(gaps) <= max_gaps:
        return gaps, horizon, 0
    forgotten = len(gaps) - max_gaps
    return gaps[forgotten:], max(horizon, gaps[forgotten - 1][1]), forgotten
