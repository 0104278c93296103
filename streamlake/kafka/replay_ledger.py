"""A record of finished window replays, so running one again with the same id sends nothing.

The record is a consumer group (:func:`~streamlake.naming.replay_group_for`)
whose committed offsets on the replayed topic are the window's stop offsets.
It is written only after every copy was acknowledged. A replay that stopped
half way leaves no record, and running it again sends the window again; the
copies carry the replay id, and landing drops the duplicate ``(_key, _seq)``.
"""

from __future__ import annotations

from ..config import Settings
from ..core.replay import WindowPlan
from ..naming import replay_group_for
from .offsets import OffsetAdmin, commit_group_offsets

__all__ = ["replay_recorded", "record_replay"]


async def replay_recorded(settings: Settings, plan: WindowPlan) -> bool:
    """Whether a replay with ``plan.replay_id`` of this topic already finished."""
    group = replay_group_for(plan.replay_id, settings.app_id)
    async with OffsetAdmin(settings) as kafka:
        committed = await kafka.committed_offsets(group)
    return any(topic == plan.topic for topic, _ in committed)


async def record_replay(settings: Settings, plan: WindowPlan) -> None:
    """Mark the replay of *plan* finished (call once every copy is acknowledged)."""
    offsets = {(plan.topic, p.partition): p.stop_offset for p in plan.partitions}
    if not offsets:
        return
    await commit_group_offsets(settings, replay_group_for(plan.replay_id, settings.app_id), offsets)
