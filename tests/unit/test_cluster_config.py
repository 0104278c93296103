"""What a local cluster node is configured with (no JVM started)."""

from __future__ import annotations

import base64
import hashlib

from streamlake.broker.cluster import ClusterSecurity, NodeState, node_properties, scram_user


def nodes(secured: bool) -> tuple[NodeState, ...]:
    return tuple(NodeState(i, 0, 9000 + i, 9100 + i, 9200 + i if secured else 0, f"/tmp/c/node-{i}")
                 for i in (1, 2, 3))


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_every_node_is_broker_and_voter_on_loopback_with_replicated_internal_topics():
    three = nodes(False)
    p = props(node_properties(three[1], three, None))
    assert p["process.roles"] == "broker,controller" and p["node.id"] == "2"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert p["listeners"] == "CLIENT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert p["offsets.topic.replication.factor"] == "3" and p["transaction.state.log.min.isr"] == "2"
    assert p["unclean.leader.election.enable"] == "false"


def test_secured_node_speaks_sasl_ssl_to_clients_and_mutual_tls_between_nodes():
    three = nodes(True)
    security = ClusterSecurity("/k/node.pem", "/k/ca.pem", "User:CN=node", (scram_user("app", "p4ss-never-written"),),
                               ("User:CN=admin",))
    p = props(node_properties(three[0], three, security))
    assert p["listener.security.protocol.map"] == "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert all(address.startswith(("CLIENT://127.0.0.1:", "INTERNAL://127.0.0.1:", "CONTROLLER://127.0.0.1:"))
               for address in p["listeners"].split(","))
    assert p["listener.name.internal.ssl.client.auth"] == p["listener.name.controller.ssl.client.auth"] == "required"
    assert p["super.users"] == "User:CN=node;User:CN=admin"
    assert p["allow.everyone.if.no.acl.found"] == "false"
    assert "p4ss-never-written" not in node_properties(three[0], three, security)


def test_scram_user_holds_a_salted_password_kafka_can_verify():
    user = scram_user("app", "s3cret", iterations=4096)
    salt = base64.b64decode(user.salt)
    assert base64.b64decode(user.salted_password) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 4096)
    assert "s3cret" not in user.format_argument()
    assert user.format_argument().startswith('SCRAM-SHA-512=[name=app,salt="')
