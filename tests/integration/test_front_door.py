"""StreamLake's front door, as a user meets it: its own help, bad settings in one line, worker options honoured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.kafka_fixtures import ROOT, WEB_LISTENING, wait_for


def streamlake(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from streamlake.app import main; main()", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=240)


def test_help_describes_streamlake_lists_its_commands_first_and_hides_fausts_unrelated_ones() -> None:
    result = streamlake("--help")
    assert result.returncode == 0, result.stderr
    assert "StreamLake: Kafka ingestion topologies on Faust." in result.stdout
    assert "Welcome, see list of commands" not in result.stdout
    section = result.stdout.split("Commands:")[1].splitlines()
    commands = [line.split()[0] for line in section if line.startswith("  ") and not line.startswith("   ")]
    assert commands[:10] == ["worker", "status", "topics", "dlq", "replay", "produce", "produce-sample", "console",
                             "demo", "broker"]
    for hidden in ("livecheck", "model", "models", "clean-versions"):
        assert hidden not in commands


def test_help_does_not_build_the_app_so_a_bad_setting_cannot_break_it() -> None:
    result = streamlake("--help", STREAMLAKE_ENV="no-such-env")
    assert result.returncode == 0, result.stderr
    assert "StreamLake" in result.stdout


def test_a_bad_setting_is_one_error_line_and_a_non_zero_exit() -> None:
    result = streamlake("worker", STREAMLAKE_ENV="no-such-env")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: no settings file")
    assert "STREAMLAKE_ENV='no-such-env'" in result.stderr and "known environments: cluster, dev, test" in result.stderr


def test_faust_entry_point_reports_a_bad_setting_the_same_way() -> None:
    result = subprocess.run([sys.executable, "-m", "faust", "-A", "streamlake.app", "worker"], cwd=ROOT,
                            env={**os.environ, "STREAMLAKE_WEB_PORT": "not-a-port"}, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 2
    assert result.stderr.startswith("error: STREAMLAKE_WEB_PORT='not-a-port'") and "Traceback" not in result.stderr


def test_datadir_option_is_honoured_and_a_second_rocksdb_worker_on_it_is_refused(test_env, tmp_path) -> None:
    datadir = tmp_path / "shared-data"
    env = test_env.environ(STREAMLAKE_STORE="rocksdb://")
    env.pop("STREAMLAKE_DATADIR", None)
    first_log = tmp_path / "first.log"
    with open(first_log, "wb") as log:
        first = subprocess.Popen([sys.executable, "-m", "streamlake", "--datadir", str(datadir), "worker", "-l", "info",
                                  "--web-port", "0"], cwd=ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: first.poll() is not None or "Ready" in first_log.read_text(errors="replace"), timeout=180,
                 what="the first worker to be ready")
        banner = first_log.read_text(errors="replace")
        assert first.poll() is None, banner[-3000:]
        assert str(datadir) in banner  # the worker runs on the data dir the option named
        listening = WEB_LISTENING.search(banner)  # --web-port 0: any free port, and the log names it
        assert listening is not None and int(listening.group(1)) > 0, banner[-3000:]
        second = subprocess.run([sys.executable, "-m", "streamlake", "--datadir", str(datadir), "worker", "-l", "info",
                                 "--web-port", "0"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=240)
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.startswith(f"error: the data dir {datadir.resolve()} is in use by another worker")
        assert "DB for partition" not in second.stdout + second.stderr
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGTERM)
            first.wait(60)
