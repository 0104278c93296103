"""Credentials never leak, and everything listens on loopback only.

A worker and several CLI commands run with SASL settings from the environment
against a broker that does not speak SASL (so every connection fails: the
error paths are where a secret tends to leak). The unique secret must then
appear in no output, no log and no file under the worker's data dir or the
test's tmp dir.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import subprocess
import sys
from pathlib import Path

from streamlake.config import load_settings
from streamlake.runtime.factory import faust_settings
from tests.kafka_fixtures import ROOT, WorkerProcess, wait_for

CLI_COMMANDS = [
    ["topics", "list"],
    ["topics", "plan"],
    ["status"],
    ["status", "--json"],
    ["dlq", "stats"],
    ["broker", "status"],
]


def leaks(secret: str, text: bytes) -> list[str]:
    forms = {secret.encode(), base64.b64encode(secret.encode()), base64.b64encode(b"\0u\0" + secret.encode()),
             secret.encode().hex().encode(), repr(secret).encode()}
    return [f.decode() for f in forms if f in text]


def test_sasl_secret_appears_in_no_output_log_or_file(test_env, worker_factory, tmp_path):
    secret = "s3cr3t-" + secrets.token_hex(16)
    sasl = dict(STREAMLAKE_SECURITY_PROTOCOL="SASL_PLAINTEXT", STREAMLAKE_SASL_MECHANISM="PLAIN",
                STREAMLAKE_SASL_USERNAME="u", STREAMLAKE_SASL_PASSWORD=secret)
    checked: dict[str, int] = {}

    # The settings never show it, not even in repr.
    settings = test_env.settings(**sasl)
    assert settings.security.sasl_password == secret
    for text in (repr(settings), str(settings), repr(settings.security), repr(faust_settings(settings))):
        assert not leaks(secret, text.encode()), text

    # A worker: Faust's banner, start-up, connection errors, at info and at debug level.
    worker = worker_factory("sasl", wait=False, **sasl)
    debug_log = tmp_path / "sasl-debug.log"
    env = test_env.environ(**sasl, STREAMLAKE_WEB_PORT="0", STREAMLAKE_DATADIR=str(tmp_path / "sasl-debug-data"))
    with open(debug_log, "wb") as log:
        debug = subprocess.Popen([sys.executable, "-m", "faust", "-A", "streamlake.app", "worker", "-l", "debug"],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    try:
        # wait until both have tried (and failed) to talk SASL to the broker, or given up
        def tried(text: str, proc) -> bool:
            return proc.poll() is not None or any(w in text for w in ("IllegalSaslState", "SaslHandShake",
                                                                       "SaslAuthenticat", "AuthenticationFailed"))
        wait_for(lambda: tried(worker.log(), worker.proc) and tried(debug_log.read_text(errors="replace"), debug),
                 timeout=90, what="the workers to attempt a SASL connection")
    finally:
        worker.stop(timeout=20)
        WorkerProcess("sasl-debug", debug, debug_log).stop(timeout=20)

    # CLI commands (errors included).
    outputs: list[tuple[str, bytes]] = []
    for args in CLI_COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "streamlake", *args], cwd=ROOT, env=test_env.environ(**sasl),
                              capture_output=True, timeout=120)
        outputs.append((" ".join(args), proc.stdout + proc.stderr))
    for name, out in outputs:
        assert not leaks(secret, out), f"`streamlake {name}` printed the secret:\n{out.decode(errors='replace')}"
        checked[f"output of streamlake {name}"] = len(out)

    # Every file the worker or the commands wrote: logs, data dirs, anything under the test's tmp dir.
    roots = {Path(test_env.tmp), tmp_path}  # the workers' data dirs and logs live here
    files = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert not leaks(secret, data), f"{path} holds the secret"
        checked[str(path)] = len(data)
    assert worker.log_path in files and debug_log in files
    assert any("sasl-data" in str(p) for p in files) or (Path(test_env.tmp) / "sasl-data").is_dir()
    print(f"\n[credentials] secret searched in {len(checked)} outputs and files "
          f"({sum(checked.values())} bytes, worker logs at info and debug level): not found", flush=True)


def listening(port: int) -> set[str]:
    """Local addresses in LISTEN state on *port*, from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            addr, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
                else:  # four little-endian 32-bit words
                    raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8))
                    ip = ipaddress.IPv6Address(raw)
                    found.add(str(ip.ipv4_mapped or ip))
    return found


def test_broker_and_worker_web_bind_to_loopback(dedicated_broker, test_env, worker_factory, tmp_path):
    # The embedded broker: configured and actually listening on 127.0.0.1 only.
    broker = dedicated_broker()
    props = (Path(broker.state.data_dir) / "server.properties").read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{broker.state.port},CONTROLLER://127.0.0.1:" in props
    assert f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker.state.port}" in props
    assert listening(broker.state.port) == {"127.0.0.1"}
    assert listening(broker.state.controller_port) == {"127.0.0.1"}

    # The worker web server by default: no --web-host flag, settings from the default environment's file.
    assert load_settings(env="dev", root=ROOT, environ={}).web_host == "127.0.0.1"
    conf = faust_settings(load_settings(env="dev", root=ROOT, environ={}))
    assert conf["web_bind"] == "127.0.0.1" and conf["web_host"] == "127.0.0.1"
    env = test_env.environ(STREAMLAKE_DATADIR=str(tmp_path / "web-data"))
    env.pop("STREAMLAKE_WEB_HOST", None)
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlake", "worker", "-l", "info", "--web-port", "0"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    worker = WorkerProcess("web", proc, log_path)
    try:
        worker.wait_ready(timeout=90)
        port = worker.web_port  # --web-port 0: the port the worker bound, from its log
        assert listening(port) == {"127.0.0.1"}
    finally:
        worker.stop(timeout=30)
    print(f"\n[loopback] broker {broker.state.port} and controller {broker.state.controller_port}: 127.0.0.1 only; "
          f"worker web {port}: 127.0.0.1 only", flush=True)
