"""A worker's /metrics, /health and /ready, and `streamlake status`, against the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

from streamlake.core.sample import SampleMix, generate_sample
from streamlake.kafka.group_status import CountersReader
from streamlake.kafka.sample_producer import produce_sample
from tests.kafka_fixtures import ROOT, wait_for

PARTITIONS = 8


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None


def streamlake(test_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from streamlake.app import main; main()", *args],
                          cwd=ROOT, env=test_env.environ(), capture_output=True, text=True, timeout=120)


async def test_metrics_health_ready_and_status_report_what_the_worker_did(test_env, worker_factory):
    worker = worker_factory()
    base = f"http://127.0.0.1:{worker.web_port}"
    settings = test_env.settings()
    source = f"{test_env.prefix}.sales.orders.raw.v1"

    status, _, body = http_get(f"{base}/health")
    assert status == 200 and json.loads(body)["alive"] is True
    ready = wait_for(lambda: (r := http_get(f"{base}/ready"))[0] == 200 and json.loads(r[2]), timeout=60,
                     what="/ready to answer 200")
    assert ready["recovery_completed"] and not ready["rebalancing"]
    assert {f"{source}[{p}]" for p in range(PARTITIONS)} <= set(ready["assigned"])

    # No wrong-partition records: sales.orders repartitions them (they are not malformed there).
    records = list(generate_sample(3000, keys=100, mix=SampleMix(bad=0.05, duplicate=0.02, gap=0.02, late=0.02),
                                   seed=11, key_prefix=test_env.prefix, misroute=False))
    summary = await produce_sample(settings, source, PARTITIONS, records)

    def scraped() -> str | None:
        text = http_get(f"{base}/metrics")[2]
        return text if metric(text, "streamlake_records_in_total", stream="sales.orders") == summary.produced else None

    text = wait_for(scraped, timeout=60, what="/metrics to count every record")
    status, ctype, _ = http_get(f"{base}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert metric(text, "streamlake_records_forwarded_total", stream="sales.orders") == summary.expected_forwarded
    assert metric(text, "streamlake_records_dropped_total", stream="sales.orders", **{"class": "duplicate"}) \
        == summary.expected_dropped
    for reason, n in summary.expected_dlq_by_reason.items():
        assert metric(text, "streamlake_records_dlq_total", stream="sales.orders", reason=reason) == n, reason
    assert metric(text, "streamlake_records_dlq_total", reason="invalid-json", stage="decode") is not None
    assert metric(text, "streamlake_ordering_violations_total", stream="sales.orders", **{"class": "late"}) \
        == summary.by_kind["late"]
    assert metric(text, "streamlake_rebalances_total") >= 1
    assert metric(text, "streamlake_ready") == 1
    def caught_up() -> str | None:
        t = http_get(f"{base}/metrics")[2]
        lags = [metric(t, "streamlake_consumer_lag", topic=source, partition=str(p)) for p in range(PARTITIONS)]
        return t if lags == [0] * PARTITIONS else None

    lag_text = wait_for(caught_up, timeout=30, what="lag to reach 0 on every partition")
    assert metric(lag_text, "streamlake_consumer_committed_offset", topic=source, partition="0") is not None

    # the counters changelog holds the same totals (what the demo and status read)
    async with CountersReader(settings, {"sales.orders": source}) as reader:
        totals = (await reader.poll())["sales.orders"]
    assert (totals.records_in, totals.forwarded, totals.dropped, totals.dlq) == (
        summary.produced, summary.expected_forwarded, summary.expected_dropped, summary.expected_dlq)

    # status: one stable member owning every source partition, no lag, DLQ depth = DLQ records
    result = streamlake(test_env, "status", "--json")
    assert result.returncode == 0, result.stderr
    st = json.loads(result.stdout)
    assert st["group"] == test_env.app_id and st["state"] == "Stable" and len(st["members"]) == 1
    assert sorted(st["members"][0]["assignment"][source]) == list(range(PARTITIONS))
    source_lag = [row for row in st["lag"] if row["topic"] == source]
    assert len(source_lag) == PARTITIONS and all(row["lag"] == 0 for row in source_lag)
    assert sum(row["end"] for row in source_lag) == summary.produced
    assert st["dlq"] == [{"topic": f"{source}.dlq", "depth": summary.expected_dlq, "end": summary.expected_dlq,
                          "partitions": PARTITIONS}]
    text_status = streamlake(test_env, "status")
    assert text_status.returncode == 0 and "Stable, 1 member(s)" in text_status.stdout

    # stopping: /health stops answering 200 and status shows an empty group
    worker.stop()
    result = streamlake(test_env, "status", "--json")
    assert json.loads(result.stdout)["members"] == []


def test_status_without_a_broker_says_what_to_do(test_env):
    env_broker = "kafka://127.0.0.1:1"
    result = subprocess.run([sys.executable, "-c", "from streamlake.app import main; main()", "status"],
                            cwd=ROOT, env=test_env.environ(STREAMLAKE_BROKER=env_broker), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "cannot reach Kafka" in result.stderr and "STREAMLAKE_BROKER" in result.stderr


def test_produce_sample_refuses_a_missing_topic_and_bad_arguments(test_env):
    result = subprocess.run([sys.executable, "-c", "from streamlake.app import main; main()", "produce-sample",
                             "--events", "10"], cwd=ROOT, env=test_env.environ(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "streamlake topics apply" in result.stderr
    result = subprocess.run([sys.executable, "-c", "from streamlake.app import main; main()", "produce-sample",
                             "--events", "10", "--bad-ratio", "2"], cwd=ROOT, env=test_env.environ(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--bad-ratio" in result.stderr
