"""create_topics returns only once the broker's metadata leads every new partition.

The controller acknowledges a creation before the broker's metadata has it; a
worker that joined its group in that moment was assigned nothing and sat idle.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamlake.catalog import TopicSpec
from streamlake.errors import BrokerError
from streamlake.kafka import admin as topic_admin


class LaggingMetadata:
    """An admin client whose metadata shows the topic only after *lag* more requests."""

    def __init__(self, lag: int, leader_after: int) -> None:
        self.requests = 0
        self.lag = lag
        self.leader_after = leader_after

    async def describe_topics(self) -> list[dict[str, Any]]:
        self.requests += 1
        if self.requests <= self.lag:
            return []
        leader = 1 if self.requests > self.leader_after else -1
        return [{"topic": "t.raw.v1", "error_code": 0,
                 "partitions": [{"partition": p, "leader": leader, "replicas": [1]} for p in range(4)]}]


def spec() -> TopicSpec:
    return TopicSpec("t.raw.v1", stream="t", role=None, partitions=4, replication_factor=1,  # type: ignore[arg-type]
                     config={})


async def test_waits_for_the_topic_and_then_for_its_leaders() -> None:
    admin = LaggingMetadata(lag=2, leader_after=4)
    await topic_admin._wait_until_led(admin, [spec()])  # type: ignore[arg-type]
    assert admin.requests == 5


async def test_a_topic_that_never_gets_leaders_is_an_error_that_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topic_admin, "_CONVERGE_TIMEOUT", 0.3)
    with pytest.raises(BrokerError, match=r"t\.raw\.v1.*streamlake topics describe"):
        await topic_admin._wait_until_led(LaggingMetadata(lag=0, leader_after=10**9), [spec()])  # type: ignore[arg-type]
