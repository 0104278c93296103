"""A local multi-node KRaft cluster on loopback, run from the same cached jars as the single broker.

Invariants:

* Every node is a *combined* broker and controller (``process.roles=broker,controller``) and
  all nodes are voters of the one controller quorum: three nodes are three JVMs, not six, and
  losing any one node keeps both a metadata quorum (2 of 3) and an in-sync replica set.
* State lives in ``<data-dir>/cluster.json``; node *i* keeps its storage, properties and log
  under ``<data-dir>/node-<i>/``. Ports are chosen once at start and kept for restarts, so a
  restarted node rejoins under the address clients already know.
* Only loopback is bound (client, inter-broker and controller listeners).
* A secured cluster (:class:`ClusterSecurity`) speaks SASL_SSL (SCRAM-SHA-512) to clients and
  mutual TLS between nodes; SCRAM users are created at format time from *salted* credentials,
  so no client password is ever passed to Kafka or written under the data dir.

Over 300 lines: node properties, storage format, launch, readiness and the kill/restart
commands share the cluster state file and its security; one module keeps them in step.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BrokerError
from .local import (
    DEFAULT_KAFKA_VERSION,
    HOST,
    LOG_FILE,
    READY_LINE,
    accepts_connections,
    free_port,
    log_since,
    process_alive,
    require_tool,
    resolve_jars,
    tail,
)

__all__ = [
    "CLUSTER_STATE_FILE", "ClusterSecurity", "ClusterState", "NodeState", "ScramUser",
    "cluster_status", "is_cluster", "kill_node", "node_properties", "restart_node", "scram_user", "start_cluster",
    "stop_cluster",
]

CLUSTER_STATE_FILE = "cluster.json"
SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 credential as the broker stores it: salted, never the password itself."""

    name: str
    salt: str  # base64
    salted_password: str  # base64
    iterations: int = _SCRAM_ITERATIONS

    def format_argument(self) -> str:
        """The ``--add-scram`` value of Kafka's storage tool."""
        return (f'{SCRAM_MECHANISM}=[name={self.name},salt="{self.salt}",'
                f'saltedpassword="{self.salted_password}",iterations={self.iterations}]')


def scram_user(name: str, password: str, iterations: int = _SCRAM_ITERATIONS) -> ScramUser:
    """Salt *password* the way Kafka's ScramFormatter does (RFC 5802 Hi() with HMAC-SHA-512)."""
    salt = secrets.token_bytes(24)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return ScramUser(name, base64.b64encode(salt).decode(), base64.b64encode(salted).decode(), iterations)


@dataclass(frozen=True)
class ClusterSecurity:
    """What a SASL_SSL cluster needs: the nodes' TLS identity, the CA, users and super users.

    ``keystore_pem`` holds the nodes' private key (PKCS#8, unencrypted) followed by their
    certificate chain; its certificate must name 127.0.0.1 in its subject alternative names.
    The nodes authenticate each other with it (mutual TLS on the inter-broker and controller
    listeners), so its subject is a super user. ``admin_principals`` are further super users,
    e.g. ``User:CN=streamlake-admin`` for an operator's TLS client certificate on the
    controller listener (``kafka-acls --bootstrap-controller``).
    """

    keystore_pem: str
    ca_pem: str
    node_principal: str
    users: tuple[ScramUser, ...] = ()
    admin_principals: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"keystore_pem": self.keystore_pem, "ca_pem": self.ca_pem, "node_principal": self.node_principal,
                "users": [u.name for u in self.users], "admin_principals": list(self.admin_principals)}


@dataclass(frozen=True)
class NodeState:
    node_id: int
    pid: int
    port: int
    controller_port: int
    internal_port: int
    data_dir: str

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def controller(self) -> str:
        return f"{HOST}:{self.controller_port}"

    @property
    def log_file(self) -> str:
        return str(Path(self.data_dir) / LOG_FILE)

    @property
    def properties(self) -> Path:
        return Path(self.data_dir) / "server.properties"


@dataclass(frozen=True)
class ClusterState:
    cluster_id: str
    kafka_version: str
    data_dir: str
    heap: str
    nodes: tuple[NodeState, ...]
    security: dict[str, Any] | None = field(default=None)

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated (aiokafka, Kafka tools)."""
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def url(self) -> str:
        """The ``STREAMLAKE_BROKER`` value: one ``kafka://`` URL per node, ``;``-separated."""
        return ";".join(f"kafka://{n.bootstrap}" for n in self.nodes)

    @property
    def controllers(self) -> str:
        return ",".join(n.controller for n in self.nodes)

    def node(self, node_id: int) -> NodeState:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise BrokerError(f"no node {node_id} in the cluster at {self.data_dir}; "
                          f"nodes are {', '.join(str(n.node_id) for n in self.nodes)}")

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        data["nodes"] = tuple(NodeState(**n) for n in data["nodes"])
        return cls(**data)


def is_cluster(data_dir: str | Path) -> bool:
    """Whether *data_dir* holds a cluster started by :func:`start_cluster`."""
    return (Path(data_dir).resolve() / CLUSTER_STATE_FILE).exists()


def _read_cluster(data_dir: Path) -> ClusterState | None:
    path = data_dir / CLUSTER_STATE_FILE
    if not path.exists():
        return None
    try:
        return ClusterState.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise BrokerError(f"{path} is unreadable ({exc}); stop the nodes by hand and remove it") from exc


def _write_cluster(state: ClusterState) -> None:
    (Path(state.data_dir) / CLUSTER_STATE_FILE).write_text(state.to_json())


def _random_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints: URL-safe base64 of a UUID, never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def node_properties(node: NodeState, nodes: Sequence[NodeState], security: ClusterSecurity | None) -> str:
    n = len(nodes)
    voters = ",".join(f"{o.node_id}@{HOST}:{o.controller_port}" for o in nodes)
    min_isr = 2 if n >= 3 else 1
    lines = [
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        "controller.listener.names=CONTROLLER",
        f"log.dirs={Path(node.data_dir) / 'kraft-logs'}",
        f"default.replication.factor={n}",
        f"offsets.topic.replication.factor={n}",
        "offsets.topic.num.partitions=8",
        f"transaction.state.log.replication.factor={n}",
        f"transaction.state.log.min.isr={min_isr}",
        "transaction.state.log.num.partitions=8",
        f"share.coordinator.state.topic.replication.factor={n}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "num.partitions=1",
        "unclean.leader.election.enable=false",
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=2000",
        "log.cleaner.dedupe.buffer.size=8388608",
        "num.network.threads=2",
        "num.io.threads=3",
        "num.replica.fetchers=1",
        "num.recovery.threads.per.data.dir=1",
        "background.threads=3",
        "message.max.bytes=4194304",
        "replica.fetch.max.bytes=4194304",
        # a SIGKILLed node is fenced (its partitions get new leaders) after this long without heartbeats
        "broker.session.timeout.ms=6000",
        "broker.heartbeat.interval.ms=1000",
        "controller.quorum.election.timeout.ms=1000",
        "controller.quorum.fetch.timeout.ms=2000",
        f"auto.create.topics.enable={os.environ.get('STREAMLAKE_BROKER_AUTO_CREATE', 'true')}",
    ]
    if security is None:
        lines += [
            f"listeners=CLIENT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
            f"advertised.listeners=CLIENT://{HOST}:{node.port}",
            "inter.broker.listener.name=CLIENT",
            "listener.security.protocol.map=CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    else:
        supers = ";".join((security.node_principal, *security.admin_principals))
        scram = SCRAM_MECHANISM.lower()
        lines += [
            f"listeners=CLIENT://{HOST}:{node.port},INTERNAL://{HOST}:{node.internal_port},"
            f"CONTROLLER://{HOST}:{node.controller_port}",
            f"advertised.listeners=CLIENT://{HOST}:{node.port},INTERNAL://{HOST}:{node.internal_port}",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.client.{scram}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            # nodes prove who they are to each other with their certificate
            "listener.name.internal.ssl.client.auth=required",
            "listener.name.controller.ssl.client.auth=required",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={security.keystore_pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={security.ca_pem}",
            "ssl.endpoint.identification.algorithm=https",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users={supers}",
        ]
    return "\n".join(lines) + "\n"


def _java(libs: Path) -> list[str]:
    log4j = resources.files(__package__).joinpath("log4j2.properties")
    return ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]


def _format_storage(libs: Path, nodes: Sequence[NodeState], cluster_id: str,
                    security: ClusterSecurity | None) -> None:
    """Format every node's storage in parallel; SCRAM users go into the bootstrap metadata."""
    scram = [arg for user in (security.users if security else ()) for arg in ("--add-scram", user.format_argument())]
    procs = [
        (node, subprocess.Popen(
            [*_java(libs), "-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "kafka.tools.StorageTool",
             "format", "-t", cluster_id,
             "-c", str(node.properties), "--ignore-formatted", *scram],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for node in nodes if not (Path(node.data_dir) / "kraft-logs" / "meta.properties").exists()
    ]
    failures = []
    for node, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"node {node.node_id}:\n{tail(out, 20)}")
    if failures:
        raise BrokerError("formatting KRaft storage failed for " + "\n".join(failures))


def _launch(libs: Path, node: NodeState, heap: str) -> subprocess.Popen[bytes]:
    with open(node.log_file, "ab") as log:
        return subprocess.Popen(
            # C1 only: three JVMs compiling with C2 at once starve a two-core machine for tens of
            # seconds at start; a local cluster needs quick starts more than peak throughput
            [*_java(libs), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true", "kafka.Kafka", str(node.properties)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # the nodes outlive the CLI that started them
        )


def _wait_ready(started: Sequence[tuple[NodeState, subprocess.Popen[bytes], int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(started)
    while pending:
        for item in list(pending):
            node, proc, offset = item
            text = log_since(Path(node.log_file), offset)
            if READY_LINE in text and accepts_connections(node.port):
                pending.remove(item)
            elif proc.poll() is not None:
                raise BrokerError(f"node {node.node_id} exited during start (exit {proc.returncode}); "
                                  f"tail of {node.log_file}:\n{tail(text)}")
        if pending and time.monotonic() > deadline:
            node = pending[0][0]
            raise BrokerError(f"node {node.node_id} was not ready after {timeout:.0f}s; tail of {node.log_file}:\n"
                              f"{tail(log_since(Path(node.log_file), pending[0][2]))}")
        if pending:
            time.sleep(0.2)


def start_cluster(
    nodes: int = 3,
    data_dir: str | Path = ".streamlake/broker",
    port: int = 0,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    security: ClusterSecurity | None = None,
    heap: str | None = None,
    timeout: float = 180.0,
) -> ClusterState:
    """Start *nodes* combined broker+controller nodes on 127.0.0.1 and wait until all are ready.

    *port* 0 picks free ports; otherwise node *i* listens on ``port + i - 1``. The heap per
    node is *heap*, ``STREAMLAKE_CLUSTER_HEAP`` or 320m. Raises :class:`BrokerError` with a
    message that says what to do when anything is off.
    """
    if nodes < 1:
        raise BrokerError(f"--nodes must be at least 1, got {nodes}")
    data_dir = Path(data_dir).resolve()
    existing = _read_cluster(data_dir)
    if existing and _node_pids(existing.nodes):
        raise BrokerError(f"a cluster is already running from {data_dir} ({existing.bootstrap}); use it, or stop it "
                          f"first with: streamlake broker stop --data-dir {data_dir}")
    require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    libs = resolve_jars(kafka_version)
    heap = heap or os.environ.get("STREAMLAKE_CLUSTER_HEAP", "320m")
    node_states = tuple(
        NodeState(i, 0, (port + i - 1) if port else free_port(), free_port(), free_port() if security else 0,
                  str(data_dir / f"node-{i}"))
        for i in range(1, nodes + 1)
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    for node in node_states:
        Path(node.data_dir).mkdir(parents=True, exist_ok=True)
        node.properties.write_text(node_properties(node, node_states, security))
    cluster_id = existing.cluster_id if existing else _random_cluster_id()
    _format_storage(libs, node_states, cluster_id, security)
    started = []
    for node in node_states:
        offset = Path(node.log_file).stat().st_size if Path(node.log_file).exists() else 0
        started.append((node, _launch(libs, node, heap), offset))
    state = ClusterState(cluster_id, kafka_version, str(data_dir), heap,
                         tuple(NodeState(**{**asdict(n), "pid": p.pid}) for n, p, _ in started),
                         security.as_dict() if security else None)
    _write_cluster(state)
    try:
        _wait_ready(started, timeout)
    except BrokerError:
        stop_cluster(data_dir, timeout=10)
        raise
    return state


def _require_cluster(data_dir: str | Path) -> ClusterState:
    state = _read_cluster(Path(data_dir).resolve())
    if state is None:
        raise BrokerError(f"no cluster was started from {Path(data_dir).resolve()}; "
                          "start one with: streamlake broker start --nodes 3 --data-dir DIR")
    return state


def _node_pids(nodes: Sequence[NodeState]) -> list[int]:
    """The pids that still run *nodes*; a recorded pid the OS gave to another process is left alone."""
    pids = []
    for node in nodes:
        try:
            cmdline = Path(f"/proc/{node.pid}/cmdline").read_bytes()
        except OSError:
            cmdline = None
        if process_alive(node.pid) and (cmdline is None or str(node.properties).encode() in cmdline):
            pids.append(node.pid)
    return pids


def _signal_and_wait(pids: Sequence[int], sig: int, timeout: float) -> list[int]:
    """Send *sig* to each live pid and wait; return the pids still alive after *timeout*."""
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if process_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if process_alive(p)]
    return alive


def stop_cluster(data_dir: str | Path = ".streamlake/broker", timeout: float = 60.0) -> ClusterState | None:
    """Stop every node (SIGTERM in parallel, SIGKILL after *timeout*); return the state, or None."""
    data_dir = Path(data_dir).resolve()
    state = _read_cluster(data_dir)
    if state is None:
        return None
    left = _signal_and_wait(_node_pids(state.nodes), signal.SIGTERM, timeout)
    _signal_and_wait(left, signal.SIGKILL, 10)
    (data_dir / CLUSTER_STATE_FILE).unlink(missing_ok=True)
    return state


def kill_node(data_dir: str | Path, node_id: int) -> NodeState:
    """SIGKILL one node (no controlled shutdown), as a crash would; the cluster state keeps its ports."""
    node = _require_cluster(data_dir).node(node_id)
    if not _node_pids([node]):
        raise BrokerError(f"node {node_id} is not running; start it with: streamlake broker restart {node_id}")
    _signal_and_wait([node.pid], signal.SIGKILL, 10)
    return node


def restart_node(data_dir: str | Path, node_id: int, timeout: float = 180.0) -> NodeState:
    """Stop node *node_id* cleanly if it runs, then start it again on its ports and data dir."""
    state = _require_cluster(data_dir)
    node = state.node(node_id)
    if _signal_and_wait(_node_pids([node]), signal.SIGTERM, 120):  # a controlled shutdown hands leadership over
        _signal_and_wait([node.pid], signal.SIGKILL, 10)
    offset = Path(node.log_file).stat().st_size if Path(node.log_file).exists() else 0
    proc = _launch(resolve_jars(state.kafka_version), node, state.heap)
    restarted = NodeState(**{**asdict(node), "pid": proc.pid})
    nodes = tuple(restarted if n.node_id == node_id else n for n in state.nodes)
    _write_cluster(ClusterState(**{**asdict(state), "nodes": nodes}))
    _wait_ready([(restarted, proc, offset)], timeout)
    return restarted


def cluster_status(data_dir: str | Path = ".streamlake/broker") -> dict[str, Any]:
    """What ``streamlake broker status`` reports for a cluster: one entry per node."""
    data_dir = Path(data_dir).resolve()
    state = _read_cluster(data_dir)
    if state is None:
        return {"running": False, "data_dir": str(data_dir)}
    nodes = []
    for n in state.nodes:
        running = bool(_node_pids([n]))
        nodes.append({"node_id": n.node_id, "running": running, "accepting": running and accepts_connections(n.port),
                      "pid": n.pid, "bootstrap": n.bootstrap, "controller": n.controller,
                      "roles": ["broker", "controller"], "data_dir": n.data_dir, "log_file": n.log_file})
    return {
        "running": any(n["running"] for n in nodes),
        "nodes_running": sum(1 for n in nodes if n["running"]),
        "bootstrap": state.url,
        "cluster_id": state.cluster_id,
        "kafka_version": state.kafka_version,
        "secured": state.security is not None,
        "data_dir": state.data_dir,
        "nodes": nodes,
    }
