"""How replay and redrive meet the sequence tracker (docs/REPLAY.md, "Replay and sequence tracking")."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import orjson

from streamlake.core.dlq import H
from streamlake.core.dlq_policy import DlqFilter
from streamlake.core.replay_options import reset_spec_from_options
from streamlake.errors import StreamLakeError
from streamlake.kafka.redrive import RedriveMode
from streamlake.kafka.replay import execute_offset_reset, plan_offset_reset, plan_window, replay_window
from tests.dlq_sync import redrive_dlq
from tests.kafka_fixtures import produce, read_topic, wait_for

PARTITIONS = 8


def order(key: str, seq: int) -> dict:
    return {"key": key.encode(), "value": orjson.dumps({"order_id": key, "seq": seq})}


def seqs(records) -> list[int]:
    return [orjson.loads(r.value)["seq"] for r in records]


def counters(worker) -> dict:
    url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["sales.orders"]


async def reset_to_earliest(settings, group: str, topic: str) -> None:
    spec = reset_spec_from_options(group=group, to_earliest=True)
    deadline = time.monotonic() + 60
    while True:  # the stopped worker's membership may take a moment to leave
        try:
            plan = await plan_offset_reset(settings, group, spec, topics=[topic])
            break
        except StreamLakeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    await execute_offset_reset(settings, plan)


async def test_reread_after_offset_reset_forwards_nothing_twice_and_does_not_flood_the_dlq(test_env, worker_factory):
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    raw, out_topic, dlq_topic = f"{p}.sales.orders.raw.v1", f"{p}.sales.orders.valid.v1", f"{p}.sales.orders.raw.v1.dlq"
    first = worker_factory("first")
    await produce(bootstrap, raw, [order("K", s) for s in (1, 2, 4, 3, 5)]
                  + [{"key": b"K", "value": b"{not json"}], PARTITIONS)
    assert seqs(await read_topic(bootstrap, out_topic, min_count=4)) == [1, 2, 4, 5]
    assert len(await read_topic(bootstrap, dlq_topic, min_count=2)) == 2
    first.stop()

    await reset_to_earliest(test_env.settings(), test_env.app_id, raw)
    second = worker_factory("second")
    await produce(bootstrap, raw, [order("K", 6)], PARTITIONS)  # behind the re-read history
    out = await read_topic(bootstrap, out_topic, min_count=5)
    assert seqs(out) == [1, 2, 4, 5, 6], "re-read records must not be forwarded again"
    # A rebalance on a loaded machine may make the worker read some records again (at least once):
    # whatever it reads twice is dropped again, so only the counts' shape is exact.
    c = wait_for(lambda: (c := counters(second))["records_in"] >= 7 and c, timeout=60, what="7 records counted")
    assert c["forwarded"] == 1 and c["dlq"] == 0, c
    assert set(c["dropped_by_class"]) == {"duplicate", "already-in-dlq"}, c
    assert c["dropped_by_class"]["duplicate"] >= 4 and c["dropped_by_class"]["already-in-dlq"] >= 2, c
    assert c["records_in"] == c["forwarded"] + c["dropped"] + c["dlq"]
    assert len(await read_topic(bootstrap, dlq_topic, min_count=2)) == 2, "the DLQ must not be flooded"


async def test_dlq_record_is_not_seen_and_is_accepted_when_redriven(test_env, worker_factory):
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    raw, out_topic, dlq_topic = f"{p}.sales.orders.raw.v1", f"{p}.sales.orders.valid.v1", f"{p}.sales.orders.raw.v1.dlq"
    worker_factory()
    await produce(bootstrap, raw, [order("R", s) for s in (1, 3, 2)], PARTITIONS)
    dlq = await read_topic(bootstrap, dlq_topic, min_count=1)
    assert [(seqs(dlq), d.header(H.REASON)) for d in dlq] == [([2], "ordering-late")]

    report = await asyncio.to_thread(redrive_dlq, test_env.settings(), dlq_topic, DlqFilter(),
                                     mode=RedriveMode.EXECUTE)
    assert report is not None
    out = await read_topic(bootstrap, out_topic, min_count=3)
    assert seqs(out) == [1, 3, 2], "the redriven late record is accepted once, after its successors"
    await produce(bootstrap, raw, [order("R", 2), order("R", 4)], PARTITIONS)  # 2 is now seen; 4 in order
    out = await read_topic(bootstrap, out_topic, min_count=4)
    assert seqs(out) == [1, 3, 2, 4]


async def test_window_replay_reemits_tagged_records_without_moving_the_tracker_back(test_env, worker_factory):
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    raw, out_topic = f"{p}.sales.orders.raw.v1", f"{p}.sales.orders.valid.v1"
    worker = worker_factory()
    base = int(time.time() * 1000) - 60_000
    history = [{**order("W", s), "timestamp_ms": base + s * 1000} for s in (1, 2, 3)]
    await produce(bootstrap, raw, history, PARTITIONS)
    assert seqs(await read_topic(bootstrap, out_topic, min_count=3)) == [1, 2, 3]

    def iso(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"

    plan = await plan_window(test_env.settings(), raw, iso(base + 1000), iso(base + 3000), replay_id="replay-1")
    await replay_window(test_env.settings(), plan)  # seq 1 and 2 ([start, end) excludes seq 3)
    out = await read_topic(bootstrap, out_topic, min_count=5)
    assert seqs(out) == [1, 2, 3, 1, 2]
    assert [o.header("streamlake.replay.id") for o in out[3:]] == ["replay-1", "replay-1"]
    await produce(bootstrap, raw, [order("W", 4), order("W", 3)], PARTITIONS)
    out = await read_topic(bootstrap, out_topic, min_count=6)
    assert seqs(out)[5:] == [4], "4 is still in order and 3 still a duplicate: the tracker did not move back"
    c = wait_for(lambda: (c := counters(worker))["records_in"] >= 7 and c, timeout=30, what="7 records counted")
    assert c["replayed"] == 2 and c["forwarded"] == 6
    assert set(c["dropped_by_class"]) == {"duplicate"}
