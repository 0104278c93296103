"""Streams that accept records from any Kafka client: the ``repartition`` policy, ``strict``, and redrive.

librdkafka clients (confluent-kafka, kcat) put most keys on another partition
than Java's murmur2; Kafka's console producer agrees with it. Under
``repartition`` every valid record is forwarded in per-key order and nothing
reaches the DLQ; under ``strict`` the misplaced ones are dead-lettered as
``wrong-partition`` and a redrive lands them on their key's partition.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from pathlib import Path

import orjson

from streamlake.catalog import load_catalog
from streamlake.core.dlq import H
from streamlake.core.dlq_policy import DlqFilter
from streamlake.kafka.admin import apply_catalog
from streamlake.kafka.group_status import read_group_status
from streamlake.kafka.redrive import RedriveMode
from streamlake.partitioner import partition_for_key
from streamlake.producer import find_stream
from tests.dlq_sync import redrive_dlq
from tests.integration.real_clients import confluent_produce, console_produce, kcat_produce
from tests.kafka_fixtures import ROOT, read_topic, wait_for

PARTITIONS = 8


def orders(prefix: str, keys: int, per_key: int, start: int = 1) -> list[tuple[bytes, bytes]]:
    """Interleaved keys, each with seq start, start+1, ... in order."""
    return [(f"{prefix}{k}".encode(), orjson.dumps({"order_id": f"{prefix}{k}", "seq": s}))
            for s in range(start, start + per_key) for k in range(keys)]


def counters(worker) -> dict:
    url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["sales.orders"]


def seqs_by_key(records) -> dict[bytes, list[int]]:
    by_key: dict[bytes, list[int]] = {}
    for o in sorted(records, key=lambda o: (o.partition, o.offset)):
        by_key.setdefault(o.key, []).append(orjson.loads(o.value)["seq"])
    return by_key


async def test_real_clients_are_forwarded_in_per_key_order_with_nothing_in_the_dlq(test_env, worker_factory):
    worker = worker_factory()
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    source = f"{p}.sales.orders.raw.v1"
    batches = {"ck": orders("ck-", 40, 10), "kc": orders("kc-", 20, 10), "jv": orders("jv-", 20, 10)}
    confluent_produce(bootstrap, source, batches["ck"])  # default settings: consistent_random
    kcat_produce(bootstrap, source, batches["kc"])
    console_produce(bootstrap, source, batches["jv"])
    total = sum(len(b) for b in batches.values())

    out = await read_topic(bootstrap, f"{p}.sales.orders.valid.v1", min_count=total, timeout=120)
    got = seqs_by_key(out)
    for pairs in batches.values():
        for key in {k for k, _ in pairs}:
            assert got[key] == list(range(1, 11)), key  # each once, in per-key order
    assert all(o.partition == partition_for_key(o.key, PARTITIONS) for o in out)
    assert await read_topic(bootstrap, f"{p}.sales.orders.raw.v1.dlq") == []
    raw = await read_topic(bootstrap, source, min_count=total)
    moved = sum(o.partition != partition_for_key(o.key, PARTITIONS) for o in raw)
    by_client = {name: sum(o.partition != partition_for_key(o.key, PARTITIONS) for o in raw
                           if o.key.startswith(name.encode())) for name in batches}
    assert by_client["jv"] == 0 and by_client["ck"] > 0 and by_client["kc"] > 0
    c = wait_for(lambda: (c := counters(worker))["forwarded"] >= total and c, timeout=60, what="counters")
    assert (c["forwarded"], c["dlq"], c["repartitioned"]) == (total, 0, moved)
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10) as resp:
        assert f'streamlake_records_repartitioned_total{{stream="sales.orders"}} {float(moved)}' in resp.read().decode()
    settings = test_env.settings()
    catalog = load_catalog(settings, [find_stream(settings, "sales.orders")])

    async def status_totals() -> dict:
        return (await read_group_status(settings, catalog, with_totals=True)).streams["sales.orders"]

    deadline = asyncio.get_running_loop().time() + 60
    while (totals := await status_totals())["forwarded"] < total:  # the changelog is written at each commit
        assert asyncio.get_running_loop().time() < deadline, totals
        await asyncio.sleep(0.5)
    assert totals["repartitioned"] == moved


async def test_a_partitioner_switch_mid_stream_shows_as_ordering_classes_not_silent_reordering(
        test_env, worker_factory, record_property):
    # Each key's seq 1-5 go to librdkafka's partition, 6-10 (after the switch) to the key's own.
    # The worker starts afterwards, so 6-10 are read directly while 1-5 take the repartition
    # detour: they arrive behind and are classified (duplicate: dropped and counted; late: DLQ),
    # never forwarded out of order.
    settings = test_env.settings()
    await apply_catalog(settings, load_catalog(settings, [find_stream(settings, "sales.orders")]))
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    source = f"{p}.sales.orders.raw.v1"
    confluent_produce(bootstrap, source, orders("sw-", 30, 5, start=1))
    confluent_produce(bootstrap, source, orders("sw-", 30, 5, start=6), partitioner="murmur2_random")
    worker = worker_factory()
    c = wait_for(lambda: (c := counters(worker))["records_in"] >= 300 and c, timeout=120, what="300 records in")
    out = await read_topic(bootstrap, f"{p}.sales.orders.valid.v1", min_count=c["forwarded"])
    classes = c["classes"]
    record_property("ordering_classes", json.dumps(classes))
    assert c["records_in"] == sum(classes.values()) == 300
    assert c["forwarded"] == len(out) == classes.get("in_order", 0) + classes.get("gap", 0)
    assert c["dropped_by_class"].get("duplicate", 0) == classes.get("duplicate", 0)
    assert c["dlq_by_reason"].get("ordering-late", 0) == classes.get("late", 0)
    for seqs in seqs_by_key(out).values():
        assert seqs == sorted(set(seqs))  # forwarded records of a key only ever move forward
    assert c["repartitioned"] > 0


def strict_home(tmp: Path) -> Path:
    """A project home whose sales.orders stream is declared ``strict``."""
    home = tmp / "strict-home"
    shutil.copytree(ROOT / "conf", home / "conf")
    (home / "topologies").mkdir(parents=True)
    (home / "topologies" / "orders.py").write_text(
        "from streamlake.topology import Partitioning, Stream\n"
        "orders = Stream(domain='sales', dataset='orders', key_field='order_id', sequence_field='seq',\n"
        "                partitioning=Partitioning.STRICT)\n")
    return home


async def test_strict_dead_letters_misplaced_records_and_redrive_lands_them_on_their_keys_partition(
        test_env, worker_factory):
    home = strict_home(test_env.tmp)
    test_env.extra["STREAMLAKE_HOME"] = str(home)
    worker = worker_factory()
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    source, dlq = f"{p}.sales.orders.raw.v1", f"{p}.sales.orders.raw.v1.dlq"
    pairs = orders("st-", 30, 8)
    confluent_produce(bootstrap, source, pairs)
    raw = await read_topic(bootstrap, source, min_count=len(pairs))
    wrong = [o for o in raw if o.partition != partition_for_key(o.key, PARTITIONS)]
    assert wrong
    dead = await read_topic(bootstrap, dlq, min_count=len(wrong))
    assert len(dead) == len(wrong) and {d.header(H.REASON) for d in dead} == {"wrong-partition"}
    assert await read_topic(bootstrap, f"{p}.sales.orders.valid.v1", min_count=len(pairs) - len(wrong))

    settings = test_env.settings(STREAMLAKE_HOME=str(home))
    plan = await asyncio.to_thread(redrive_dlq, settings, dlq, DlqFilter(reason="wrong-partition"),
                                   redrive_id="wp-plan")
    expected = {}
    for d in dead:
        dest = f"{source}[{partition_for_key(d.key, PARTITIONS)}]"
        expected[dest] = expected.get(dest, 0) + 1
    assert plan.by_destination == expected  # the keys' partitions, not the origins
    report = await asyncio.to_thread(redrive_dlq, settings, dlq, DlqFilter(reason="wrong-partition"),
                                     mode=RedriveMode.EXECUTE, redrive_id="wp-fix")
    assert report.sent == len(wrong)

    out = await read_topic(bootstrap, f"{p}.sales.orders.valid.v1", min_count=len(pairs), timeout=120)
    wrong_keys = {o.key for o in wrong}
    got = seqs_by_key(out)
    for key in wrong_keys:  # keys the strict stream dead-lettered entirely: now complete and in order
        if all(o.partition != partition_for_key(key, PARTITIONS) for o in raw if o.key == key):
            assert got[key] == list(range(1, 9)), key
    assert sorted((o.key, orjson.loads(o.value)["seq"]) for o in out) == sorted(
        (k, orjson.loads(v)["seq"]) for k, v in pairs)
    assert len(await read_topic(bootstrap, dlq, min_count=len(wrong))) == len(wrong)  # nothing dead-lettered again
    assert worker.proc.poll() is None
