"""Sequence-table recovery: a rebalance in the middle of it, and records that wait for their keys' state.

The changelog is prefilled with many keys (as a worker that ran before would
have left it). Worker A starts and restores it; while A is restoring, worker
B joins the group, so A's recovery is interrupted by a rebalance and starts
over on its new assignment. Records for restored keys are already waiting
in the source topic: one repeats the key's last number (a duplicate, if the
key's state is there) and one is the next number. If any record were
processed before its key's state was restored, its duplicate would be taken
as the key's first record and forwarded.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamlake.catalog import load_catalog
from streamlake.core.sequence import KeyState, encode_key_state
from streamlake.kafka.admin import apply_catalog
from streamlake.naming import changelog_topic_for, table_name_for
from streamlake.partitioner import partition_for_key
from streamlake.topology import discover_streams
from tests.kafka_fixtures import ROOT, read_until, wait_for

PARTITIONS = 8  # conf/catalog.toml: sales.orders
#: Enough that the bulk restore (about 100k keys/s here) outlasts worker b's start and join (1-2 s)
#: with room to spare on a loaded machine; with 200k keys it once finished 0.1 s before b joined.
RESTORED_KEYS = 600_000
PROBED_KEYS = 300
RESTORING = "Restoring state from changelog topics"
RECOVERED = "Recovery complete"
REJOINING = "(Re-)joining group"

#: Imports the app, then waits for a file before it runs the worker: joining the group
#: then takes a fraction of a second, so it lands inside the other worker's recovery.
ARMED_WORKER = """
import os, sys, time
from streamlake.app import app
trigger = sys.argv[1]
while not os.path.exists(trigger):
    time.sleep(0.01)
sys.argv = ["faust", "worker", "-l", "info", "--web-port", "0", "--web-host", "127.0.0.1"]
app.main()
"""


def next_seq_of(i: int) -> int:
    return 5 + i % 7


async def prefill_changelog(bootstrap: str, topic: str, keys: list[bytes]) -> None:
    """Write one state per key, in record batches (per-record sends would take most of the test)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for i, key in enumerate(keys):
            value = encode_key_state(KeyState(next_seq_of(i), (), 0))
            by_partition.setdefault(partition_for_key(key, PARTITIONS), []).append((key, value))
        pending = []
        for partition, rows in by_partition.items():
            batch = producer.create_batch()
            for key, value in rows:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def create_changelog(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()


async def produce_probes(bootstrap: str, topic: str, probes: list[tuple[bytes, int]]) -> None:
    """Per probed key: its last number again (a duplicate), then its next number."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sends = []
        for key, nxt in probes:
            for seq in (nxt - 1, nxt):
                value = orjson.dumps({"order_id": key.decode(), "seq": seq})
                sends.append(await producer.send(topic, value, key=key, partition=partition_for_key(key, PARTITIONS)))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def spawn_armed_worker(test_env, name: str, trigger: Path) -> subprocess.Popen:
    # Port 0 (setting and option): the worker's web server binds any free port itself.
    env = test_env.environ(STREAMLAKE_WEB_PORT="0", STREAMLAKE_DATADIR=str(test_env.tmp / f"{name}-data"))
    with open(test_env.tmp / f"{name}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-c", ARMED_WORKER, str(trigger)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def lines_of(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def test_rebalance_in_the_middle_of_recovery_restores_every_key_before_its_records(test_env, worker_factory):
    settings = test_env.settings()
    catalog = load_catalog(settings, discover_streams(settings.topologies_dir))
    bootstrap = test_env.broker.bootstrap
    source = f"{test_env.prefix}.sales.orders.raw.v1"
    output = f"{test_env.prefix}.sales.orders.valid.v1"
    changelog = changelog_topic_for(settings.app_id, table_name_for(source, "seq"))
    asyncio.run(apply_catalog(settings, catalog))

    asyncio.run(create_changelog(bootstrap, changelog))
    keys = [f"{test_env.prefix}-o{i:07d}".encode() for i in range(RESTORED_KEYS)]
    asyncio.run(prefill_changelog(bootstrap, changelog, keys))
    step = RESTORED_KEYS // PROBED_KEYS
    probes = [(keys[i], next_seq_of(i)) for i in range(0, RESTORED_KEYS, step)][:PROBED_KEYS]
    asyncio.run(produce_probes(bootstrap, source, probes))

    trigger = test_env.tmp / "join-now"
    armed = spawn_armed_worker(test_env, "b", trigger)
    try:
        first = worker_factory("a", wait=False)
        wait_for(lambda: RESTORING in first.log() or first.proc.poll() is not None, timeout=120,
                 what="worker a to start restoring")
        trigger.touch()
        first.wait_ready(timeout=180)
        wait_for(lambda: "Ready" in "\n".join(lines_of(test_env.tmp / "b.log")) or armed.poll() is not None,
                 timeout=180, what="worker b to be ready")
        assert armed.poll() is None, "\n".join(lines_of(test_env.tmp / "b.log"))[-4000:]

        # The rebalance came while A was restoring: after its first "Restoring ..." and before
        # its first "Recovery complete", A rejoined the group.
        log_a = first.log().splitlines()
        restoring = next(i for i, line in enumerate(log_a) if RESTORING in line)
        recovered = next((i for i, line in enumerate(log_a) if RECOVERED in line), len(log_a))
        assert any(REJOINING in line for line in log_a[restoring:recovered]), (
            "worker b did not join while worker a was restoring; the test did not test what it says:\n"
            + "\n".join(log_a[restoring:recovered][-40:]))

        expected = {(key, nxt) for key, nxt in probes}
        out = asyncio.run(read_until(bootstrap, output, lambda out: len(out) >= len(expected), timeout=120))
        forwarded = {(o.key, orjson.loads(o.value)["seq"]) for o in out}
        duplicates_forwarded = {(k, s) for k, s in forwarded if (k, s + 1) in expected}
        assert not duplicates_forwarded, f"{len(duplicates_forwarded)} records processed before their key's state " \
                                         f"was restored, e.g. {sorted(duplicates_forwarded)[:3]}"
        assert forwarded == expected
        assert len(out) == len(expected)
    finally:
        if armed.poll() is None:
            os.killpg(armed.pid, 15)
            try:
                armed.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(armed.pid, 9)
                armed.wait(30)
