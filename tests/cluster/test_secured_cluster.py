"""StreamLake end to end on a SASL_SSL cluster, with only the app's ACLs and env-only credentials.

One test env (its ACLs granted by running the commands ``streamlake topics acls`` prints):
``topics apply`` creates the catalog with replication 3 and min.insync.replicas 2, a worker
(ingestion and DLQ agents) processes a sample load produced with acks=all and idempotence,
the producer SDK sends, a lander lands the valid topic into the lake (verified: every
record once), ``replay window`` and ``dlq redrive`` run, and the table changelogs are
replicated like their sources. Then: a wrong password is a clear error and a non-zero exit within seconds, a
principal without ACLs is refused, and the app's password is in no output, log or file.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.errors import KafkaError

from tests.cluster.conftest import ClusterEnv
from tests.faults.support import topics
from tests.kafka_fixtures import ROOT, read_until, wait_for

# a three-node start and ACL commands take minutes on a loaded machine; one xdist worker runs
# every cluster test, so the session's one cluster serves them all
pytestmark = [pytest.mark.timeout(1200), pytest.mark.xdist_group("cluster")]
WRONG_PASSWORD_DEADLINE = 60.0  # a refused login must end a command well within this (never a hang)


def run_cli(env: ClusterEnv, *args: str, timeout: float = 180, **overrides: str) -> subprocess.CompletedProcess[str]:
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamlake", *args], cwd=ROOT, env=env.environ(**overrides),
                          capture_output=True, text=True, timeout=timeout)
    proc.elapsed = time.monotonic() - began  # type: ignore[attr-defined]
    return proc


def describe(env: ClusterEnv, names: list[str]) -> dict[str, tuple[tuple[int, ...], dict[str, str]]]:
    """Replica count per partition and effective configs per topic, as the app's principal sees them."""
    from streamlake.catalog import load_catalog
    from streamlake.kafka.admin import describe_topic
    from streamlake.topology import discover_streams

    settings = env.settings()
    catalog = load_catalog(settings, discover_streams(settings.topologies_dir))
    out = {}
    for name in names:
        d = asyncio.run(describe_topic(settings, catalog, name))
        assert d.observed is not None, f"{name} does not exist"
        out[name] = (tuple(len(p.replicas) for p in d.partitions), dict(d.observed.config))
    return out


def _verified(env: ClusterEnv, lake_env):  # noqa: ANN202 - a VerifyReport, or None until it holds
    from streamlake.errors import StreamLakeError
    from streamlake.lake.verify import verify_table

    try:
        report = verify_table(env.settings(), lake_env.table, lake_env.lake)
    except StreamLakeError:  # no table until the lander's first commit
        return None
    return report if report.ok and report.records > 0 and report.duplicate_rows == 0 else None


def leaks(secret: str, text: bytes) -> list[str]:
    forms = {secret.encode(), base64.b64encode(secret.encode()), secret.encode().hex().encode(),
             repr(secret).encode()}
    return [f.decode() for f in forms if f in text]


async def produce_with_sdk(env: ClusterEnv, count: int) -> list[tuple[int, int]]:
    """Send *count* valid orders through the producer SDK; return (partition, offset) of each."""
    from streamlake.producer import StreamProducer

    async with StreamProducer.for_stream("sales.orders", env.settings()) as producer:
        deliveries = [await producer.send({"order_id": f"sdk-{i % 5}", "seq": i // 5, "amount": "12.50",
                                           "currency": "EUR", "ts": "2026-12-03T06:00:00Z"})
                      for i in range(count)]
        return [((d := await delivery).partition, d.offset) for delivery in deliveries]


def test_streamlake_runs_end_to_end_on_sasl_ssl_with_only_its_acls(secured_cluster, test_env, worker_factory,
                                                                   lake_env, lander_factory, tmp_path):
    env, secret = test_env, secured_cluster.app_password
    source, output, dlq_topic = topics(env)
    outputs: dict[str, str] = {}

    # topics apply: the catalog's cluster overlay, created by the app's own principal
    applied = run_cli(env, "topics", "apply")
    outputs["topics apply"] = applied.stdout + applied.stderr
    assert applied.returncode == 0, applied.stderr
    described = describe(env, [source, output, dlq_topic])
    for name, (replicas, config) in described.items():
        assert replicas == (3,) * 8, name
        assert config["min.insync.replicas"] == "2", name

    # a worker with its DLQ agents, credentials from the environment only
    worker = worker_factory("secured")
    produced = run_cli(env, "produce-sample", "--stream", "sales.orders", "--events", "300", "--bad-ratio", "0.05",
                       "--json")
    outputs["produce-sample"] = produced.stdout + produced.stderr
    assert produced.returncode == 0, produced.stderr
    expected = orjson.loads(produced.stdout)
    print(f"\n[secured] produce-sample: {expected}", flush=True)
    client = env.client()
    bootstrap = env.settings().bootstrap_servers
    out = asyncio.run(read_until(bootstrap, output, lambda o: len(o) >= 1, timeout=120, client=client))
    dlq = wait_for(lambda: asyncio.run(read_until(bootstrap, dlq_topic, timeout=60, client=client)), timeout=120,
                   what="DLQ records on the secured cluster")
    assert out and dlq

    # the producer SDK (idempotent, acks=all) and a lander, which lands the valid topic into the lake
    sdk = asyncio.run(produce_with_sdk(env, 50))
    assert len(set(sdk)) == 50
    lander = lander_factory("secured-lander")
    landed = wait_for(lambda: _verified(env, lake_env), timeout=180, what="the lake to hold every valid record")
    print(f"[secured] producer SDK sent {len(sdk)}; lake verify: {landed.as_dict()}", flush=True)

    # changelogs are replicated like their sources
    changelog = f"{env.app_id}-{source}.seq-changelog"
    (replicas, config) = describe(env, [changelog])[changelog]
    assert set(replicas) == {3} and config["min.insync.replicas"] == "2"
    assert config["cleanup.policy"] == "compact"

    # replay a window of the source (into the output's namespace: a copy with provenance headers) and redrive the DLQ
    now = datetime.datetime.now(datetime.UTC)
    window = run_cli(env, "replay", "window", "--topic", source, "--start", (now - datetime.timedelta(hours=1))
                     .strftime("%Y-%m-%dT%H:%M:%S.000"), "--end", (now + datetime.timedelta(minutes=5))
                     .strftime("%Y-%m-%dT%H:%M:%S.000"), "--execute", "--json")
    outputs["replay window"] = window.stdout + window.stderr
    assert window.returncode == 0, window.stderr
    redrive = run_cli(env, "dlq", "redrive", "--topic", dlq_topic, "--execute", "--json")
    outputs["dlq redrive"] = redrive.stdout + redrive.stderr
    assert redrive.returncode == 0, redrive.stderr
    print(f"[secured] replay window: {window.stdout.strip()[:300]}\n[secured] dlq redrive: "
          f"{redrive.stdout.strip()[:300]}", flush=True)
    assert lander.proc.poll() is None, lander.log()[-3000:]
    status = run_cli(env, "status", "--json")
    outputs["status --json"] = status.stdout + status.stderr
    assert status.returncode == 0, status.stderr
    assert worker.proc.poll() is None, worker.log()[-3000:]

    # a wrong password: a clear error, a non-zero exit, and soon
    for args in (["topics", "list"], ["replay", "window", "--topic", source, "--start", "2020-01-01T00:00:00.000",
                                      "--end", "2020-01-02T00:00:00.000", "--execute"],
                 ["dlq", "redrive", "--topic", dlq_topic, "--execute"]):
        wrong = run_cli(env, *args, STREAMLAKE_SASL_PASSWORD="not-" + secret, timeout=WRONG_PASSWORD_DEADLINE + 30)
        outputs[f"{' '.join(args)} (wrong password)"] = wrong.stdout + wrong.stderr
        assert wrong.returncode != 0, wrong.stdout
        assert "refused the SASL credentials" in wrong.stderr, wrong.stderr[-2000:]
        assert wrong.elapsed < WRONG_PASSWORD_DEADLINE  # type: ignore[attr-defined]
    bad_worker = worker_factory("wrong-password", wait=False, STREAMLAKE_SASL_PASSWORD="not-" + secret)
    wait_for(lambda: bad_worker.proc.poll() is not None, timeout=WRONG_PASSWORD_DEADLINE,
             what="a worker with a wrong password to exit")
    assert bad_worker.proc.returncode != 0
    assert "refused the SASL credentials" in bad_worker.log()

    # a principal with valid credentials but no ACL is refused: by the brokers and by every command
    intruder = secured_cluster.security_env(secured_cluster.intruder_user, secured_cluster.intruder_password)
    refused = run_cli(env, "topics", "apply", **intruder)
    assert refused.returncode != 0 and "Authorization" in refused.stdout + refused.stderr, refused.stderr[-2000:]
    intruder_client = {**client, "sasl_plain_username": secured_cluster.intruder_user,
                       "sasl_plain_password": secured_cluster.intruder_password}
    with pytest.raises((AssertionError, KafkaError)):  # its consumer sees no topic, or is denied it
        asyncio.run(read_until(bootstrap, source, timeout=10, client=intruder_client))
    intruder_worker = worker_factory("intruder", wait=False, **intruder)
    wait_for(lambda: intruder_worker.proc.poll() is not None, timeout=90, what="the intruder's worker to exit")
    assert intruder_worker.proc.returncode != 0 and "Authorization" in intruder_worker.log()

    # the app's password is in no output, log or file (worker data dirs, the lake, the cluster's data dir)
    worker.stop(timeout=30)
    lander.stop(timeout=30)
    for name, text in outputs.items():
        assert not leaks(secret, text.encode()), f"`streamlake {name}` printed the password"
    roots = [Path(env.tmp), tmp_path, Path(secured_cluster.data_dir)]
    # every file but the brokers' offset indexes (preallocated, sparse: offsets and positions only)
    files = [p for root in roots if root.exists() for p in root.rglob("*")
             if p.is_file() and p.suffix not in (".index", ".timeindex")]
    for path in files:
        assert not leaks(secret, path.read_bytes()), f"{path} holds the password"
    print(f"[secured] password searched in {len(outputs)} outputs and {len(files)} files: not found", flush=True)
