"""A worker's watchdog: when the worker dies without leaving its group, leave for it.

A worker killed outright (kill -9, the OOM killer, a crash) sends no
LeaveGroup, so its partitions wait for the group's session timeout: 10 s by
default, and a stock broker refuses anything under 6 s. With
``worker_watchdog`` on, ``streamlake worker`` runs the worker as its child
and waits for it:

* the worker writes its group and member id to its data dir at every
  assignment (:func:`record_member`; every worker does, watched or not);
* signals for the worker (SIGTERM, SIGINT, ...) are passed on to it, and it
  stops as usual, leaving its group itself;
* if it dies of a signal nobody passed on, the watchdog sends LeaveGroup for
  its member id, and the other workers rebalance at their next heartbeat
  (about a second) instead of after the session timeout;
* the watchdog then exits as the worker did (128 + the signal), so the
  platform restarts it as it would have restarted the worker.

The worker dies with its watchdog (the parent-death signal), so it is never
left running unwatched. A host that dies takes both: then the session
timeout still applies.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Settings

__all__ = ["MEMBER_FILE", "WATCHED_ENV", "record_member", "read_member", "leave_group", "run_watched"]

log = logging.getLogger("streamlake.watchdog")

#: In the worker's data dir: {"group", "member_id", "pid"} as of its last assignment.
MEMBER_FILE = ".streamlake-member.json"
#: Set in a watched worker's environment (the watchdog's pid), so it does not start a watchdog of its own.
WATCHED_ENV = "STREAMLAKE_WATCHED_BY"
#: Passed on to the worker; it stops on these as it would unwatched.
_PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1


def record_member(datadir: str | Path, group: str, member_id: str) -> None:
    """Write this worker's group member id to its data dir (replacing the file, never half-written)."""
    path = Path(datadir) / MEMBER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"group": group, "member_id": member_id, "pid": os.getpid()}))
    partial.replace(path)


def read_member(datadir: str | Path, pid: int) -> tuple[str, str] | None:
    """(group, member id) that worker *pid* recorded last, or None (it never joined, or the file is another's)."""
    try:
        data = json.loads((Path(datadir) / MEMBER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if data.get("pid") != pid or not data.get("member_id"):
        return None
    return str(data["group"]), str(data["member_id"])


async def leave_group(settings: Settings, group: str, member_id: str) -> int:
    """Send LeaveGroup for *member_id* to *group*'s coordinator; return the broker's error code (0: left)."""
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.protocol.group import LeaveGroupRequest

    from ..kafka.client import client_kwargs

    client = AIOKafkaClient(**client_kwargs(settings), request_timeout_ms=10_000)
    await client.bootstrap()
    try:
        coordinator = await client.coordinator_lookup(CoordinationType.GROUP, group)
        response = await client.send(coordinator, LeaveGroupRequest(group, member_id))
        return int(response.error_code)
    finally:
        await client.close()


def run_watched(argv: Sequence[str], settings: Settings) -> int:
    """Run ``streamlake <argv>`` (a worker) as a child and watch it; return the exit status to leave with."""
    env = {**os.environ, WATCHED_ENV: str(os.getpid())}
    worker = subprocess.Popen([sys.executable, "-m", "streamlake", *argv], env=env, preexec_fn=_die_with_parent)
    passed_on: set[int] = set()

    def pass_on(signum: int, _frame: Any) -> None:
        passed_on.add(signum)
        try:
            worker.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {signum: signal.signal(signum, pass_on) for signum in _PASSED_ON}
    try:
        status = worker.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if status >= 0:
        return status
    killed_by = -status
    if killed_by not in passed_on:
        _leave_for(worker.pid, killed_by, settings)
    return 128 + killed_by


def _leave_for(pid: int, killed_by: int, settings: Settings) -> None:
    member = read_member(settings.datadir, pid)
    name = signal.Signals(killed_by).name
    if member is None:
        log.warning("worker %d died of %s before it joined a group: nothing to leave", pid, name)
        return
    group, member_id = member
    try:
        error = asyncio.run(asyncio.wait_for(leave_group(settings, group, member_id), timeout=20))
    except Exception as exc:  # the broker is away: the session timeout moves the partitions instead
        log.error("worker %d died of %s; leaving group %s for it failed (%s: %s): its partitions move when "
                  "its session times out", pid, name, group, type(exc).__name__, exc)
        return
    if error:
        log.warning("worker %d died of %s; the broker answered LeaveGroup for %s in %s with error code %d "
                    "(already gone)", pid, name, member_id, group, error)
    else:
        log.warning("worker %d died of %s; left group %s for it (member %s): its partitions move now",
                    pid, name, group, member_id)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGTERM if its watchdog dies, so it never runs unwatched."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
