"""``streamlake produce`` end to end: good lines forwarded, bad lines in the rejects file, re-runs deduplicated."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import orjson

from streamlake.catalog import load_catalog
from streamlake.kafka.admin import apply_catalog
from streamlake.producer import find_stream
from tests.kafka_fixtures import ROOT, read_topic, wait_for


def produce_cli(test_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamlake", "produce", "--stream", "sales.orders", *args],
                          cwd=ROOT, env=test_env.environ(), capture_output=True, text=True, timeout=180)


def counters(worker) -> dict:
    url = f"http://127.0.0.1:{worker.web_port}/streamlake/counters"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["sales.orders"]


async def test_file_load_forwards_good_lines_rejects_bad_ones_and_a_rerun_lands_nothing_twice(test_env, worker_factory):
    worker = worker_factory()  # creates the catalog's topics
    good = [{"order_id": f"o{i % 7}", "seq": i // 7 + 1, "amount": i} for i in range(60)]
    lines = [orjson.dumps(doc).decode() for doc in good]
    bad = {3: '{"order_id": "o1", "seq": "two"}', 10: "not json", 20: "", 40: '{"seq": 5}'}
    for number in sorted(bad):  # 1-based line numbers in the final file
        lines.insert(number - 1, bad[number])
    path = test_env.tmp / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n")

    first = produce_cli(test_env, str(path), "--json")
    assert first.returncode == 1, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["lines"], summary["delivered"], summary["rejected"]) == (64, 60, 4)
    rejects = [json.loads(line) for line in (test_env.tmp / "orders.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["stage"], r["reason"]) for r in rejects] == [
        (3, "sequence", "invalid-sequence"), (10, "decode", "invalid-json"),
        (20, "decode", "empty-value"), (40, "key", "missing-key")]
    assert rejects[0]["input"] == bad[3]

    second = produce_cli(test_env, str(path), "--json", "--allow-rejects")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["delivered"] == 60

    out = await read_topic(test_env.broker.bootstrap, f"{test_env.prefix}.sales.orders.valid.v1", min_count=60)
    assert sorted(orjson.loads(o.value)["amount"] for o in out) == list(range(60))  # each good line once
    c = wait_for(lambda: (c := counters(worker))["records_in"] >= 120 and c, timeout=60, what="120 records counted")
    assert c["forwarded"] == 60 and c["dropped_duplicates"] >= 60 and c["dlq"] == 0


async def test_csv_is_typed_by_the_declaration_and_bad_arguments_say_what_to_fix(test_env):
    settings = test_env.settings()
    await apply_catalog(settings, load_catalog(settings, [find_stream(settings, "sales.orders")]))
    path = test_env.tmp / "orders.csv"
    path.write_text("order_id,seq,amount\nc1,1,10\nc1,2,11\nc2,oops,3\n")
    result = produce_cli(test_env, str(path), "--json", "--rejects", str(test_env.tmp / "bad.jsonl"))
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert (summary["delivered"], summary["rejected_by_reason"]) == (2, {"invalid-sequence": 1})
    assert json.loads((test_env.tmp / "bad.jsonl").read_text())["line"] == 4

    unknown = produce_cli(test_env, str(test_env.tmp / "orders.txt"))
    assert unknown.returncode == 1 and "--format" in unknown.stderr
    stdin = produce_cli(test_env, "-")
    assert stdin.returncode == 2 and "--format" in stdin.stderr
