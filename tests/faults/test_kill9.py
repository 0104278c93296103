"""Kill -9: three workers under a steady producer; one is SIGKILLed every ~10 s and restarted.

at_least_once: nothing is lost, on the fast path and on the classic path
(``fast_path = false``: a Faust agent, fed by StreamLake's consumer, which owns
read positions; on Faust's own consumer one run lost 152 of 5,400 records);
a record forwarded twice (processed, then its offset not committed before the
crash) is counted and reported.
exactly_once: nothing is lost and nothing is forwarded twice, as seen by a
read_committed consumer of the output and DLQ topics.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.support import SteadyProducer, account, diagnose, group_stable, plan_workload, read_all, topics, wait_all_landed
from tests.kafka_fixtures import wait_for

KILL_INTERVAL = 10.0  # seconds between kills
TAIL = 10.0  # seconds of load after the last restarted worker is back
# at_least_once: the load is open-ended; it runs until TAIL seconds after the last kill's worker is
# back, however long restarts take on a loaded machine, and only what was produced is accounted
# (about 5,000 records at 120/s on a quiet machine); `events` only bounds the plan. exactly_once is
# known to fail (xfail below), so it keeps a fixed, short load, fewer kills and a shorter settle.
PROFILE = {
    "at_least_once": dict(rate=120.0, events=30_000, kills=3, settle=150, open_ended=True),
    "exactly_once": dict(rate=60.0, events=1800, kills=2, settle=45, open_ended=False),
}


class Supervisor(threading.Thread):
    """Restart any worker that died without being killed, as a process supervisor would; note each crash."""

    def __init__(self, worker_factory, env: dict[str, str]) -> None:
        super().__init__(daemon=True, name="supervisor")
        self.factory, self.env = worker_factory, env
        self.slots: list = []
        self.crashed: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.restarts = 0

    def start_slot(self, name: str) -> None:
        with self.lock:
            self.slots.append(self.factory(name, wait=False, **self.env))

    def kill_and_restart(self, slot: int, name: str):
        with self.lock:
            victim = self.slots[slot]
            victim.kill()
            self.slots[slot] = self.factory(name, wait=False, **self.env)
            return victim

    def ready(self, slot: int) -> bool:
        return "Ready" in self.slots[slot].log()

    def run(self) -> None:
        while not self.done.wait(0.5):
            with self.lock:
                for slot, worker in enumerate(self.slots):
                    if worker.proc.poll() is not None:
                        self.crashed.append(f"{worker.name} (exit {worker.proc.returncode}: {crash_reason(worker)})")
                        self.restarts += 1
                        self.slots[slot] = self.factory(f"w{slot}-c{self.restarts}", wait=False, **self.env)


def run_kill_loop(test_env, worker_factory, guarantee: str, seed: int, fast_path: bool = True):
    profile = PROFILE[guarantee]
    sup = Supervisor(worker_factory, {"STREAMLAKE_PROCESSING_GUARANTEE": guarantee,
                                      "STREAMLAKE_FAST_PATH": "1" if fast_path else "0"})
    for i in range(3):
        sup.start_slot(f"w{i}")
    for worker in list(sup.slots):
        worker.wait_ready()
    # Load starts once the group has settled: records that arrive on a partition with no committed
    # offset while the group is still rebalancing can be lost (see test_startup_race.py).
    wait_for(group_stable(test_env, 3), timeout=60, what="3 workers to share the partitions")
    sup.start()
    bootstrap = test_env.broker.bootstrap
    source, output, dlq_topic = topics(test_env)
    planned = plan_workload(profile["events"], keys=150, seed=seed)
    producer = SteadyProducer(bootstrap, source, planned, profile["rate"])
    producer.start()
    kills: list[tuple[str, int]] = []
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    started = time.monotonic()

    def mark(event: str) -> None:  # a timeline, so a run that fails on a loaded machine says where time went
        print(f"[kill -9 {guarantee}] +{time.monotonic() - started:5.1f}s {event}; "
              f"acked {producer.acked}/{len(planned)}", flush=True)

    try:
        wait_for(lambda: producer.acked >= profile["rate"] * 3 or producer.error, timeout=30,
                 what="the load to start")
        next_kill = time.monotonic() + KILL_INTERVAL / 2
        for k in range(profile["kills"]):
            # the kill interval: a deadline, not a sleep; the load must keep moving meanwhile
            acked_before = producer.acked
            wait_for(lambda due=next_kill, before=acked_before: time.monotonic() >= due and producer.acked > before
                     or producer.error,
                     timeout=KILL_INTERVAL + 30, interval=0.1, what="the next kill")
            assert producer.error is None, producer.error
            slot = k % 3
            victim = sup.kill_and_restart(slot, f"w{slot}-r{k + 1}")
            kills.append((victim.name, producer.acked))
            mark(f"killed {victim.name}")
            next_kill = time.monotonic() + KILL_INTERVAL
            wait_for(lambda slot=slot: sup.ready(slot), timeout=120, what=f"worker slot {slot} to be back")
            mark(f"slot {slot} ready again")
        if profile["open_ended"]:
            tail_end, tail_acked = time.monotonic() + TAIL, producer.acked
            wait_for(lambda: time.monotonic() >= tail_end and producer.acked > tail_acked or producer.error
                     or not producer.is_alive(), timeout=TAIL + 30, interval=0.1, what="the tail of the load")
            assert producer.is_alive(), f"the plan of {len(planned)} records ran out before the last kill's tail"
            producer.cancel()
            planned = planned[:producer.sent]
        else:
            assert producer.is_alive() or producer.acked == len(planned), "the load must span every kill"
            producer.join(timeout=len(planned) / profile["rate"] + 60)
        mark("load stopped")
        assert producer.error is None, producer.error
        assert producer.acked == len(planned)
        out, dlq = wait_all_landed(bootstrap, planned, output, dlq_topic, timeout=profile["settle"],
                                   isolation_level=isolation)
    finally:
        producer.cancel()
        sup.done.set()
        sup.join(5)
    src = read_all(bootstrap, source)
    acc = account(f"kill -9 {guarantee}", planned, src, out, dlq)
    acc.report()
    print(f"[kill -9 {guarantee}] kills (worker, records acked at the kill): {kills}; "
          f"workers that crashed on their own (restarted): {sup.crashed or 'none'}; "
          f"output read {isolation}: {len(out)} records, DLQ {len(dlq)} records; "
          f"head holes read again: {head_holes_read_again(test_env)}", flush=True)
    diagnose(test_env, acc, bootstrap, source)
    acc.assert_complete()
    return acc, sup.crashed


def head_holes_read_again(env) -> int:
    """How often a worker's fast path saw a list start past its position and read again from there."""
    return sum(log.read_text(errors="replace").count("reading again from there") for log in env.tmp.glob("*.log"))


def crash_reason(worker) -> str:
    lines = [line for line in worker.log().splitlines() if "Crashed reason=" in line or "Error:" in line]
    return lines[0].split("] ")[-1][:200] if lines else "no reason logged"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "classic-path"])
def test_kill9_at_least_once_loses_nothing(test_env, worker_factory, record_property, fast_path):
    acc, crashed = run_kill_loop(test_env, worker_factory, "at_least_once", seed=9, fast_path=fast_path)
    assert not crashed, f"workers crashed on their own: {crashed}"
    record_property("duplicates_forwarded", acc.duplicates_forwarded)
    assert acc.dropped > 0 and acc.dlq > 0, "the workload has deliberate duplicates and bad records"


@pytest.mark.xfail(strict=False, reason=(
    "Faust exactly_once does not survive kill -9: surviving and restarted workers crash in Faust's transactional "
    "producer ('Can't send messages while not in transaction', or NotLeaderForPartitionError out of a send) and, "
    "before changelog highwaters were listed from the broker, in table recovery (ConsistencyError 'persisted "
    "offset ... higher than ... highwater (N > -1)', faust-streaming/faust#158); a read_committed consumer of the "
    "output sees 50-60 of 1,800 records twice (0 lost when crashed workers are restarted)"))
def test_kill9_exactly_once_loses_nothing_and_duplicates_nothing(test_env, worker_factory):
    acc, crashed = run_kill_loop(test_env, worker_factory, "exactly_once", seed=10)
    assert acc.duplicates_forwarded == 0, acc.line()
    assert acc.dlq_duplicates == 0, acc.line()
    assert not crashed, f"workers crashed on their own: {crashed}"
