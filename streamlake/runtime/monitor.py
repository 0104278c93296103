"""StreamLake's Faust Monitor: the committed offsets ``/metrics`` shows, through Faust's public sensor hooks.

Faust's consumer reports every offset commit to ``app.monitor.on_tp_commit``, and
Faust's Monitor forgets its per-partition figures at the start and at the end of a
rebalance. StreamLake's metric means "the group's committed offset (next to read) of
each assigned partition", including partitions nothing was committed for since the
assignment, so this Monitor differs in one way:

- what it learned during a rebalance (the offsets StreamLake's consumer found at its
  seek, which ``BatchConsumer.perform_seek`` reports through ``on_tp_commit``, and any
  commit since) is kept when the rebalance ends; what it knew before is still forgotten
  at the rebalance's start, so a revoked partition never lingers.

Installed through Faust's ``Monitor`` setting (:func:`streamlake.runtime.factory.faust_settings`).
"""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor

__all__ = ["StreamLakeMonitor"]


class StreamLakeMonitor(Monitor):
    """Faust's Monitor, keeping the committed offsets learned during a rebalance past its end."""

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        learned = dict(self.tp_committed_offsets)  # emptied at this rebalance's start
        super().on_rebalance_end(app, state)
        self.tp_committed_offsets.update(learned)
