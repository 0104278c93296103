"""The ACLs one StreamLake app needs on a cluster with an authorizer, as ``kafka-acls`` commands.

Invariants:

* One principal (the app's SASL user) gets exactly what workers, DLQ agents, landers, the
  producer SDK, ``topics apply``, ``replay`` and ``dlq redrive`` do, and nothing on anything else:
  the catalog's topics by literal name; the app's internal topics (``<app id>-…``: table
  changelogs) by prefix; its consumer groups (``<app id>``, ``<app id>-land``, ``<app id>-redrive-<id>``) and
  transactional ids (exactly_once producers, redrive) by the app-id prefix.
* No cluster-level grant: idempotent producers need Write on a topic, not IdempotentWrite
  on the cluster (Kafka ≥ 3.0), and topics are created under a Create grant on their name.
* Pure: the catalog's topic names and the app id in, grants and argument lists out.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AclGrant", "PatternType", "ResourceType", "acl_grants", "kafka_acls_command", "render_command"]


class ResourceType(enum.Enum):
    """A Kafka ACL resource type, by its ``kafka-acls`` option name."""

    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional-id"


class PatternType(enum.Enum):
    """How a grant's names match resources (``--resource-pattern-type``)."""

    LITERAL = "literal"
    PREFIXED = "prefixed"


#: catalog topics: consume, produce, and let ``topics apply`` create, reconfigure and grow them
CATALOG_TOPIC_OPERATIONS = ("Read", "Write", "Describe", "DescribeConfigs", "Create", "AlterConfigs", "Alter")
#: table changelogs: created by the worker at start, read on recovery, written per batch
INTERNAL_TOPIC_OPERATIONS = ("Read", "Write", "Describe", "DescribeConfigs", "Create")
GROUP_OPERATIONS = ("Read", "Describe")
TRANSACTIONAL_ID_OPERATIONS = ("Write", "Describe")


@dataclass(frozen=True)
class AclGrant:
    """Allow *principal* the *operations* on resources of one type matched by *names*."""

    principal: str
    resource_type: ResourceType
    pattern_type: PatternType
    names: tuple[str, ...]
    operations: tuple[str, ...]
    why: str

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"principal": self.principal, "resource_type": self.resource_type.value,
                "pattern_type": self.pattern_type.value, "names": list(self.names),
                "operations": list(self.operations), "why": self.why}


def acl_grants(principal: str, catalog_topics: Sequence[str], app_id: str) -> tuple[AclGrant, ...]:
    """Every grant the app *app_id* running as *principal* needs for *catalog_topics*."""
    if not principal.startswith("User:") or len(principal) <= len("User:"):
        raise ValueError(f"principal {principal!r} must look like User:<name> (the SASL user name)")
    return (
        AclGrant(principal, ResourceType.TOPIC, PatternType.LITERAL, tuple(catalog_topics), CATALOG_TOPIC_OPERATIONS,
                 "the catalog's source, output, DLQ and retry topics, and the landers' DLQ topics"),
        AclGrant(principal, ResourceType.TOPIC, PatternType.PREFIXED, (f"{app_id}-",), INTERNAL_TOPIC_OPERATIONS,
                 "the app's internal topics (table changelogs)"),
        AclGrant(principal, ResourceType.GROUP, PatternType.PREFIXED, (app_id,), GROUP_OPERATIONS,
                 "the app's consumer group and its redrive groups"),
        AclGrant(principal, ResourceType.TRANSACTIONAL_ID, PatternType.PREFIXED, (app_id,),
                 TRANSACTIONAL_ID_OPERATIONS, "transactional ids of exactly_once producers and of redrive"),
    )


def kafka_acls_command(grant: AclGrant, bootstrap: str, command_config: str | None = None,
                       bootstrap_controller: bool = False, tool: str = "kafka-acls.sh") -> list[str]:
    """The ``kafka-acls`` argument list that adds *grant* (one command per grant, any host)."""
    args = [tool, "--bootstrap-controller" if bootstrap_controller else "--bootstrap-server", bootstrap]
    if command_config:
        args += ["--command-config", command_config]
    args += ["--add", "--allow-principal", grant.principal, "--allow-host", "*"]
    for operation in grant.operations:
        args += ["--operation", operation]
    args += ["--resource-pattern-type", grant.pattern_type.value]
    for name in grant.names:
        args += [f"--{grant.resource_type.value}", name]
    return args


def render_command(args: Sequence[str]) -> str:
    """One shell-safe line."""
    return shlex.join(args)
