"""Resolve Kafka's jars with Maven, format KRaft storage, run one broker on loopback.

State lives in ``<data-dir>/broker.json`` (pid, ports, version) so ``stop`` and
``status`` never guess. Jars are cached per version under
``$STREAMLAKE_CACHE`` (default ``~/.cache/streamlake``) and reused.

About 300 lines: jar resolution, storage format, start, readiness and stop of the one
broker share its state file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from ..errors import BrokerError

DEFAULT_KAFKA_VERSION = "4.1.1"
READY_LINE = "Kafka Server started"
STATE_FILE = "broker.json"
LOG_FILE = "broker.log"
HOST = "127.0.0.1"

#: log4j must match the log4j-core Kafka pulls in (2.24.x for Kafka 4.0 and 4.1).
_LOG4J_FOR = {"4.0": "2.24.3", "4.1": "2.24.3"}


@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int
    kafka_version: str
    data_dir: str
    log_file: str

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


def cache_root() -> Path:
    return Path(os.environ.get("STREAMLAKE_CACHE", Path.home() / ".cache" / "streamlake"))


def resolve_jars(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Return a folder with every runtime jar of Kafka *version*, resolving it once."""
    libs = cache_root() / "kafka" / version / "libs"
    if (libs / ".complete").exists():
        return libs
    require_tool("mvn", "install Maven (apt-get install maven)")
    require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    libs.mkdir(parents=True, exist_ok=True)
    log4j = _LOG4J_FOR.get(".".join(version.split(".")[:2]), "2.24.3")
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(resources.files(__package__).joinpath("pom.xml").read_text())
        cmd = [
            "mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-Dkafka.version={version}", f"-Dlog4j.version={log4j}",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise BrokerError(
            f"could not resolve Apache Kafka {version} jars with Maven (exit {proc.returncode}).\n"
            f"Check the version exists (4.0.0 ... 4.4.0) and that Maven Central is reachable.\n"
            f"--- tail of mvn output ---\n{tail}"
        )
    (libs / ".complete").write_text(version)
    return libs


def kafka_tool_command(main_class: str, *args: str, version: str = DEFAULT_KAFKA_VERSION) -> list[str]:
    """A java command line that runs one of Kafka's own tools from the cached jars."""
    libs = resolve_jars(version)
    config = resources.files(__package__).joinpath("log4j2.properties")
    return [
        # a short-lived tool: the C1 compiler and serial GC start faster on a busy machine
        "java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={config}",
        "-cp", f"{libs}/*", main_class, *args,
    ]


def require_tool(name: str, how: str) -> None:
    if shutil.which(name) is None:
        raise BrokerError(f"'{name}' was not found on PATH; {how}")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _read_state(data_dir: Path) -> BrokerState | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return BrokerState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def _server_properties(data_dir: Path, port: int, cport: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{HOST}:{cport}",
        f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir / 'kraft-logs'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=8",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=2000",
        "log.cleaner.dedupe.buffer.size=8388608",
        "num.network.threads=2",
        "num.io.threads=4",
        "num.recovery.threads.per.data.dir=1",
        "background.threads=4",
        "message.max.bytes=1048588",
        f"auto.create.topics.enable={os.environ.get('STREAMLAKE_BROKER_AUTO_CREATE', 'true')}",
        "",
    ])


def start_broker(
    port: int = 9092,
    data_dir: str | Path = ".streamlake/broker",
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    timeout: float = 120.0,
) -> BrokerState:
    """Start a single-node KRaft broker on 127.0.0.1 and wait until it is ready.

    *port* 0 picks a free port. Raises :class:`BrokerError` with a message that
    says what to do when anything is off.
    """
    data_dir = Path(data_dir).resolve()
    existing = _read_state(data_dir)
    if existing and process_alive(existing.pid):
        raise BrokerError(
            f"a broker is already running from {data_dir} (pid {existing.pid}, {existing.bootstrap}); "
            f"use it, or stop it first with: streamlake broker stop --data-dir {data_dir}"
        )
    require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    port = port or free_port()
    if not port_free(port):
        raise BrokerError(f"port {port} on {HOST} is in use; pick another with --port N (or stop what holds it)")
    cport = free_port()
    libs = resolve_jars(kafka_version)
    data_dir.mkdir(parents=True, exist_ok=True)
    props = data_dir / "server.properties"
    props.write_text(_server_properties(data_dir, port, cport))
    log_path = data_dir / LOG_FILE
    log4j = resources.files(__package__).joinpath("log4j2.properties")
    java = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
    if not (data_dir / "kraft-logs" / "meta.properties").exists():
        cluster_id = subprocess.run(
            java + ["-Xmx256m", "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True, text=True, check=False,
        ).stdout.strip().splitlines()[-1:]
        fmt = subprocess.run(
            java + ["-Xmx1g", "kafka.tools.StorageTool", "format", "-t", cluster_id[0] if cluster_id else "",
                    "-c", str(props), "--ignore-formatted"],
            capture_output=True, text=True,
        )
        if fmt.returncode != 0:
            tail = "\n".join((fmt.stdout + fmt.stderr).splitlines()[-20:])
            raise BrokerError(f"formatting KRaft storage in {data_dir} failed:\n{tail}")
    heap = os.environ.get("STREAMLAKE_BROKER_HEAP", "512m")
    log_start = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*java, f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true", "kafka.Kafka",
             str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # the broker outlives the CLI that started it
        )
    state = BrokerState(proc.pid, port, cport, kafka_version, str(data_dir), str(log_path))
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    _wait_ready(proc, log_path, start_offset=log_start, timeout=timeout, state=state)
    return state


def _wait_ready(proc: subprocess.Popen, log_path: Path, start_offset: int, timeout: float, state: BrokerState) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_since(log_path, start_offset)
        if READY_LINE in text and accepts_connections(state.port):
            return
        if proc.poll() is not None:
            (Path(state.data_dir) / STATE_FILE).unlink(missing_ok=True)
            raise BrokerError(
                f"the broker exited during start (exit {proc.returncode}); tail of {log_path}:\n{tail(text)}"
            )
        time.sleep(0.2)
    proc.terminate()
    (Path(state.data_dir) / STATE_FILE).unlink(missing_ok=True)
    raise BrokerError(f"the broker was not ready after {timeout:.0f}s; tail of {log_path}:\n"
                      f"{tail(log_since(log_path, start_offset))}")


def log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def stop_broker(data_dir: str | Path = ".streamlake/broker", timeout: float = 60.0) -> BrokerState | None:
    """Stop the broker recorded in *data_dir*; return its state, or None if none ran."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    if state is None:
        return None
    if process_alive(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return state


def broker_status(data_dir: str | Path = ".streamlake/broker") -> dict:
    """What ``streamlake broker status`` reports."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir)
    if state is None:
        return {"running": False, "data_dir": str(data_dir)}
    running = process_alive(state.pid)
    return {
        "running": running,
        "accepting": running and accepts_connections(state.port),
        "pid": state.pid,
        "bootstrap": state.bootstrap,
        "kafka_version": state.kafka_version,
        "data_dir": state.data_dir,
        "log_file": state.log_file,
    }
