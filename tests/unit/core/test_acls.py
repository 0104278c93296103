"""The app's ACL grants and the kafka-acls commands that add them."""

from __future__ import annotations

import pytest

from streamlake.core.acls import PatternType, ResourceType, acl_grants, kafka_acls_command, render_command

TOPICS = ("p.sales.orders.raw.v1", "p.sales.orders.valid.v1", "p.sales.orders.raw.v1.dlq",
          "p.sales.orders.raw.v1.retry")


def test_grants_cover_catalog_topics_literally_and_app_resources_by_prefix():
    grants = acl_grants("User:ingest", TOPICS, "orders-app")
    by_type = {(g.resource_type, g.pattern_type): g for g in grants}
    assert by_type[(ResourceType.TOPIC, PatternType.LITERAL)].names == TOPICS
    assert by_type[(ResourceType.TOPIC, PatternType.PREFIXED)].names == ("orders-app-",)
    assert by_type[(ResourceType.GROUP, PatternType.PREFIXED)].names == ("orders-app",)
    assert by_type[(ResourceType.TRANSACTIONAL_ID, PatternType.PREFIXED)].names == ("orders-app",)
    assert {g.principal for g in grants} == {"User:ingest"}
    assert "Write" not in by_type[(ResourceType.GROUP, PatternType.PREFIXED)].operations


def test_command_names_every_operation_and_resource_once():
    grant = acl_grants("User:ingest", TOPICS, "orders-app")[0]
    args = kafka_acls_command(grant, "b1:9094,b2:9094", "admin.properties")
    assert args[:5] == ["kafka-acls.sh", "--bootstrap-server", "b1:9094,b2:9094",
                        "--command-config", "admin.properties"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--topic"] == list(TOPICS)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--operation"] == list(grant.operations)
    assert args[args.index("--resource-pattern-type") + 1] == "literal"
    assert "'*'" in render_command(args)  # the any-host wildcard is quoted for the shell


def test_controller_bootstrap_and_no_command_config():
    grant = acl_grants("User:ingest", TOPICS, "orders-app")[2]
    args = kafka_acls_command(grant, "c1:9093", bootstrap_controller=True)
    assert args[1:3] == ["--bootstrap-controller", "c1:9093"] and "--command-config" not in args
    assert args[-2:] == ["--group", "orders-app"]


@pytest.mark.parametrize("principal", ["ingest", "User:", "Group:ops"])
def test_principal_must_be_a_user(principal):
    with pytest.raises(ValueError, match="User:<name>"):
        acl_grants(principal, TOPICS, "orders-app")
