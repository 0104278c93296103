"""Thresholds over DLQ depth per reason and over consumer lag: the sensors' pure rules.

A threshold map names reasons (``transform-error``) or stage/reason pairs
(``validate/missing-field``); ``*`` is the default for every other reason. A
reason without a threshold and no ``*`` is never over. Depth counts every record
retained in the DLQ topic (a redrive does not remove records; retention does).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DepthCondition", "ReasonDepth", "depth_by_reason", "reasons_over", "depth_condition_met"]

DEFAULT_KEY = "*"


class DepthCondition(enum.Enum):
    """What a DLQ-depth sensor waits for."""

    EXCEEDS = "exceeds"  # some reason is over its threshold (an alert)
    WITHIN = "within"    # every reason is at or under its threshold


@dataclass(frozen=True)
class ReasonDepth:
    stage: str
    reason: str
    depth: int
    threshold: int | None

    @property
    def over(self) -> bool:
        return self.threshold is not None and self.depth > self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "reason": self.reason, "depth": self.depth, "threshold": self.threshold,
                "over": self.over}


def depth_by_reason(by_reason: Iterable[Mapping[str, Any]], thresholds: Mapping[str, int]) -> list[ReasonDepth]:
    """Pair each ``dlq stats`` reason row with its threshold (stage/reason, then reason, then ``*``)."""
    bad = {k: v for k, v in thresholds.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0}
    if bad:
        raise ValueError(f"thresholds must be whole numbers >= 0; got {bad}")
    out = []
    for row in by_reason:
        stage, reason = str(row["stage"]), str(row["reason"])
        limit = thresholds.get(f"{stage}/{reason}", thresholds.get(reason, thresholds.get(DEFAULT_KEY)))
        out.append(ReasonDepth(stage, reason, int(row["count"]), limit))
    return out


def reasons_over(depths: Iterable[ReasonDepth]) -> list[ReasonDepth]:
    return [d for d in depths if d.over]


def depth_condition_met(depths: Iterable[ReasonDepth], condition: DepthCondition) -> bool:
    over = reasons_over(depths)
    return bool(over) if condition is DepthCondition.EXCEEDS else not over
