"""A crash between the repartition write and the offset commit: nothing lost, re-written copies dropped.

The first worker never commits (commit interval an hour away): it reads every
record, writes the misplaced ones to the repartition topic, forwards
everything, and is then SIGKILLed. Its successor reads it all again, as
at_least_once allows: the source's misplaced records are written to the
repartition topic a second time, and those second copies are dropped as
duplicates of the first (counted), so no record is forwarded a third time.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

import orjson

from streamlake.partitioner import partition_for_key
from tests.integration.real_clients import confluent_produce
from tests.kafka_fixtures import read_topic, wait_for

PARTITIONS = 8


def counters(worker) -> dict:
    url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["sales.orders"]


async def test_crash_after_repartition_writes_before_commit_loses_nothing(test_env, worker_factory):
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    source, output = f"{p}.sales.orders.raw.v1", f"{p}.sales.orders.valid.v1"
    first = worker_factory("before", STREAMLAKE_COMMIT_INTERVAL="3600")
    pairs = [(f"cr-{k}".encode(), orjson.dumps({"order_id": f"cr-{k}", "seq": s})) for s in range(1, 11)
             for k in range(40)]
    confluent_produce(bootstrap, source, pairs)
    raw = await read_topic(bootstrap, source, min_count=len(pairs))
    moved = sum(o.partition != partition_for_key(o.key, PARTITIONS) for o in raw)
    assert moved > 0
    await read_topic(bootstrap, output, min_count=len(pairs))
    assert len(await read_topic(bootstrap, f"{source}.repartition", min_count=moved)) == moved
    first.kill()

    second = worker_factory("after")
    c = wait_for(lambda: (c := counters(second))["records_in"] >= len(pairs) + moved and c, timeout=120,
                 what="the successor to read everything again")
    rewritten = await read_topic(bootstrap, f"{source}.repartition", min_count=2 * moved)
    out = await read_topic(bootstrap, output, min_count=2 * len(pairs))
    copies = Counter((o.key, orjson.loads(o.value)["seq"]) for o in out)
    assert set(copies) == {(k, orjson.loads(v)["seq"]) for k, v in pairs}  # nothing lost
    assert len(rewritten) == 2 * moved  # each misplaced record written again once
    # Uncommitted work is done again (at_least_once), once: never a third copy.
    assert set(copies.values()) == {2}
    assert c["repartitioned"] == moved and c["dropped_by_class"].get("duplicate", 0) == moved
    assert c["forwarded"] == len(pairs) and c["dlq"] == 0
