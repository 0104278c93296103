"""One secured three-node cluster per test session, and test envs that run against it.

The cluster speaks SASL_SSL (SCRAM-SHA-512 over TLS) to clients; its certificates come from a
throwaway CA made here. Two SCRAM users exist: the app's (granted ACLs per test env, with the
commands ``streamlake topics acls`` prints) and an intruder's (valid password, no ACL).
Passwords are random per session and passed to StreamLake through the environment only.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamlake.broker import cluster, local
from streamlake.config import Settings, load_settings
from streamlake.kafka.client import client_kwargs
from tests.cluster.certs import TestPki, make_test_pki
from tests.kafka_fixtures import ROOT, TestBroker, TestEnv, worker_factory  # noqa: F401
from tests.lake_fixtures import lake_env, lander_factory  # noqa: F401

ACL_TOOL = "org.apache.kafka.tools.AclCommand"


@dataclass
class SecuredCluster:
    """The session's cluster, its PKI and its users (passwords only in memory)."""

    state: cluster.ClusterState
    pki: TestPki
    admin_config: Path
    app_user: str
    app_password: str = field(repr=False)
    intruder_user: str = "intruder"
    intruder_password: str = field(default="", repr=False)

    @property
    def data_dir(self) -> str:
        return self.state.data_dir

    def refresh(self) -> cluster.ClusterState:
        """Re-read the state file (pids change on restart)."""
        self.state = cluster.ClusterState.from_json((Path(self.data_dir) / cluster.CLUSTER_STATE_FILE).read_text())
        return self.state

    def security_env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """The STREAMLAKE_* variables a client of this cluster needs (the app's user by default)."""
        return {
            "STREAMLAKE_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMLAKE_SASL_MECHANISM": cluster.SCRAM_MECHANISM,
            "STREAMLAKE_SASL_USERNAME": user or self.app_user,
            "STREAMLAKE_SASL_PASSWORD": self.app_password if password is None else password,
            "STREAMLAKE_SSL_CAFILE": str(self.pki.ca_pem),
        }


@pytest.fixture(scope="session")
def secured_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredCluster]:
    base = tmp_path_factory.mktemp("secured-cluster")
    pki = make_test_pki(base / "pki")
    app_user, app_password = f"app-{uuid.uuid4().hex[:6]}", "pw-" + secrets.token_urlsafe(24)
    intruder_password = "pw-" + secrets.token_urlsafe(24)
    security = cluster.ClusterSecurity(
        keystore_pem=str(pki.node_pem), ca_pem=str(pki.ca_pem), node_principal=pki.node_principal,
        users=(cluster.scram_user(app_user, app_password), cluster.scram_user("intruder", intruder_password)),
        admin_principals=(pki.admin_principal,),
    )
    # The operator's admin client: TLS client certificate on the controller listener; no password anywhere.
    admin_config = base / "admin-tls.properties"
    admin_config.write_text("\n".join([
        "security.protocol=SSL", "ssl.keystore.type=PEM", f"ssl.keystore.location={pki.admin_pem}",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={pki.ca_pem}", ""]))
    began = time.monotonic()
    try:
        state = cluster.start_cluster(3, base / "cluster", security=security, timeout=240)
    except Exception as exc:  # the cluster is required: fail loudly, never skip
        pytest.fail(f"could not start the secured 3-node cluster: {exc}", pytrace=False)
    print(f"\n[cluster] 3 nodes ready in {time.monotonic() - began:.1f}s: {state.bootstrap}", flush=True)
    yield SecuredCluster(state, pki, admin_config, app_user, app_password, "intruder", intruder_password)
    cluster.stop_cluster(state.data_dir, timeout=30)


@dataclass
class ClusterEnv(TestEnv):
    """A test env on the secured cluster: STREAMLAKE_ENV=cluster, the app's credentials in the environment."""

    __test__ = False

    cluster: SecuredCluster | None = None

    def settings(self, **overrides: str) -> Settings:
        return load_settings(env="cluster", root=ROOT, environ=self.environ(**overrides))

    def client(self) -> dict[str, Any]:
        """aiokafka connection settings (without the bootstrap list) as the app's principal."""
        kwargs = client_kwargs(self.settings())
        kwargs.pop("bootstrap_servers")
        return kwargs


def grant_app_acls(env: ClusterEnv) -> list[list[str]]:
    """Run exactly the kafka-acls commands ``streamlake topics acls`` prints for *env*; return them."""
    assert env.cluster is not None
    proc = subprocess.run(
        [sys.executable, "-m", "streamlake", "topics", "acls", "--principal", f"User:{env.cluster.app_user}",
         "--bootstrap", env.cluster.state.controllers, "--bootstrap-controller",
         "--command-config", str(env.cluster.admin_config), "--json"],
        cwd=ROOT, env=env.environ(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    commands = [grant["command"] for grant in json.loads(proc.stdout)]

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        assert command[0] == "kafka-acls.sh"
        return subprocess.run(local.kafka_tool_command(ACL_TOOL, *command[1:]), capture_output=True, text=True,
                              timeout=180)

    with ThreadPoolExecutor(len(commands)) as pool:
        for command, done in zip(commands, pool.map(run, commands), strict=True):
            assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return commands


@pytest.fixture
def test_env(secured_cluster: SecuredCluster, tmp_path: Path) -> ClusterEnv:
    """Unique topics and group on the secured cluster, with the app's ACLs granted."""
    tag = uuid.uuid4().hex[:10]
    env = ClusterEnv(broker=TestBroker(secured_cluster.state.url), prefix=f"c{tag}", app_id=f"sl-cluster-{tag}",
                     tmp=tmp_path, cluster=secured_cluster)
    env.extra.update({
        "STREAMLAKE_ENV": "cluster",
        "STREAMLAKE_BROKER": secured_cluster.state.url,
        # fast failover for tests; conf/cluster.toml keeps production-leaning values
        "STREAMLAKE_SESSION_TIMEOUT": "6",
        "STREAMLAKE_COMMIT_INTERVAL": "0.5",
        "STREAMLAKE_REQUEST_TIMEOUT": "15",
        "STREAMLAKE_DLQ_RETRY_BACKOFF": "0.2",
        "STREAMLAKE_DLQ_RETRY_BACKOFF_MAX": "2",
        **secured_cluster.security_env(),
    })
    began = time.monotonic()
    grant_app_acls(env)
    print(f"\n[cluster] ACLs for {env.app_id} granted in {time.monotonic() - began:.1f}s", flush=True)
    return env
