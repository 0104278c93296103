"""``streamlake dlq`` stats/inspect/export/redrive against the real broker, on DLQ records produced here."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamlake.core.dlq import DeadLetter, H, Reason, build_dlq_headers
from streamlake.core.dlq_policy import REDRIVE_DLQ_OFFSET, REDRIVE_DLQ_PARTITION, REDRIVE_DLQ_TOPIC, REDRIVE_ID, DlqFilter
from streamlake.core.records import SourceRecord
from streamlake.kafka.client import client_kwargs
from streamlake.kafka.redrive import RedriveFault, RedriveMode, crash_redrive_after
from tests.dlq_sync import dlq_stats, export_dlq, inspect_dlq, redrive_dlq
from tests.kafka_fixtures import ROOT, TestEnv, create_topics, read_until

PARTITIONS = 4


def names(env: TestEnv) -> tuple[str, str]:
    source = f"{env.prefix}.sales.orders.raw.v1"
    return source, f"{source}.dlq"


async def _create(settings, *topics: str) -> None:
    await create_topics(settings.bootstrap_servers, list(topics), PARTITIONS)


async def _produce(settings, topic: str, records: list[tuple[int, bytes | None, bytes | None, list]]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    await producer.start()
    try:
        for partition, key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition, headers=headers)
    finally:
        await producer.stop()


async def _read_all(settings, topic: str) -> list:
    return await read_until(settings.bootstrap_servers, topic, isolation_level="read_committed")


def dead(source: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: Reason,
         attempt_before: int = 0, now_ms: int | None = None) -> tuple[int, bytes | None, bytes | None, list]:
    headers: list[tuple[str, bytes]] = [("trace-id", f"t{offset}".encode())]
    if attempt_before:
        headers += [(H.ATTEMPT, str(attempt_before).encode()), (H.FIRST_FAILED_AT, b"1000")]
    rec = SourceRecord(source, partition, offset, 1_000, key, value, tuple(headers))
    hdrs = build_dlq_headers(DeadLetter(rec, reason, f"failed {reason.value}"), "grp", "w1",
                             now_ms or int(time.time() * 1000))
    return partition, key, value, hdrs


@pytest.fixture
def loaded(test_env: TestEnv):
    """A DLQ with a mixed load: 3 decode, 2 transform-error, 2 retryable (one at the cap), 1 malformed."""
    settings = test_env.settings()
    source, dlq = names(test_env)
    asyncio.run(_create(settings, source, dlq))
    records = [
        dead(source, 0, 10, b"a", b"not json", Reason.INVALID_JSON),
        dead(source, 1, 11, b"b", b"\xff\xfe\x00binary", Reason.INVALID_UTF8),
        dead(source, 1, 12, b"b", b"[1]", Reason.NOT_AN_OBJECT),
        dead(source, 2, 13, b"c", b'{"order_id":"c","seq":1}', Reason.TRANSFORM_ERROR),
        dead(source, 3, 14, b"d", b'{"order_id":"d","seq":1}', Reason.TRANSFORM_ERROR),
        dead(source, 2, 15, b"c", b'{"order_id":"c","seq":2}', Reason.TRANSFORM_RETRYABLE),
        dead(source, 3, 16, b"d", b'{"order_id":"d","seq":2}', Reason.TRANSFORM_RETRYABLE, attempt_before=2),
        (0, b"x", b"no headers at all", []),
    ]
    asyncio.run(_produce(settings, dlq, records))
    return settings, source, dlq


def test_stats_count_a_mixed_load_by_reason_and_stage_with_depth_and_parked(loaded, test_env):
    settings, source, dlq = loaded
    data = dlq_stats(settings, "sales.orders")
    s = data["streams"]["sales.orders"]
    assert s["topic"] == dlq and s["exists"]
    assert s["records"] == 8 and s["depth_total"] == 8
    assert s["depth"] == {0: 2, 1: 2, 2: 2, 3: 2}
    assert s["by_stage"] == {"decode": 3, "process": 4, "unknown": 1}
    counts = {r["reason"]: r["count"] for r in s["by_reason"]}
    assert counts == {"invalid-json": 1, "invalid-utf8": 1, "not-an-object": 1, "transform-error": 2,
                      "transform-retryable": 2, "unknown": 1}
    assert (s["retried"], s["parked"], s["exhausted"], s["malformed"]) == (1, 7, 1, 1)
    assert s["oldest"] <= s["newest"]


def test_inspect_filters_by_reason_stage_key_and_limit_and_previews_safely(loaded):
    settings, source, dlq = loaded
    by_reason = inspect_dlq(settings, dlq, DlqFilter(reason="transform-error"))
    assert sorted(r["key"] for r in by_reason) == ["c", "d"]
    decode = inspect_dlq(settings, dlq, DlqFilter(stage="decode"))
    assert len(decode) == 3
    binary = next(r for r in decode if r["reason"] == "invalid-utf8")
    assert binary["value"].startswith("binary b'\\xff\\xfe\\x00")
    only_b = inspect_dlq(settings, dlq, DlqFilter(key=b"b"))
    assert {r["reason"] for r in only_b} == {"invalid-utf8", "not-an-object"}
    assert len(inspect_dlq(settings, dlq, DlqFilter(), limit=3)) == 3
    connect = inspect_dlq(settings, dlq, DlqFilter(reason="invalid-json"), style=__import__(
        "streamlake.core.dlq_policy", fromlist=["HeaderStyle"]).HeaderStyle.CONNECT)
    assert dict(connect[0]["headers"])["__connect.errors.topic"] == source


def test_inspect_since_and_until_use_the_dlq_record_time(test_env):
    settings = test_env.settings()
    source, dlq = names(test_env)
    asyncio.run(_create(settings, source, dlq))
    asyncio.run(_produce(settings, dlq, [dead(source, 0, 1, b"old", b"{}", Reason.INVALID_JSON)]))
    cut = int(time.time() * 1000) + 1
    time.sleep(0.05)  # the two records need distinct broker timestamps on either side of the cut
    asyncio.run(_produce(settings, dlq, [dead(source, 0, 2, b"new", b"{}", Reason.INVALID_JSON)]))
    assert [r["key"] for r in inspect_dlq(settings, dlq, DlqFilter(since_ms=cut))] == ["new"]
    assert [r["key"] for r in inspect_dlq(settings, dlq, DlqFilter(until_ms=cut))] == ["old"]


def test_export_writes_connect_and_spring_names(loaded):
    settings, source, dlq = loaded
    from streamlake.core.dlq_policy import HeaderStyle
    out = io.BytesIO()
    count = export_dlq(settings, dlq, DlqFilter(reason="transform-error"), out, HeaderStyle.SPRING)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert count == 2 == len(lines)
    assert all("kafka_dlt-original-topic" in dict(line["headers"]) for line in lines)


def test_redrive_dry_run_sends_nothing_and_execute_lands_on_origin_partition_unchanged(loaded):
    settings, source, dlq = loaded
    filt = DlqFilter(stage="process")
    plan = redrive_dlq(settings, dlq, filt, redrive_id="plan-1")
    assert plan.mode is RedriveMode.DRY_RUN and plan.sent == 3 and plan.refused_attempt_cap == 1
    assert asyncio.run(_read_all(settings, source)) == []

    report = redrive_dlq(settings, dlq, filt, mode=RedriveMode.EXECUTE, redrive_id="fix-1")
    assert (report.matched, report.sent, report.refused_attempt_cap) == (4, 3, 1)
    landed = asyncio.run(_read_all(settings, source))
    assert len(landed) == 3
    originals = {(r["partition"], r["offset"]): r for r in inspect_dlq(settings, dlq, filt, limit=100)}
    for msg in landed:
        h = dict(msg.headers)
        dlq_offset = int(h[REDRIVE_DLQ_OFFSET])
        assert h[REDRIVE_ID] == b"fix-1" and h[REDRIVE_DLQ_TOPIC] == dlq.encode()
        assert int(h[REDRIVE_DLQ_PARTITION]) == msg.partition  # produced here on the origin partition
        assert H.REASON not in h and H.ORIGIN_TOPIC not in h and h[H.ATTEMPT] in (b"1",)
        assert h["trace-id"].startswith(b"t")
        assert msg.key.decode() == originals[(msg.partition, dlq_offset)]["key"]
    values = sorted((m.partition, m.key, m.value) for m in landed)
    assert values == [(2, b"c", b'{"order_id":"c","seq":1}'), (2, b"c", b'{"order_id":"c","seq":2}'),
                      (3, b"d", b'{"order_id":"d","seq":1}')]

    # the loop guard: the attempt-3 record goes only with a raised cap
    raised = redrive_dlq(settings, dlq, DlqFilter(key=b"d", reason="transform-retryable"),
                         mode=RedriveMode.EXECUTE, redrive_id="fix-2", max_attempts=4)
    assert raised.sent == 1
    redriven = [m for m in asyncio.run(_read_all(settings, source)) if dict(m.headers)[REDRIVE_ID] == b"fix-2"]
    assert len(redriven) == 1 and dict(redriven[0].headers)[H.ATTEMPT] == b"3"


def test_rerunning_a_finished_redrive_sends_nothing_again(loaded):
    settings, source, dlq = loaded
    first = redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="once")
    again = redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="once")
    assert (first.sent, first.refused_attempt_cap, first.refused_no_origin) == (6, 1, 1)
    assert again.sent == 0 and again.already_done == 8
    assert len(asyncio.run(_read_all(settings, source))) == 6


def test_interrupted_redrive_resumes_with_the_same_id_and_sends_each_record_once(test_env):
    settings = test_env.settings()
    source, dlq = names(test_env)
    asyncio.run(_create(settings, source, dlq))
    asyncio.run(_produce(settings, dlq, [
        dead(source, n % PARTITIONS, n, f"k{n}".encode(), f'{{"n":{n}}}'.encode(), Reason.TRANSFORM_ERROR)
        for n in range(30)
    ]))
    # a clean stop (--limit) after 7 sends, then a crash in the middle of an open transaction
    part = redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="resume", limit=7,
                       batch_size=4)
    assert part.sent == 7 and part.stopped_early
    with pytest.raises(RedriveFault), crash_redrive_after(6):
        redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="resume", batch_size=4)
    rest = redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="resume", batch_size=4)
    assert rest.already_done >= 7
    landed = asyncio.run(_read_all(settings, source))
    sent = sorted((int(dict(m.headers)[REDRIVE_DLQ_PARTITION]), int(dict(m.headers)[REDRIVE_DLQ_OFFSET]))
                  for m in landed)
    assert sent == sorted((n % PARTITIONS, n // PARTITIONS) for n in range(30)) and len(landed) == 30
    assert {m.value for m in landed} == {f'{{"n":{n}}}'.encode() for n in range(30)}


def test_cli_runs_under_streamlake_and_faust_and_fails_clearly_on_bad_input(loaded, test_env):
    settings, source, dlq = loaded
    env = test_env.environ()
    out = subprocess.run([sys.executable, "-m", "faust", "-A", "streamlake.app", "dlq", "inspect", "--topic", dlq,
                          "--reason", "invalid-json", "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [r["reason"] for r in orjson.loads(out.stdout)] == ["invalid-json"]
    stats = subprocess.run([sys.executable, "-m", "streamlake", "dlq", "stats", "--stream", "sales.orders"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert stats.returncode == 0, stats.stderr
    assert "transform-retryable" in stats.stdout and "parked 7" in stats.stdout
    bad = subprocess.run([sys.executable, "-m", "streamlake", "dlq", "inspect", "--topic", source,
                          "--reason", "nope"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "error:" in bad.stderr
    bad_reason = subprocess.run([sys.executable, "-m", "streamlake", "dlq", "redrive", "--topic", dlq,
                                 "--reason", "nope"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad_reason.returncode == 1 and "unknown reason 'nope'" in bad_reason.stderr
