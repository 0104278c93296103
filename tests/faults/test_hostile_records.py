"""Hostile records: a corpus of bad and strange input through the real pipeline (one worker).

Each entry says what the README's rules make of it: forwarded unchanged, or
dead-lettered with a given reason (and the README's stage for that reason).
After the corpus, one valid record per partition must still be forwarded, and
the worker must still be alive.
"""

from __future__ import annotations

import asyncio
import collections
import json
import unicodedata
import urllib.request
from dataclasses import dataclass

import orjson

from streamlake.core.dlq import H
from streamlake.partitioner import partition_for_key
from tests.faults.support import PARTITIONS, read_until, topics
from tests.kafka_fixtures import produce, wait_for

FORWARD = "forward"

#: The README's "DLQ reasons" table: reason -> stage.
README_STAGE = {
    "empty-value": "decode", "invalid-utf8": "decode", "invalid-json": "decode", "not-an-object": "decode",
    "missing-field": "validate", "wrong-type": "validate",
    "missing-key": "key", "key-wrong-type": "key", "missing-record-key": "key", "key-mismatch": "key",
    "wrong-partition": "key",
    "missing-sequence": "sequence", "invalid-sequence": "sequence", "sequence-out-of-range": "sequence",
    "ordering-late": "sequence", "ordering-gap": "sequence", "ordering-duplicate": "sequence",
    "ordering-in-order": "sequence",
    "transform-error": "process", "transform-retryable": "process", "transform-bad-output": "process",
    "produce-failed": "produce",
}

MAX_MESSAGE_BYTES = 1_048_588  # the local broker's message.max.bytes


@dataclass(frozen=True)
class Case:
    name: str
    key: bytes | None
    value: bytes | None
    expected: str  # FORWARD or a DLQ reason
    headers: tuple = ()
    partition: int | None = None  # None: the Java default partitioner's choice for the key


def obj(key: str, seq, **extra) -> bytes:
    return orjson.dumps({"order_id": key, "seq": seq, **extra})


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def sized(key: str, total: int, valid: bool) -> bytes:
    """A JSON object (or, when not *valid*, a truncated one) of exactly *total* bytes."""
    head = b'{"order_id":"%s","seq":1,"pad":"' % key.encode()
    tail = b'"}' if valid else b'"'
    return head + b"x" * (total - len(head) - len(tail)) + tail


def wrong_partition(key: bytes) -> int:
    return (partition_for_key(key, PARTITIONS) + 3) % PARTITIONS


NFC = unicodedata.normalize("NFC", "café-é")
NFD = unicodedata.normalize("NFD", "café-é")
ODD_HEADERS = (
    ("bin", bytes(range(256))), ("dup", b"first"), ("dup", b"second"), ("", b"empty name"),
    ("latin1", "café".encode("latin-1")), ("nul", b"\x00\x00"), ("ключ-日本", "значение".encode()),
    ("no-value", None), ("empty-value", b""),
)
SPOOFED = (("streamlake.dlq.reason", b"not-an-object"), ("streamlake.dlq.stage", b"process"),
           ("streamlake.dlq.origin.offset", b"-1"))
LONG_KEY = "L" * 10_000
UNICODE_KEY = "заказ-ü-日本-🎉"

CORPUS: list[Case] = [
    # -- decode: empty
    Case("tombstone (null value)", b"h-tomb", None, "empty-value"),
    Case("empty value", b"h-empty", b"", "empty-value"),
    # -- decode: not UTF-8
    Case("lone continuation byte", b"h-u1", b'{"order_id":"h-u1","seq":1,"note":"\x80"}', "invalid-utf8"),
    Case("overlong encoding of '/'", b"h-u2", b'{"order_id":"h-u2","seq":1,"note":"\xc0\xaf"}', "invalid-utf8"),
    Case("UTF-8-encoded surrogate U+D800", b"h-u3", b'{"order_id":"h-u3","seq":1,"note":"\xed\xa0\x80"}',
         "invalid-utf8"),
    Case("truncated multi-byte sequence at the end", b"h-u4", b'{"order_id":"h-u4","seq":1,"note":"\xe2\x82',
         "invalid-utf8"),
    Case("code point above U+10FFFF (F4 90 ..)", b"h-u5", b'{"order_id":"h-u5","seq":1,"note":"\xf4\x90\x80\x80"}',
         "invalid-utf8"),
    Case("Latin-1 text", b"h-u6", '{"order_id":"h-u6","seq":1,"note":"café"}'.encode("latin-1"), "invalid-utf8"),
    Case("UTF-16 with BOM", b"h-u7", '{"order_id":"h-u7","seq":1}'.encode("utf-16"), "invalid-utf8"),
    # -- decode: UTF-8 but not JSON
    Case("UTF-16-LE without BOM (NULs are valid UTF-8)", b"h-j1", '{"order_id":"h-j1","seq":1}'.encode("utf-16-le"),
         "invalid-json"),
    Case("UTF-8 BOM prefix", b"h-j2", b'\xef\xbb\xbf{"order_id":"h-j2","seq":1}', "invalid-json"),
    Case("truncated JSON", b"h-j3", b'{"order_id":"h-j3","seq":1', "invalid-json"),
    Case("trailing garbage", b"h-j4", b'{"order_id":"h-j4","seq":1} trailing', "invalid-json"),
    Case("two concatenated objects", b"h-j5", b'{"order_id":"h-j5","seq":1}{"order_id":"h-j5","seq":2}',
         "invalid-json"),
    Case("whitespace only", b"h-j6", b" \t\r\n ", "invalid-json"),
    Case("a single NUL byte", b"h-j7", b"\x00", "invalid-json"),
    Case("NaN literal", b"h-j8", b'{"order_id":"h-j8","seq":NaN}', "invalid-json"),
    Case("Infinity literal", b"h-j9", b'{"order_id":"h-j9","seq":Infinity}', "invalid-json"),
    Case("-Infinity literal", b"h-j10", b'{"order_id":"h-j10","seq":1,"x":-Infinity}', "invalid-json"),
    Case("number overflowing a double (1e400)", b"h-j11", b'{"order_id":"h-j11","seq":1e400}', "invalid-json"),
    Case("single-quoted strings", b"h-j12", b"{'order_id':'h-j12','seq':1}", "invalid-json"),
    Case("a // comment", b"h-j13", b'{"order_id":"h-j13","seq":1} // c', "invalid-json"),
    Case("lone surrogate escape in the key field", b"h-j14", b'{"order_id":"h-j14\\ud800","seq":1}',
         "invalid-json"),
    Case("control character inside a string", b"h-j15", b'{"order_id":"h-j15","seq":1,"x":"a\x01b"}',
         "invalid-json"),
    Case("5000 nested objects", b"h-j16", nested(5000), "invalid-json"),
    Case("5000 nested arrays in a field", b"h-j17", b'{"order_id":"h-j17","seq":1,"x":' + b"[" * 5000 + b"]" * 5000
         + b"}", "invalid-json"),
    Case("truncated JSON of 1,048,400 bytes (its DLQ copy is over the broker default)", b"h-big-bad",
         sized("h-big-bad", 1_048_400, valid=False),
         "invalid-json"),
    # -- decode: JSON but not an object
    Case("JSON number", b"h-s1", b"42", "not-an-object"),
    Case("JSON string", b"h-s2", b'"{\\"order_id\\":\\"h-s2\\",\\"seq\\":1}"', "not-an-object"),
    Case("JSON true", b"h-s3", b"true", "not-an-object"),
    Case("JSON null", b"h-s4", b"null", "not-an-object"),
    Case("JSON array of a valid object", b"h-s5", b'[{"order_id":"h-s5","seq":1}]', "not-an-object"),
    Case("empty JSON array", b"h-s6", b"[]", "not-an-object"),
    # -- key
    Case("key field absent", b"h-k1", b'{"seq":1}', "missing-key"),
    Case("key field null", b"h-k2", b'{"order_id":null,"seq":1}', "missing-key"),
    Case("key field empty string", b"h-k3", b'{"order_id":"","seq":1}', "missing-key"),
    Case("key field a number", b"42", b'{"order_id":42,"seq":1}', "key-wrong-type"),
    Case("key field 0 (falsy number)", b"0", b'{"order_id":0,"seq":1}', "key-wrong-type"),
    Case("key field a boolean", b"true", b'{"order_id":true,"seq":1}', "key-wrong-type"),
    Case("key field false", b"false", b'{"order_id":false,"seq":1}', "key-wrong-type"),
    Case("key field an object", b"h-k6", b'{"order_id":{"id":"h-k6"},"seq":1}', "key-wrong-type"),
    Case("key field an array", b"h-k7", b'{"order_id":["h-k7"],"seq":1}', "key-wrong-type"),
    Case("null record key", None, obj("h-k8", 1), "missing-record-key", partition=0),
    Case("empty record key", b"", obj("h-k9", 1), "missing-record-key", partition=0),
    Case("record key differs", b"other", obj("h-k10", 1), "key-mismatch"),
    Case("record key differs in case", b"H-K11", obj("h-k11", 1), "key-mismatch"),
    Case("record key NFD, key field NFC", NFD.encode(), obj(NFC, 1), "key-mismatch"),
    Case("record key with a trailing space", b"h-k13 ", obj("h-k13", 1), "key-mismatch"),
    Case("duplicate key field, the last differs from the record key", b"h-k14",
         b'{"order_id":"h-k14","order_id":"other","seq":1}', "key-mismatch"),
    # partitioning=repartition (sales.orders' default): moved to its key's partition and forwarded
    Case("keyed right but on another partition", b"h-k15", obj("h-k15", 1), FORWARD,
         partition=wrong_partition(b"h-k15")),
    # -- sequence
    Case("sequence absent", b"h-q1", b'{"order_id":"h-q1"}', "missing-sequence"),
    Case("sequence null", b"h-q2", b'{"order_id":"h-q2","seq":null}', "missing-sequence"),
    Case("sequence a numeric string", b"h-q3", b'{"order_id":"h-q3","seq":"1"}', "invalid-sequence"),
    Case("sequence a hex string", b"h-q4", b'{"order_id":"h-q4","seq":"0x10"}', "invalid-sequence"),
    Case("sequence 1.5", b"h-q5", b'{"order_id":"h-q5","seq":1.5}', "invalid-sequence"),
    Case("sequence 1.0 (a float)", b"h-q6", b'{"order_id":"h-q6","seq":1.0}', "invalid-sequence"),
    Case("sequence 1e3 (scientific notation is a float)", b"h-q7", b'{"order_id":"h-q7","seq":1e3}',
         "invalid-sequence"),
    Case("sequence -0.0", b"h-q8", b'{"order_id":"h-q8","seq":-0.0}', "invalid-sequence"),
    Case("sequence true", b"h-q9", b'{"order_id":"h-q9","seq":true}', "invalid-sequence"),
    Case("sequence false", b"h-q10", b'{"order_id":"h-q10","seq":false}', "invalid-sequence"),
    Case("sequence an object", b"h-q11", b'{"order_id":"h-q11","seq":{"n":1}}', "invalid-sequence"),
    Case("sequence an array", b"h-q12", b'{"order_id":"h-q12","seq":[1]}', "invalid-sequence"),
    Case("duplicate sequence field, the last a string", b"h-q13", b'{"order_id":"h-q13","seq":1,"seq":"x"}',
         "invalid-sequence"),
    Case("sequence -1", b"h-q14", b'{"order_id":"h-q14","seq":-1}', "sequence-out-of-range"),
    Case("sequence 2^63", b"h-q15", b'{"order_id":"h-q15","seq":9223372036854775808}', "sequence-out-of-range"),
    Case("sequence 2^64-1", b"h-q16", b'{"order_id":"h-q16","seq":18446744073709551615}', "sequence-out-of-range"),
    Case("sequence 2^64 (parsed as a double)", b"h-q17", b'{"order_id":"h-q17","seq":18446744073709551616}',
         "sequence-out-of-range"),
    Case("sequence -2^63-1", b"h-q18", b'{"order_id":"h-q18","seq":-9223372036854775809}', "sequence-out-of-range"),
    Case("spoofed streamlake.dlq.* headers on a bad record", b"h-q19", b'{"order_id":"h-q19","seq":"x"}',
         "invalid-sequence", headers=SPOOFED),
    # -- strange but valid: forwarded unchanged
    Case("sequence 2^63-1 (the largest valid)", b"h-v1", b'{"order_id":"h-v1","seq":9223372036854775807}', FORWARD),
    Case("sequence 0", b"h-v2", obj("h-v2", 0), FORWARD),
    Case("duplicate sequence field, the last valid", b"h-v3", b'{"order_id":"h-v3","seq":"x","seq":7}', FORWARD),
    Case("duplicate key field, the last equals the record key", b"h-v4",
         b'{"order_id":"other","order_id":"h-v4","seq":1}', FORWARD),
    Case("non-ASCII key", UNICODE_KEY.encode(), obj(UNICODE_KEY, 1), FORWARD),
    Case("10,000-character key", LONG_KEY.encode(), obj(LONG_KEY, 1), FORWARD),
    Case("key of one space", b" ", obj(" ", 1), FORWARD),
    Case("key with an escaped NUL", b"h\x00v8", b'{"order_id":"h\\u0000v8","seq":1}', FORWARD),
    Case("key written with a unicode escape", b"h-vA", b'{"order_id":"h-v\\u0041","seq":1}', FORWARD),
    Case("numeric-string key", b"123", obj("123", 1), FORWARD),
    Case("unknown fields and nested objects", b"h-v11",
         orjson.dumps({"order_id": "h-v11", "seq": 3, "customer": {"id": 7, "tags": ["a", None, 1.5e-300]},
                       "lines": [{"sku": "x", "qty": 2}], "note": "tab\t quote\" nul\u0000 emoji 🎉"}), FORWARD),
    Case("200 nested objects in a field", b"h-v12", b'{"order_id":"h-v12","seq":1,"x":' + nested(200) + b"}",
         FORWARD),
    Case("whitespace around the object", b"h-v13", b' \n\t{"order_id":"h-v13","seq":1}\r\n ', FORWARD),
    Case("odd headers (binary, duplicate, empty name, non-UTF-8, null)", b"h-v14", obj("h-v14", 1), FORWARD,
         headers=ODD_HEADERS),
    Case("spoofed streamlake.dlq.* headers on a valid record", b"h-v15", obj("h-v15", 1), FORWARD,
         headers=SPOOFED),
    Case("500 headers", b"h-v16", obj("h-v16", 1), FORWARD, headers=tuple((f"h{i}", b"v") for i in range(500))),
    Case("a valid value of 1,000,000 bytes", b"h-big-ok", sized("h-big-ok", 1_000_000, valid=True), FORWARD),
    # a DLQ'd record never counts as seen: the key's next valid record sets its baseline
    Case("bad record of a key ...", b"h-v18", b'{"order_id":"h-v18","seq":"5"}', "invalid-sequence"),
    Case("... then that key's first valid record", b"h-v18", obj("h-v18", 5), FORWARD),
]


def sentinel_keys() -> list[bytes]:
    """One key per partition (the Java default partitioner's choice)."""
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < PARTITIONS:
        key = f"sentinel-{i}".encode()
        keys.setdefault(partition_for_key(key, PARTITIONS), key)
        i += 1
    return [keys[p] for p in range(PARTITIONS)]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_corpus_at_least_30_kinds():
    assert len({c.name for c in CORPUS}) == len(CORPUS) >= 30
    assert len({c.expected for c in CORPUS}) >= 12
    assert all(c.expected == FORWARD or c.expected in README_STAGE for c in CORPUS)
    assert all(c.value is None or len(c.value) < MAX_MESSAGE_BYTES - 150 for c in CORPUS)  # record overhead


def test_hostile_records_land_where_the_rules_say(test_env, worker_factory):
    worker = worker_factory("hostile")
    bootstrap = test_env.broker.bootstrap
    source, output, dlq_topic = topics(test_env)
    sentinels = [{"key": k, "value": obj(k.decode(), 1), "partition": p} for p, k in enumerate(sentinel_keys())]
    records = [{"key": c.key, "value": c.value, "headers": c.headers,
                "partition": c.partition if c.partition is not None else partition_for_key(c.key, PARTITIONS)}
               for c in CORPUS] + sentinels
    coords = asyncio.run(produce(bootstrap, source, records))
    case_at = dict(zip(coords, CORPUS))

    want_forward = [c for c in CORPUS if c.expected == FORWARD]
    want_dlq = {xy: c for xy, c in case_at.items() if c.expected != FORWARD}
    want_values = {c.value for c in want_forward} | {s["value"] for s in sentinels}
    out = asyncio.run(read_until(bootstrap, output, lambda o: want_values <= {r.value for r in o}, timeout=90))
    dlq = asyncio.run(read_until(bootstrap, dlq_topic, lambda d: len(d) >= len(want_dlq), timeout=60))

    assert worker.proc.poll() is None, "the worker must survive every hostile input"
    problems: list[str] = []

    # Forwarded: each valid case exactly once, bytes and headers unchanged, on its key's partition.
    by_value = collections.defaultdict(list)
    for o in out:
        by_value[o.value].append(o)
    for case in want_forward:
        copies = by_value.get(case.value, [])
        if len(copies) != 1:
            problems.append(f"{case.name}: forwarded {len(copies)} times, expected once")
            continue
        o = copies[0]
        if o.key != case.key or o.partition != partition_for_key(case.key, PARTITIONS):
            problems.append(f"{case.name}: forwarded with key {o.key[:40]!r} to partition {o.partition}")
        if list(o.headers) != [tuple(h) for h in case.headers]:
            problems.append(f"{case.name}: headers changed on the way: {o.headers[:5]}")
    unexpected = [o for o in out if o.value not in want_values]
    problems += [f"unexpected output record {o.key!r}: {(o.value or b'')[:80]!r}" for o in unexpected]
    problems += [f"sentinel on partition {s['partition']} not forwarded once" for s in sentinels
                 if len(by_value.get(s["value"], [])) != 1]

    # Dead-lettered: right reason, the README's stage, bytes and headers kept.
    dead_at = collections.defaultdict(list)
    for d in dlq:
        dead_at[(int(d.header(H.ORIGIN_PARTITION)), int(d.header(H.ORIGIN_OFFSET)))].append(d)
    for xy, case in want_dlq.items():
        copies = dead_at.get(xy, [])
        if len(copies) != 1:
            problems.append(f"{case.name}: {len(copies)} DLQ records, expected 1")
            continue
        d = copies[0]
        reasons = [v for k, v in d.headers if k == H.REASON]
        if reasons != [case.expected.encode()]:
            problems.append(f"{case.name}: DLQ reason(s) {reasons}, expected {case.expected!r}")
        if d.header(H.STAGE) != README_STAGE[case.expected]:
            problems.append(f"{case.name}: stage {d.header(H.STAGE)!r}, README says {README_STAGE[case.expected]!r}")
        if d.key != case.key or d.value != case.value:
            problems.append(f"{case.name}: DLQ key/value differ from the original")
        if d.header(H.ORIGIN_TOPIC) != source or d.header(H.GROUP) != test_env.app_id:
            problems.append(f"{case.name}: wrong origin topic or group")
        kept = [h for h in d.headers if not h[0].startswith("streamlake.dlq.")]
        if kept != [tuple(h) for h in case.headers if not h[0].startswith("streamlake.dlq.")]:
            problems.append(f"{case.name}: original headers not kept: {kept[:5]}")
    extra_dlq = [xy for xy in dead_at if xy not in want_dlq]
    problems += [f"unexpected DLQ record from {xy}: {case_at.get(xy, '(a sentinel)')}" for xy in extra_dlq]

    # The worker's own counters agree.
    url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    counters = wait_for(lambda: (c := get_json(url)["sales.orders"])["records_in"] >= len(records) and c,
                        timeout=30, what="the worker's counters to include every record")

    forwarded = len(want_forward) + len(sentinels)
    print(f"\n[hostile] {len(CORPUS)} corpus records + {len(sentinels)} sentinels = {len(records)} in: "
          f"forwarded {sum(len(by_value.get(v, [])) for v in want_values)} (expected {forwarded}), dropped 0, "
          f"DLQ {len(dlq)} (expected {len(want_dlq)}), lost "
          f"{sum(1 for xy in want_dlq if not dead_at.get(xy)) + sum(1 for v in want_values if not by_value.get(v))}, "
          f"duplicates forwarded {sum(max(len(v) - 1, 0) for v in by_value.values())}; "
          f"worker counters: in {counters['records_in']}, forwarded {counters['forwarded']}, "
          f"dropped {counters['dropped']}, dlq {counters['dlq']}", flush=True)
    assert not problems, "\n".join(problems)
    assert (counters["records_in"], counters["forwarded"], counters["dropped"], counters["dlq"]) == (
        len(records), forwarded, 0, len(want_dlq))
    assert worker.proc.poll() is None
