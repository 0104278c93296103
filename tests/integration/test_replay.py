"""Replay against the real broker, checked against Kafka's own ConsumerGroupCommand.

Every reset mode is planned by StreamLake and by Kafka's tool (``--dry-run
--export``) on the same group and compared partition by partition, CSV line
by CSV line.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from click.testing import CliRunner

from streamlake.broker.local import kafka_tool_command
from streamlake.cli.replay import replay as replay_cli
from streamlake.config import Settings
from streamlake.core.replay import (
    ORIGIN_OFFSET_HEADER,
    ORIGIN_PARTITION_HEADER,
    ORIGIN_TIMESTAMP_HEADER,
    ORIGIN_TOPIC_HEADER,
    REPLAY_ID_HEADER,
    ActiveGroupError,
    ResetMode,
    ResetSpec,
)
from streamlake.kafka.client import client_kwargs
from streamlake.kafka.offsets import commit_group_offsets
from streamlake.kafka.replay import ResetOutcome, plan_offset_reset, plan_window, replay_window
from streamlake.partitioner import partition_for_key
from tests import kafka_fixtures as fixtures

CGC = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CSV_LINE = re.compile(r"^(\"[^\"]+\"|[^,\s\"]+),\d+,\d+$")
SPACING_MS = 120_000
RECORDS_PER_PARTITION = 10


def _name(env: fixtures.TestEnv, what: str) -> str:
    return f"{env.prefix}.replay.{what}-{uuid.uuid4().hex[:6]}.raw.v1"


def _csv_line(topic: str, partition: int, offset: int) -> str:
    """A line of Kafka's export: Jackson quotes strings longer than 24 characters."""
    return f'"{topic}",{partition},{offset}' if len(topic) > 24 else f"{topic},{partition},{offset}"


def _kafka_datetime(ms: int, zone_hours: int = 0) -> str:
    stamp = datetime.fromtimestamp(ms / 1000 + zone_hours * 3600, tz=timezone.utc)
    zone = "" if zone_hours == 0 else f"{'+' if zone_hours > 0 else '-'}{abs(zone_hours):02d}:00"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + zone


async def _create_topic(settings: Settings, name: str, partitions: int) -> None:
    await fixtures.create_topics(settings.bootstrap_servers, [name], partitions)


async def _produce(settings: Settings, topic: str, records: list[tuple[int, bytes | None, bytes, int, list]]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    await producer.start()
    try:
        for partition, key, value, ts, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition,
                                         timestamp_ms=ts, headers=headers)
    finally:
        await producer.stop()


async def _delete_before(settings: Settings, topic: str, partition: int, offset: int) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()


async def _committed(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}


def _kafka_plan(env: fixtures.TestEnv, group: str, *args: str) -> tuple[list[str], str]:
    """Kafka's own dry-run plan as sorted CSV lines, plus its full output."""
    cmd = kafka_tool_command(CGC, "--bootstrap-server", env.broker.bootstrap, "--group", group,
                             "--reset-offsets", "--dry-run", "--export", *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    return sorted(ln for ln in proc.stdout.splitlines() if CSV_LINE.match(ln.strip())), out


def _our_plan(env: fixtures.TestEnv, group: str, *args: str) -> list[str]:
    """StreamLake's dry-run plan through the CLI, exported to a CSV file."""
    export = env.tmp / f"plan-{uuid.uuid4().hex[:6]}.csv"
    result = CliRunner().invoke(replay_cli, ["reset-offsets", "--group", group, *args, "--export", str(export)],
                                env=env.environ(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Dry run" in result.output
    return sorted(export.read_text().splitlines())


@pytest.fixture
def history(test_env: fixtures.TestEnv) -> dict:
    """A 3-partition topic, 10 records per partition two minutes apart, ending 12 minutes ago.

    Partition 0 lost its first 3 records (earliest = 3). The group committed
    5 on partition 0 and 2 on partition 1, nothing on partition 2.
    """
    settings = test_env.settings()
    topic = _name(test_env, "hist")
    group = f"{test_env.app_id}-reset"
    base = int(time.time() * 1000) - 30 * 60_000

    async def setup() -> None:
        await _create_topic(settings, topic, 3)
        await _produce(settings, topic, [
            (p, f"k{p}-{i}".encode(), f"v{i}".encode(), base + i * SPACING_MS + p * 100, [])
            for p in range(3) for i in range(RECORDS_PER_PARTITION)
        ])
        await _delete_before(settings, topic, 0, 3)
        await commit_group_offsets(settings, group, {(topic, 0): 5, (topic, 1): 2})

    asyncio.run(setup())
    return {"settings": settings, "topic": topic, "group": group, "base": base}


def test_every_reset_mode_matches_kafkas_own_dry_run_plan(test_env: fixtures.TestEnv, history: dict) -> None:
    topic, group, base = history["topic"], history["group"], history["base"]
    plan_file = test_env.tmp / "from-file.csv"
    plan_file.write_text(f"{topic},0,1\n{topic},1,4\n{topic},2,99\n")
    on_p1_record_4 = base + 4 * SPACING_MS + 100
    cases: list[tuple[str, list[str], dict[int, int] | None]] = [
        ("to-datetime exact record", ["--topic", topic, "--to-datetime", _kafka_datetime(on_p1_record_4)],
         {0: 5, 1: 4, 2: 4}),
        ("to-datetime with zone", ["--topic", topic, "--to-datetime", _kafka_datetime(on_p1_record_4, 2)],
         {0: 5, 1: 4, 2: 4}),
        ("to-datetime beyond the last record", ["--topic", topic, "--to-datetime", _kafka_datetime(base + 3_600_000)],
         {0: 10, 1: 10, 2: 10}),
        ("by-duration inside the history", ["--topic", topic, "--by-duration", "PT17M"], {0: 7, 1: 7, 2: 7}),
        ("by-duration before everything", ["--topic", topic, "--by-duration", "P1DT2H30M"], {0: 3, 1: 0, 2: 0}),
        ("to-earliest", ["--topic", topic, "--to-earliest"], {0: 3, 1: 0, 2: 0}),
        ("to-latest on some partitions", ["--topic", f"{topic}:0,2", "--to-latest"], {0: 10, 2: 10}),
        ("to-offset in range", ["--topic", topic, "--to-offset", "7"], {0: 7, 1: 7, 2: 7}),
        ("to-offset above latest", ["--topic", topic, "--to-offset", "50"], {0: 10, 1: 10, 2: 10}),
        ("to-offset below earliest", ["--topic", topic, "--to-offset", "1"], {0: 3, 1: 1, 2: 1}),
        ("shift-by backwards, clamped", ["--topic", f"{topic}:0,1", "--shift-by", "-3"], {0: 3, 1: 0}),
        ("shift-by forwards", ["--topic", f"{topic}:0,1", "--shift-by", "4"], {0: 9, 1: 6}),
        ("shift-by forwards, clamped", ["--topic", f"{topic}:0,1", "--shift-by", "100"], {0: 10, 1: 10}),
        ("all-topics", ["--all-topics", "--to-earliest"], {0: 3, 1: 0}),
        ("from-file, clamped", ["--from-file", str(plan_file)], {0: 3, 1: 4, 2: 10}),
    ]
    mismatches = []
    for label, args, expected in cases:
        kafka_lines, kafka_out = _kafka_plan(test_env, group, *args)
        ours = _our_plan(test_env, group, *args)
        assert kafka_lines, f"{label}: Kafka's tool printed no plan:\n{kafka_out}"
        if ours != kafka_lines:
            mismatches.append(f"{label}: streamlake {ours} != kafka {kafka_lines}")
        if expected is not None:
            assert ours == sorted(_csv_line(topic, p, o) for p, o in expected.items()), label
    assert not mismatches, "\n".join(mismatches)


def test_shift_by_without_committed_offset_is_refused_by_both(test_env: fixtures.TestEnv, history: dict) -> None:
    topic, group = history["topic"], history["group"]
    _, kafka_out = _kafka_plan(test_env, group, "--topic", topic, "--shift-by", "1")
    assert "no current committed offset" in kafka_out
    result = CliRunner().invoke(replay_cli, ["reset-offsets", "--group", group, "--topic", topic, "--shift-by", "1"],
                                env=test_env.environ())
    assert result.exit_code == 1
    assert f"{topic}:2" in result.output and "no committed offset" in result.output


def test_dry_run_prints_current_target_and_move_and_changes_nothing(test_env: fixtures.TestEnv, history: dict) -> None:
    topic, group, settings = history["topic"], history["group"], history["settings"]
    result = CliRunner().invoke(replay_cli, ["reset-offsets", "--group", group, "--topic", topic,
                                             "--to-earliest", "--json"], env=test_env.environ())
    assert result.exit_code == 0, result.output
    rows = {r["partition"]: r for r in orjson.loads(result.output)["rows"]}
    assert (rows[0]["current"], rows[0]["target"], rows[0]["moves"]) == (5, 3, -2)
    assert (rows[2]["current"], rows[2]["target"], rows[2]["moves"]) == (None, 0, None)
    assert asyncio.run(_committed(settings, group)) == {(topic, 0): 5, (topic, 1): 2}


def test_execute_commits_the_plan_and_a_second_execute_is_a_no_op(test_env: fixtures.TestEnv, history: dict) -> None:
    topic, group, settings = history["topic"], history["group"], history["settings"]
    args = ["reset-offsets", "--group", group, "--topic", topic, "--to-offset", "6", "--execute", "--json"]
    first = CliRunner().invoke(replay_cli, args, env=test_env.environ())
    assert first.exit_code == 0, first.output
    assert orjson.loads(first.output)["outcome"] == ResetOutcome.APPLIED.value
    expected = {(topic, 0): 6, (topic, 1): 6, (topic, 2): 6}
    assert asyncio.run(_committed(settings, group)) == expected
    second = CliRunner().invoke(replay_cli, args, env=test_env.environ())
    assert second.exit_code == 0, second.output
    assert orjson.loads(second.output)["outcome"] == ResetOutcome.ALREADY_AT_TARGET.value
    assert asyncio.run(_committed(settings, group)) == expected
    # Kafka's tool sees the same offsets we committed
    kafka_lines, _ = _kafka_plan(test_env, group, "--all-topics", "--shift-by", "0")
    assert kafka_lines == sorted(_csv_line(t, p, o) for (t, p), o in expected.items())


async def test_active_group_is_refused_with_group_and_state(test_env: fixtures.TestEnv) -> None:
    settings = test_env.settings()
    topic = _name(test_env, "active")
    group = f"{test_env.app_id}-live"
    await _create_topic(settings, topic, 2)
    member = AIOKafkaConsumer(topic, **client_kwargs(settings), group_id=group, enable_auto_commit=False,
                              session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
    await member.start()
    try:
        deadline = time.monotonic() + 60
        while not member.assignment():
            assert time.monotonic() < deadline, "the member never got an assignment"
            await asyncio.sleep(0.2)
        spec = ResetSpec(ResetMode.TO_EARLIEST)
        with pytest.raises(ActiveGroupError) as err:
            await plan_offset_reset(settings, group, spec, [topic])
        message = str(err.value)
        assert group in message and "Stable" in message and "Stop its workers" in message
        # the CLI exits non-zero with the same message, while the member stays alive
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from streamlake.cli.replay import replay; replay()",
            "reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute",
            env=test_env.environ(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 1, output.decode()
        assert group in output.decode() and "Stable" in output.decode()
        assert member.assignment(), "the live member must keep its partitions"
        # a commit racing a member that joined after the check is refused by the broker too
        with pytest.raises(ActiveGroupError):
            await commit_group_offsets(settings, group, {(topic, 0): 0})
        assert await _async_committed(settings, group) == {}
    finally:
        await member.stop()


async def _async_committed(settings: Settings, group: str) -> dict:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        return {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


# --------------------------------------------------------------------------- window replay

async def _read_all(settings: Settings, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(topic, **client_kwargs(settings), group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(recs)
        # one more fetch proves nothing beyond the expected count arrived
        for recs in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(recs)
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def window_topic(test_env: fixtures.TestEnv) -> dict:
    """Two partitions, offsets 0-8 with timestamps 1000, 2000, ... 9000 (relative).

    Window [3000, 7000): the record at 3000 is included, the one at 7000 excluded.
    Partition 1 also has offset 9 with an out-of-order 5500: it comes after the
    first record at or past the end, so the replay has stopped before it.
    """
    settings = test_env.settings()
    topic = _name(test_env, "win")
    start, end = 1_700_000_003_000, 1_700_000_007_000
    rows = []
    for p in range(2):
        for i in range(1, 10):
            key = None if (p, i) == (1, 5) else f"key-{p}-{i}".encode()
            headers = [("trace", f"t{i}".encode()), (REPLAY_ID_HEADER, b"an-older-replay")] if i == 4 else []
            rows.append((p, key, f"value-{p}-{i}".encode(), 1_700_000_000_000 + i * 1000, headers))
    rows.append((1, b"late-key", b"late", 1_700_000_005_500, []))
    asyncio.run(_create_topic(settings, topic, 2))
    asyncio.run(_produce(settings, topic, rows))
    return {"settings": settings, "topic": topic, "start": start, "end": end}


def test_window_replay_counts_boundaries_and_headers(test_env: fixtures.TestEnv, window_topic: dict) -> None:
    settings, topic = window_topic["settings"], window_topic["topic"]
    into = _name(test_env, "into")
    asyncio.run(_create_topic(settings, into, 3))
    start, end = _kafka_datetime(window_topic["start"]), _kafka_datetime(window_topic["end"], -5)
    group = f"{test_env.app_id}-live"

    async def run() -> tuple:
        member = AIOKafkaConsumer(topic, **client_kwargs(settings), group_id=group, enable_auto_commit=False)
        await member.start()   # the live group keeps running during the replay
        try:
            plan = await plan_window(settings, topic, start, end, into=into, replay_id="rid-1")
            seen: list[int] = []
            result = await replay_window(settings, plan, on_progress=seen.append)
            still_member = await _wait_assigned(member)
        finally:
            await member.stop()
        return plan, result, sum(seen), still_member

    plan, result, progressed, still_member = asyncio.run(run())
    assert still_member
    assert [(p.partition, p.first_offset, p.stop_offset) for p in plan.partitions] == [(0, 2, 6), (1, 2, 6)]
    assert progressed == plan.upper_bound == 8
    assert {p: c.replayed for p, c in result.by_partition.items()} == {0: 4, 1: 4}
    copies = asyncio.run(_read_all(settings, into, 8))
    assert len(copies) == 8
    by_origin = {}
    for rec in copies:
        headers = dict(rec.headers)
        origin = (headers[ORIGIN_TOPIC_HEADER].decode(), int(headers[ORIGIN_PARTITION_HEADER]),
                  int(headers[ORIGIN_OFFSET_HEADER]))
        by_origin[origin] = rec
        assert headers[REPLAY_ID_HEADER] == b"rid-1"
        ts = int(headers[ORIGIN_TIMESTAMP_HEADER])
        assert window_topic["start"] <= ts < window_topic["end"]
        p, offset = origin[1], origin[2]
        assert rec.value == f"value-{p}-{offset + 1}".encode()
        if rec.key is None:
            assert rec.partition == p   # a null key keeps its source partition
        else:
            assert rec.partition == partition_for_key(rec.key, 3)
    # timestamps 3000..6000 of each partition: offsets 2..5; 7000 (offset 6) excluded
    assert sorted(by_origin) == [(topic, p, o) for p in (0, 1) for o in (2, 3, 4, 5)]
    assert by_origin[(topic, 1, 4)].key is None
    headers = by_origin[(topic, 0, 3)].headers
    assert headers[0] == ("trace", b"t4")
    assert [v for k, v in headers if k == REPLAY_ID_HEADER] == [b"rid-1"]   # the older replay id was replaced


async def _wait_assigned(member: AIOKafkaConsumer) -> bool:
    deadline = time.monotonic() + 60
    while not member.assignment():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def test_window_replay_into_its_own_topic_via_cli_with_key_filter(test_env: fixtures.TestEnv, window_topic: dict) -> None:
    settings, topic = window_topic["settings"], window_topic["topic"]
    start, end = _kafka_datetime(window_topic["start"]), _kafka_datetime(window_topic["end"])
    dry = CliRunner().invoke(replay_cli, ["window", "--topic", topic, "--start", start, "--end", end, "--json"],
                             env=test_env.environ())
    assert dry.exit_code == 0, dry.output
    assert orjson.loads(dry.output)["upper_bound"] == 8
    args = ["window", "--topic", topic, "--start", start, "--end", end, "--key", "key-0-3", "--execute"]
    done = CliRunner().invoke(replay_cli, args, env=test_env.environ())
    assert done.exit_code == 0, done.output
    assert "Replayed 1 record(s)" in done.output
    records = asyncio.run(_read_all(settings, topic, 19 + 1))
    replayed = [r for r in records if any(k == REPLAY_ID_HEADER for k, _ in r.headers) and r.offset >= 9]
    assert len(records) == 20 and len(replayed) == 1
    copy = replayed[0]
    assert copy.key == b"key-0-3" and copy.partition == 0 and copy.value == b"value-0-3"
    assert dict(copy.headers)[ORIGIN_OFFSET_HEADER] == b"2"


def test_commands_are_registered_on_fausts_cli(test_env: fixtures.TestEnv) -> None:
    proc = subprocess.run([sys.executable, "-m", "faust", "-A", "streamlake.app", "replay", "--help"],
                          capture_output=True, text=True, env=test_env.environ(), timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reset-offsets" in proc.stdout and "window" in proc.stdout

