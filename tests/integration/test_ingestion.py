"""The sales.orders stream end to end on the real broker: a scripted mix of
ordering cases and malformed records, checked record by record."""

from __future__ import annotations

import json
import urllib.request

import orjson
import pytest

from streamlake.core.dlq import H
from streamlake.partitioner import partition_for_key
from tests.kafka_fixtures import produce, read_topic, wait_for

PARTITIONS = 8


def order(key: str, seq, **extra) -> dict:
    return {"key": key.encode(), "value": orjson.dumps({"order_id": key, "seq": seq, **extra})}


def raw(key: bytes | None, value: bytes | None, partition: int | None = None, headers=()) -> dict:
    return {"key": key, "value": value, "partition": partition, "headers": headers}


def wrong_partition(key: str) -> int:
    return (partition_for_key(key.encode(), PARTITIONS) + 1) % PARTITIONS


# (record, expected reason or None when it is valid); ordered per key.
SCRIPT: list[tuple[dict, str | None]] = [
    (order("A", 1), None), (order("A", 2), None), (order("A", 3), None),
    (order("A", 3), "dup"),                      # duplicate: dropped and counted
    (order("A", 6), None),                       # gap: 4 and 5 missing, forwarded
    (order("A", 4), "ordering-late"),            # fills a known gap: late -> DLQ
    (order("A", 7), None),
    (order("B", 10), None), (order("B", 11), None), (order("B", 11), "dup"), (order("B", 12), None),
    (raw(b"C", b"\xff\xfe{}", headers=[("x-trace", b"abc\x00")]), "invalid-utf8"),
    (raw(b"C", b'{"order_id": "C", "seq": 1'), "invalid-json"),
    (raw(b"C", b'{"order_id": "C", "seq": NaN}'), "invalid-json"),
    (raw(b"C", b"[1, 2]"), "not-an-object"),
    (raw(b"C", b'"just a string"'), "not-an-object"),
    (raw(b"C", b""), "empty-value"),
    (raw(b"C", None), "empty-value"),
    (raw(b"C", b'{"seq": 1}'), "missing-key"),
    (raw(b"C", b'{"order_id": "", "seq": 1}'), "missing-key"),
    (raw(b"C", b'{"order_id": 42, "seq": 1}'), "key-wrong-type"),
    (raw(None, b'{"order_id": "C", "seq": 1}', partition=0), "missing-record-key"),
    (raw(b"D", b'{"order_id": "C", "seq": 1}'), "key-mismatch"),
    # on another partition than its key's: moved there (partitioning=repartition) and forwarded
    (raw(b"W", b'{"order_id": "W", "seq": 1}', partition=wrong_partition("W")), None),
    (raw(b"C", b'{"order_id": "C"}'), "missing-sequence"),
    (raw(b"C", b'{"order_id": "C", "seq": "1"}'), "invalid-sequence"),
    (raw(b"C", b'{"order_id": "C", "seq": 1.5}'), "invalid-sequence"),
    (raw(b"C", b'{"order_id": "C", "seq": true}'), "invalid-sequence"),
    (raw(b"C", b'{"order_id": "C", "seq": -1}'), "sequence-out-of-range"),
    (raw(b"C", b'{"order_id": "C", "seq": 9223372036854775808}'), "sequence-out-of-range"),
    (raw(b"C", b'{"order_id": "C", "seq": 18446744073709551616}'), "sequence-out-of-range"),
    (order("C", 1), None),                       # C's first valid record after all that
]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


PATHS = {  # record path -> worker environment
    "fast": {"STREAMLAKE_PROCESSING_GUARANTEE": "at_least_once", "STREAMLAKE_FAST_PATH": "1"},
    "classic": {"STREAMLAKE_PROCESSING_GUARANTEE": "at_least_once", "STREAMLAKE_FAST_PATH": "0"},
    "exactly_once": {"STREAMLAKE_PROCESSING_GUARANTEE": "exactly_once"},
}
STORES = {"memory": {}, "rocksdb": {"STREAMLAKE_STORE": "rocksdb://"}}


@pytest.mark.parametrize("path", list(PATHS))
async def test_scripted_mix_lands_exactly_where_the_rules_say(test_env, worker_factory, path):
    worker = worker_factory(**PATHS[path])
    bootstrap = test_env.broker.bootstrap
    p = test_env.prefix
    records = [rec for rec, _ in SCRIPT]
    for rec in records:
        if rec.get("partition") is None:
            rec["partition"] = partition_for_key(rec["key"], PARTITIONS) if rec["key"] else 0
    for i, rec in enumerate(records):
        rec["timestamp_ms"] = 1_700_000_000_000 + i
    timestamps = [rec["timestamp_ms"] for rec in records]
    coords = await produce(bootstrap, f"{p}.sales.orders.raw.v1", records)

    expected_forward = [(r["key"], r["value"]) for r, why in SCRIPT if why is None]
    expected_dlq = {c: why for c, (_, why) in zip(coords, SCRIPT) if why not in (None, "dup")}
    out = await read_topic(bootstrap, f"{p}.sales.orders.valid.v1", min_count=len(expected_forward))
    dlq = await read_topic(bootstrap, f"{p}.sales.orders.raw.v1.dlq", min_count=len(expected_dlq))

    # Output: exactly the valid records, each once, in per-key order, on the key's partition.
    assert sorted((o.key, o.value) for o in out) == sorted(expected_forward)
    for key in (b"A", b"B", b"C"):
        seqs = [orjson.loads(o.value)["seq"] for o in out if o.key == key]
        assert seqs == [orjson.loads(v)["seq"] for k, v in expected_forward if k == key]
    assert all(o.partition == partition_for_key(o.key, PARTITIONS) for o in out)
    source_ts: dict = {}
    for r, ts in zip(records, timestamps):
        source_ts.setdefault((r["key"], r["value"]), ts)  # a duplicate's first copy is the one forwarded
    assert all(o.timestamp == source_ts[(o.key, o.value)] for o in out), "forwards keep the source timestamp"

    # DLQ: every bad record once, bytes unchanged, full context in headers.
    by_origin = {(int(d.header(H.ORIGIN_PARTITION)), int(d.header(H.ORIGIN_OFFSET))): d for d in dlq}
    assert len(dlq) == len(by_origin) == len(expected_dlq)
    for (part, off), reason in expected_dlq.items():
        d = by_origin[(part, off)]
        src = records[coords.index((part, off))]
        assert d.header(H.REASON) == reason
        assert d.key == src["key"] and (d.value or b"") == (src["value"] or b"")
        assert d.header(H.ORIGIN_TOPIC) == f"{p}.sales.orders.raw.v1"
        assert d.header(H.GROUP) == test_env.app_id
        assert d.header(H.ATTEMPT) == "1"
        assert d.header(H.WORKER) and d.header(H.FIRST_FAILED_AT).isdigit()
        assert d.header(H.ORIGIN_TIMESTAMP).isdigit()
        assert d.header(H.STAGE) in {"decode", "validate", "key", "sequence", "process", "produce"}
    stages = {d.header(H.REASON): d.header(H.STAGE) for d in dlq}
    assert stages["invalid-utf8"] == "decode" and stages["missing-record-key"] == "key"
    assert stages["ordering-late"] == "sequence" and stages["invalid-sequence"] == "sequence"
    # original headers survive byte for byte, ahead of the context
    utf8 = next(d for d in dlq if d.header(H.REASON) == "invalid-utf8")
    assert utf8.headers[0] == ("x-trace", b"abc\x00")
    trace = next(d for d in dlq if d.header(H.REASON) == "invalid-json")
    assert trace.header(H.EXC_MESSAGE)

    # Accounting: in = forwarded + dropped duplicates + DLQ, read from the worker. Should a
    # rebalance on a loaded machine make it read records again, those are dropped again
    # (duplicate / already-in-dlq): forwards and DLQ records stay exact.
    url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    counters = wait_for(lambda: (c := get_json(url)["sales.orders"])["records_in"] >= len(SCRIPT) and c,
                        timeout=30, what="counters to include every record")
    assert counters["forwarded"] == len(expected_forward)
    assert counters["dlq"] == len(expected_dlq)
    assert counters["dropped_duplicates"] >= 2
    assert set(counters["dropped_by_class"]) <= {"duplicate", "already-in-dlq"}
    assert counters["records_in"] == counters["forwarded"] + counters["dropped"] + counters["dlq"]
    assert counters["gaps_opened"] == 1
    assert worker.proc.poll() is None, "the worker must survive every malformed input"


@pytest.mark.parametrize("path,store", [(p, "memory") for p in PATHS] + [("fast", "rocksdb")])
async def test_restart_recovers_sequence_state_from_the_changelog(test_env, worker_factory, path, store):
    bootstrap = test_env.broker.bootstrap
    raw_topic = f"{test_env.prefix}.sales.orders.raw.v1"
    # RocksDB restarts in the same data dir, so it resumes from its persisted changelog offsets.
    names = ("w", "w") if store == "rocksdb" else ("before", "after")
    first = worker_factory(names[0], **PATHS[path], **STORES[store])
    await produce(bootstrap, raw_topic, [order("K", s) for s in (1, 2, 4)], PARTITIONS)  # gap at 3
    await read_topic(bootstrap, f"{test_env.prefix}.sales.orders.valid.v1", min_count=3)
    first.stop()
    assert first.proc.returncode is not None

    second = worker_factory(names[1], **PATHS[path], **STORES[store])
    # 2 again: a duplicate only if state survived (lost state would make it a new baseline).
    # 3: late only if the recorded gap survived. 5: in order only if next=5 survived.
    await produce(bootstrap, raw_topic, [order("K", s) for s in (2, 3, 5)], PARTITIONS)
    dlq = await read_topic(bootstrap, f"{test_env.prefix}.sales.orders.raw.v1.dlq", min_count=1)
    out = await read_topic(bootstrap, f"{test_env.prefix}.sales.orders.valid.v1", min_count=4)
    assert [orjson.loads(o.value)["seq"] for o in out] == [1, 2, 4, 5]
    assert [(orjson.loads(d.value)["seq"], d.header(H.REASON)) for d in dlq] == [(3, "ordering-late")]
    url = f"http://127.0.0.1:{second.web_port}/streamlake/counters"
    counters = wait_for(lambda: (c := get_json(url)["sales.orders"])["records_in"] >= 3 and c, timeout=30,
                        what="the new worker to count 3 records")
    assert (counters["forwarded"], counters["dlq"]) == (1, 1)
    assert set(counters["classes"]) == {"duplicate", "late", "in_order"}  # (counts grow only if re-read)
    assert counters["gaps_opened"] == 0
