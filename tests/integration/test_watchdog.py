"""The worker watchdog (worker_watchdog): a worker killed outright has its partitions moved at once.

Both workers run with a 60 s session timeout, so the group can only settle on
the survivor within the test's 30 s through the watchdog's LeaveGroup. Every
record to forward, produced before or after the kill, reaches the output.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson

from streamlake.catalog import load_catalog
from streamlake.core.sample import Outcome, SampleMix, expected_outcome, generate_sample
from streamlake.kafka.sample_producer import produce_sample
from streamlake.topology import discover_streams
from tests.kafka_fixtures import Out, ProcessFactory, read_topic, read_until, stable_with, wait_for

PARTITIONS = 8
SESSION_TIMEOUT_S = "60"


def worker_pid(watchdog_pid: int) -> int:
    [pid] = Path(f"/proc/{watchdog_pid}/task/{watchdog_pid}/children").read_text().split()
    return int(pid)


def rss_mb(pid: int) -> float:
    [kb] = [line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")]
    return int(kb) / 1024


def forwarded_in(out: list[Out]) -> set[tuple[bytes | None, int]]:
    return {(o.key, orjson.loads(o.value)["seq"]) for o in out}


def test_a_killed_worker_is_taken_out_of_its_group_by_its_watchdog(test_env) -> None:
    settings = test_env.settings()
    catalog = load_catalog(settings, discover_streams(settings.topologies_dir))
    source = f"{test_env.prefix}.sales.orders.raw.v1"
    output = f"{test_env.prefix}.sales.orders.valid.v1"
    records = list(generate_sample(800, keys=100, mix=SampleMix(bad=0.0), seed=9, key_prefix=test_env.prefix,
                                   misroute=False))
    factory = ProcessFactory(test_env)
    try:
        watched = [factory.start(name, ["-m", "streamlake", "worker", "-l", "info"], wait=False,
                                 STREAMLAKE_WORKER_WATCHDOG="1", STREAMLAKE_SESSION_TIMEOUT=SESSION_TIMEOUT_S)
                   for name in ("w0", "w1")]
        for process in watched:
            process.wait_ready()
        wait_for(stable_with(settings, catalog, 2, source), timeout=60, what="both workers to hold partitions")
        before = asyncio.run(produce_sample(settings, source, PARTITIONS, records[:400]))
        asyncio.run(read_topic(test_env.broker.bootstrap, output, min_count=before.expected_forwarded))

        victim, survivor = watched
        assert rss_mb(victim.proc.pid) < 40, "the watchdog imports no more than it needs (no Faust)"
        killed = worker_pid(victim.proc.pid)
        os.kill(killed, signal.SIGKILL)
        wait_for(stable_with(settings, catalog, 1, source), timeout=30,
                 what=f"the group to settle on the survivor well before the {SESSION_TIMEOUT_S} s session timeout")
        assert victim.proc.wait(timeout=30) == 128 + signal.SIGKILL  # the watchdog exits as its worker did
        assert "left group" in victim.log()

        asyncio.run(produce_sample(settings, source, PARTITIONS, records[400:]))
        # The killed worker's records since its last commit are read again by the survivor and
        # may be forwarded twice, so the output is complete when every (key, seq) is in it,
        # not when it holds as many records as were expected.
        wanted = {(r.key, r.seq) for r in records if expected_outcome(r.kind)[0] is Outcome.FORWARD}
        try:
            asyncio.run(read_until(test_env.broker.bootstrap, output,
                                   lambda out: wanted <= forwarded_in(out), timeout=60))
        except AssertionError as exc:  # the assertion below names what is missing
            print(f"\n{exc}", flush=True)
        out = asyncio.run(read_until(test_env.broker.bootstrap, output))
        missing = sorted(wanted - forwarded_in(out))
        assert not missing, f"{len(missing)} record(s) never forwarded, e.g. {missing[:5]}"
        assert survivor.proc.poll() is None
    except BaseException:
        factory.report_failure()
        raise
    finally:
        factory.stop_all()
