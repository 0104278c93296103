"""DLQ agents in a real worker: retry then success, retry then parking, counts, and per-key order after a retry.

The worker runs a test-only topology (``lab.flaky``) from its own STREAMLAKE_HOME:
its transform raises RetryableError for records with ``mode=always``, and for
``mode=until-flag`` while a flag file exists.
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from streamlake.core.dlq import H
from streamlake.core.dlq_policy import DlqFilter
from streamlake.kafka.client import client_kwargs
from streamlake.kafka.redrive import RedriveMode
from tests.dlq_sync import redrive_dlq
from tests.kafka_fixtures import ROOT, TestEnv, read_until, wait_for

PARTITIONS = 2

TOPOLOGY = textwrap.dedent('''
    import os
    from pathlib import Path

    from streamlake.errors import RetryableError
    from streamlake.topology import Stream


    def flaky(doc):
        mode = doc.get("mode")
        if mode == "always" or (mode == "until-flag" and Path(os.environ["DLQ_TEST_FLAG"]).exists()):
            raise RetryableError(f"downstream unavailable for {doc['order_id']}/{doc['seq']}")
        if mode == "bug-until-flag" and Path(os.environ["DLQ_TEST_FLAG"]).exists():
            raise ValueError(f"transform bug on {doc['order_id']}/{doc['seq']}")
        return doc


    flaky_stream = Stream(domain="lab", dataset="flaky", key_field="order_id", sequence_field="seq", transform=flaky)
''')


def make_home(tmp: Path) -> Path:
    home = tmp / "home"
    (home / "conf").mkdir(parents=True)
    (home / "topologies").mkdir()
    shutil.copy(ROOT / "conf" / "test.toml", home / "conf" / "test.toml")
    (home / "conf" / "catalog.toml").write_text(f"[defaults]\npartitions = {PARTITIONS}\nreplication_factor = 1\n")
    (home / "topologies" / "flaky.py").write_text(TOPOLOGY)
    return home


async def _produce(settings, topic: str, docs: list[dict]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    await producer.start()
    try:
        for doc in docs:
            await producer.send_and_wait(topic, value=orjson.dumps(doc), key=doc["order_id"].encode())
    finally:
        await producer.stop()


async def _read(settings, topic: str) -> list:
    return await read_until(settings.bootstrap_servers, topic)


def start_flaky_lab(test_env: TestEnv, worker_factory, flag_name: str, **extra_env: str):
    """A worker on the lab.flaky topology, its transform failing while *flag_name* exists.

    Returns (flag, settings, worker, source, output, dlq).
    """
    home = make_home(test_env.tmp)
    flag = test_env.tmp / flag_name
    flag.touch()
    env = dict(STREAMLAKE_HOME=str(home), DLQ_TEST_FLAG=str(flag), **extra_env)
    settings = test_env.settings(**env)
    worker = worker_factory(**env)
    source = f"{test_env.prefix}.lab.flaky.raw.v1"
    return flag, settings, worker, source, f"{test_env.prefix}.lab.flaky.valid.v1", f"{source}.dlq"


def _counts(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/streamlake/dlq", timeout=5) as resp:
        return orjson.loads(resp.read())["lab.flaky"]


def test_transient_failure_is_retried_until_it_succeeds_and_persistent_one_is_parked(test_env: TestEnv, worker_factory):
    flag, settings, worker, source, output, dlq = start_flaky_lab(
        test_env, worker_factory, "still-failing", STREAMLAKE_DLQ_RETRY_ATTEMPTS="4", STREAMLAKE_DLQ_RETRY_BACKOFF="0.5")

    asyncio.run(_produce(settings, source, [
        {"order_id": "a", "seq": 1},
        {"order_id": "a", "seq": 2, "mode": "until-flag"},
        {"order_id": "a", "seq": 3},
        {"order_id": "b", "seq": 1, "mode": "always"},
    ]))

    def first_failure():
        return [m for m in asyncio.run(_read(settings, dlq)) if m.key == b"a"]
    first = wait_for(first_failure, timeout=60, interval=0.1, what="a/2 in the DLQ")
    flag.unlink()  # the downstream recovers: the next retry succeeds
    failed_at = first[0].timestamp

    def a_outputs():
        out = [m for m in asyncio.run(_read(settings, output)) if m.key == b"a"]
        return out if len(out) == 3 else None
    out = wait_for(a_outputs, timeout=60, what="a/1..3 in the output")
    seqs = [orjson.loads(m.value)["seq"] for m in out]
    assert seqs == [1, 3, 2]  # the retried record arrives after the later record of its key, and is accepted
    retried = out[-1]
    attempts_a = [int(dict(m.headers)[H.ATTEMPT]) for m in first_failure()]
    assert dict(retried.headers)[H.ATTEMPT] == str(max(attempts_a)).encode()
    assert retried.timestamp - failed_at >= 500  # waited at least the first backoff
    print(f"retry latency a/2: {retried.timestamp - failed_at} ms after the first failure, "
          f"{len(attempts_a)} failure(s)")

    def b_parked():
        attempts = sorted(int(dict(m.headers)[H.ATTEMPT]) for m in asyncio.run(_read(settings, dlq)) if m.key == b"b")
        return attempts if attempts == [1, 2, 3, 4] else None
    wait_for(b_parked, timeout=60, what="b to fail 4 times")

    def counts_settled():
        data = _counts(worker.web_port)
        total = {"records": 0, "retried": 0, "parked": 0, "exhausted": 0}
        for part in data["partitions"].values():
            for name in total:
                total[name] += part[name]
        return total if total["exhausted"] == 1 and data["pending_retries"] == 0 else None
    total = wait_for(counts_settled, timeout=30, what="the DLQ counts table")
    dlq_records = asyncio.run(_read(settings, dlq))
    assert total["records"] == len(dlq_records) == len(attempts_a) + 4
    assert total["retried"] == len(attempts_a) + 3 and total["parked"] == 1
    log = worker.log()
    assert log.count('"event":"dlq-record"') == len(dlq_records) and '"verdict":"park-exhausted"' in log
    assert '"value"' not in log  # no payload in the log unless dlq.log_payload
    # b stayed at attempt 4 in the DLQ and never reached the output
    assert not [m for m in asyncio.run(_read(settings, output)) if m.key == b"b"]
    # exactly once: nothing of a was duplicated in the output
    assert [orjson.loads(m.value)["seq"] for m in asyncio.run(_read(settings, output)) if m.key == b"a"] == [1, 3, 2]


def test_redrive_after_the_transform_is_fixed_lands_each_record_in_the_output_exactly_once(test_env: TestEnv,
                                                                                           worker_factory):
    flag, settings, worker, source, output, dlq = start_flaky_lab(test_env, worker_factory, "bug-present")
    asyncio.run(_produce(settings, source, [
        {"order_id": "e", "seq": 1},
        {"order_id": "e", "seq": 2, "mode": "bug-until-flag"},
        {"order_id": "e", "seq": 3},
        {"order_id": "f", "seq": 1, "mode": "bug-until-flag"},
    ]))

    def outputs(key: bytes, n: int):
        def check():
            got = [orjson.loads(m.value)["seq"] for m in asyncio.run(_read(settings, output)) if m.key == key]
            return got if len(got) == n else None
        return check
    wait_for(outputs(b"e", 2), timeout=60, what="e/1 and e/3 in the output")
    wait_for(lambda: len(asyncio.run(_read(settings, dlq))) == 2, timeout=60, what="two records in the DLQ")
    flag.unlink()  # the transform is fixed

    report = redrive_dlq(settings, dlq, DlqFilter(reason="transform-error"), mode=RedriveMode.EXECUTE,
                         redrive_id="bugfix")
    assert report.sent == 2
    assert wait_for(outputs(b"e", 3), timeout=60, what="e/2 in the output") == [1, 3, 2]
    assert wait_for(outputs(b"f", 1), timeout=60, what="f/1 in the output") == [1]
    # the same id again sends nothing; a new id re-sends, and the sequence tracker drops the duplicates
    assert redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="bugfix").sent == 0
    again = redrive_dlq(settings, dlq, DlqFilter(), mode=RedriveMode.EXECUTE, redrive_id="bugfix-2")
    assert again.sent == 2
    landed = [m for m in asyncio.run(_read(settings, source)) if dict(m.headers).get("streamlake.redrive.id")]
    assert len(landed) == 4  # both redrives reached the source topic

    def duplicates_dropped():
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/streamlake/counters", timeout=5) as resp:
            data = orjson.loads(resp.read())
        return data.get("lab.flaky", {}).get("dropped_duplicates", 0) >= 2
    wait_for(duplicates_dropped, timeout=60, what="the second redrive's copies to be dropped as duplicates")
    assert outputs(b"e", 3)() == [1, 3, 2] and outputs(b"f", 1)() == [1]
