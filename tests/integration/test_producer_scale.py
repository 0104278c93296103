"""The issue's two headline runs, at full size; opt-in (``STREAMLAKE_PRODUCER_SCALE=1``), CI leaves them out.

* 10,000 valid ``sales.orders`` records over 200 keys from confluent-kafka with its default
  settings: every one forwarded, none ``wrong-partition``.
* ``streamlake produce`` of a 100,000-line JSON Lines file with some bad lines: the good lines
  forwarded, the bad ones in the rejects file with their reasons, exit code 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import orjson
import pytest

from streamlake.partitioner import partition_for_key
from tests.integration.real_clients import confluent_produce
from tests.kafka_fixtures import ROOT, read_topic, wait_for

pytestmark = pytest.mark.skipif(os.environ.get("STREAMLAKE_PRODUCER_SCALE") != "1",
                                reason="full-size producer runs: set STREAMLAKE_PRODUCER_SCALE=1")


def counters(worker) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/streamlake/counters", timeout=10) as resp:
        return json.loads(resp.read())["sales.orders"]


async def test_confluent_kafka_default_settings_10k_records_all_forwarded(test_env, worker_factory):
    worker = worker_factory()
    bootstrap, p = test_env.broker.bootstrap, test_env.prefix
    pairs = [(f"ord-{k}".encode(), orjson.dumps({"order_id": f"ord-{k}", "seq": s, "amount": s * k}))
             for s in range(1, 51) for k in range(200)]
    confluent_produce(bootstrap, f"{p}.sales.orders.raw.v1", pairs)
    raw = await read_topic(bootstrap, f"{p}.sales.orders.raw.v1", min_count=len(pairs))
    misplaced = sum(o.partition != partition_for_key(o.key, 8) for o in raw)
    out = await read_topic(bootstrap, f"{p}.sales.orders.valid.v1", min_count=len(pairs), timeout=300)
    c = wait_for(lambda: (c := counters(worker))["forwarded"] >= len(pairs) and c, timeout=120, what="counters")
    print(f"\n[confluent-kafka defaults] produced {len(pairs)}, on another partition than murmur2's {misplaced}; "
          f"forwarded {c['forwarded']}, repartitioned {c['repartitioned']}, dlq {c['dlq']} {c['dlq_by_reason']}, "
          f"output records {len(out)}")
    assert c["forwarded"] == len(out) == len(pairs)
    assert c["dlq"] == 0 and c["dlq_by_reason"].get("wrong-partition", 0) == 0
    assert c["repartitioned"] == misplaced


async def test_produce_100k_line_file_forwards_good_lines_and_rejects_bad_ones(test_env, worker_factory):
    worker = worker_factory()
    lines, bad = [], 0
    seqs: dict[str, int] = {}
    for i in range(100_000):
        key = f"f-{(i * 7919) % 2000}"
        if i % 997 == 5:
            lines.append(['{"order_id": "x", "seq": "1"}', "not json", '{"seq": 3}', "", "[1]"][bad % 5])
            bad += 1
            continue
        seqs[key] = seqs.get(key, 0) + 1
        lines.append(json.dumps({"order_id": key, "seq": seqs[key], "amount": i}))
    path = test_env.tmp / "orders-100k.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "streamlake", "produce", "--stream", "sales.orders", str(path),
                             "--json"], cwd=ROOT, env=test_env.environ(), capture_output=True, text=True, timeout=900)
    summary = json.loads(result.stdout)
    good = 100_000 - bad
    rejects = [json.loads(x) for x in (test_env.tmp / "orders-100k.jsonl.rejects.jsonl").read_text().splitlines()]
    out = await read_topic(test_env.broker.bootstrap, f"{test_env.prefix}.sales.orders.valid.v1", min_count=good,
                           timeout=600)
    c = wait_for(lambda: (c := counters(worker))["forwarded"] >= good and c, timeout=300, what="counters")
    print(f"\n[produce 100k] exit {result.returncode}; summary {summary}; forwarded {c['forwarded']} "
          f"(output {len(out)}), dlq {c['dlq']}; rejects file: {len(rejects)} lines, reasons "
          f"{sorted({(r['stage'], r['reason']) for r in rejects})}")
    assert result.returncode == 1
    assert (summary["lines"], summary["delivered"], summary["rejected"]) == (100_000, good, bad)
    assert len(rejects) == bad and all(r["line"] and r["stage"] and r["reason"] for r in rejects)
    assert c["forwarded"] == len(out) == good and c["dlq"] == 0
