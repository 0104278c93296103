"""`streamlake broker start|stop|status`: the embedded default, through the real CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from streamlake.broker import local

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamlake", "broker", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_start_stop_start_stop_reuses_the_jar_cache(tmp_path):
    data = str(tmp_path / "b")
    first = cli("start", "--port", "0", "--data-dir", data)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip().splitlines()[-1]
    assert url.startswith("kafka://127.0.0.1:")
    try:
        status = cli("status", "--data-dir", data, "--json")
        info = json.loads(status.stdout)
        assert status.returncode == 0 and info["running"] and info["accepting"]
        assert info["bootstrap"] == url.removeprefix("kafka://")
        again = cli("start", "--port", "0", "--data-dir", data)
        assert again.returncode == 1 and "already running" in again.stderr and "broker stop" in again.stderr
    finally:
        stopped = cli("stop", "--data-dir", data)
    assert stopped.returncode == 0 and "stopped broker" in stopped.stdout
    assert cli("status", "--data-dir", data).returncode == 1

    began = time.monotonic()
    second = cli("start", "--port", "0", "--data-dir", data)  # storage already formatted, jars cached
    took = time.monotonic() - began
    assert second.returncode == 0, second.stderr
    cli("stop", "--data-dir", data)
    assert "broker ready" in second.stdout
    print(f"second start (cached jars, formatted storage): {took:.1f}s")
    assert cli("stop", "--data-dir", data).stdout.strip() == "no broker was running"


def test_port_in_use_is_refused_with_what_to_do(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = cli("start", "--port", str(port), "--data-dir", str(tmp_path / "b"))
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "--port" in result.stderr


def test_missing_java_and_unknown_version_say_what_to_do(tmp_path):
    no_java = cli("start", "--port", "0", "--data-dir", str(tmp_path / "b"), env={"PATH": str(tmp_path)})
    assert no_java.returncode == 1 and "'java' was not found" in no_java.stderr
    bad = cli("start", "--port", "0", "--data-dir", str(tmp_path / "c"), "--kafka-version", "4.99.0",
              env={"STREAMLAKE_CACHE": str(tmp_path / "cache")})
    assert bad.returncode == 1
    assert "could not resolve Apache Kafka 4.99.0" in bad.stderr and "tail of mvn output" in bad.stderr


def test_broker_that_dies_during_start_shows_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMLAKE_BROKER_HEAP", "1k")  # the JVM refuses to start with this heap
    try:
        local.start_broker(port=0, data_dir=tmp_path / "b", timeout=120)
    except local.BrokerError as exc:
        assert "exited during start" in str(exc)
    else:
        raise AssertionError("a broker with a 1k heap must not start")
