"""DLQ depth per reason against thresholds: stage/reason, reason, then the '*' default."""

from __future__ import annotations

import pytest

from streamlake.core.thresholds import DepthCondition, depth_by_reason, depth_condition_met, reasons_over

ROWS = [{"stage": "decode", "reason": "invalid-json", "count": 3},
        {"stage": "process", "reason": "transform-error", "count": 2}]


def test_most_specific_threshold_wins_and_unlisted_reasons_are_never_over():
    depths = depth_by_reason(ROWS, {"decode/invalid-json": 5, "invalid-json": 1, "*": 0})
    assert [(d.reason, d.threshold, d.over) for d in depths] == [("invalid-json", 5, False),
                                                                 ("transform-error", 0, True)]
    assert reasons_over(depth_by_reason(ROWS, {"invalid-json": 10})) == []


def test_conditions_exceeds_and_within_are_opposites():
    depths = depth_by_reason(ROWS, {"*": 2})
    assert depth_condition_met(depths, DepthCondition.EXCEEDS)
    assert not depth_condition_met(depths, DepthCondition.WITHIN)


def test_negative_or_non_integer_thresholds_are_refused():
    with pytest.raises(ValueError, match="whole numbers"):
        depth_by_reason(ROWS, {"*": -1})
