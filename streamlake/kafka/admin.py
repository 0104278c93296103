"""Topic admin against the broker: observe, create, alter configs, add partitions.

The decisions live in the pure :mod:`streamlake.core.topic_plan`; this module only
observes the broker into its types and carries out a plan.

Topics are always observed through a metadata request for *all* topics: asking
for a named topic that does not exist makes a broker with
``auto.create.topics.enable`` create it with default settings.

Over 300 lines: plan, apply and describe share one metadata and config snapshot of the
cluster; they stay together so every command reads the broker the same way.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from ..catalog import Catalog, TopicSpec
from ..config import Settings
from ..core.topic_plan import ChangeKind, ObservedTopic, TopicChange, TopicPlan, plan_topics
from ..errors import BrokerError
from .client import client_kwargs, connection_failure

__all__ = [
    "ClusterState", "PartitionInfo", "TopicDescription", "ApplyOutcome", "ApplyReport",
    "admin_client", "observe_cluster", "list_topic_names", "topic_partition_counts",
    "create_topics", "alter_topic_configs", "create_partitions",
    "plan_catalog", "apply_catalog", "describe_topic",
]

_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs config_source: set on the topic itself
_CONVERGE_TIMEOUT = 30.0


@dataclass(frozen=True)
class ClusterState:
    """What the broker holds: the observed catalog topics, every topic name, the broker count."""

    topics: Mapping[str, ObservedTopic]
    existing_names: tuple[str, ...]
    broker_count: int


@dataclass(frozen=True)
class PartitionInfo:
    """One partition's leader and replicas."""

    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class TopicDescription:
    """A topic as the catalog wants it and as the broker has it (either may be missing)."""

    name: str
    spec: TopicSpec | None
    observed: ObservedTopic | None
    partitions: tuple[PartitionInfo, ...]
    changes: tuple[TopicChange, ...]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {
            "name": self.name,
            "in_catalog": self.spec is not None,
            "exists": self.observed is not None,
            "catalog": self.spec.as_dict() if self.spec else None,
            "broker": self.observed.as_dict() if self.observed else None,
            "partitions": [{"partition": p.partition, "leader": p.leader, "replicas": list(p.replicas),
                            "isr": list(p.isr)} for p in self.partitions],
            "changes": [c.as_dict() for c in self.changes],
        }


class ApplyOutcome(enum.Enum):
    """What ``apply`` did."""

    APPLIED = "applied"
    UP_TO_DATE = "up-to-date"
    REFUSED = "refused"


@dataclass(frozen=True)
class ApplyReport:
    """The plan ``apply`` acted on and what came of it."""

    outcome: ApplyOutcome
    plan: TopicPlan
    applied: tuple[TopicChange, ...]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"outcome": self.outcome.value, "applied": [c.as_dict() for c in self.applied],
                "plan": self.plan.as_dict()}


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """Yield a started admin client; turn connection failures into a :class:`BrokerError`."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=30000)
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise BrokerError(await connection_failure(settings)) from exc
    try:
        yield admin
    except KafkaError as exc:
        raise BrokerError(f"Kafka admin request failed: {type(exc).__name__}: {exc}") from exc
    finally:
        await admin.close()


async def _metadata(admin: AIOKafkaAdminClient) -> dict[str, dict[str, Any]]:
    # All topics, never named ones: a named lookup could auto-create a missing topic.
    return {t["topic"]: t for t in await admin.describe_topics() if t["error_code"] == 0}


async def _configs(admin: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    names = list(names)
    if not names:
        return {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    out: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise BrokerError(f"describing configs of {resource['resource_name']!r} failed: "
                                  f"{for_code(resource['error_code']).__name__}: {resource['error_message']}")
            entries = resource["config_entries"]
            effective = {e["config_names"]: e["config_value"] for e in entries if e["config_value"] is not None}
            overrides = {e["config_names"]: e["config_value"] for e in entries
                         if e.get("config_source") == _DYNAMIC_TOPIC_CONFIG and e["config_value"] is not None}
            out[resource["resource_name"]] = (effective, overrides)
    return out


def _observed(meta: Mapping[str, Any], configs: tuple[dict[str, str], dict[str, str]]) -> ObservedTopic:
    partitions = meta["partitions"]
    return ObservedTopic(
        name=meta["topic"],
        partitions=len(partitions),
        replication_factor=max((len(p["replicas"]) for p in partitions), default=0),
        config=configs[0],
        overrides=configs[1],
    )


async def _observe(admin: AIOKafkaAdminClient, names: Iterable[str]) -> ClusterState:
    meta = await _metadata(admin)
    present = [n for n in dict.fromkeys(names) if n in meta]
    configs = await _configs(admin, present)
    cluster = await admin.describe_cluster()
    return ClusterState(
        topics={n: _observed(meta[n], configs[n]) for n in present},
        existing_names=tuple(sorted(meta)),
        broker_count=len(cluster["brokers"]),
    )


async def observe_cluster(settings: Settings, names: Iterable[str]) -> ClusterState:
    """Return the broker's view of the topics *names* (missing ones are left out)."""
    async with admin_client(settings) as admin:
        return await _observe(admin, names)


async def list_topic_names(settings: Settings) -> list[str]:
    """Return every topic on the broker, sorted."""
    async with admin_client(settings) as admin:
        return sorted(await _metadata(admin))


async def topic_partition_counts(settings: Settings, names: Iterable[str]) -> dict[str, int | None]:
    """Return the partition count of each topic in *names*; None when it does not exist.

    Never creates a topic, even on a broker that auto-creates them.
    """
    async with admin_client(settings) as admin:
        meta = await _metadata(admin)
    return {n: len(meta[n]["partitions"]) if n in meta else None for n in names}


async def _create(admin: AIOKafkaAdminClient, specs: Iterable[TopicSpec]) -> None:
    specs = list(specs)
    if not specs:
        return
    response = await admin.create_topics([
        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config)) for s in specs
    ])
    errors = [(t["topic"], t["error_code"], t["error_message"]) for t in response.to_object()["topic_errors"]
              if t["error_code"] and for_code(t["error_code"]) is not TopicAlreadyExistsError]
    if errors:
        raise BrokerError("creating topics failed: " + "; ".join(
            f"{topic}: {for_code(code).__name__}: {message}" for topic, code, message in errors))


async def create_topics(settings: Settings, specs: Iterable[TopicSpec]) -> None:
    """Create *specs* with their partitions, replication and configs (existing ones are left alone).

    Returns once the broker's metadata shows every partition with a leader.
    """
    specs = list(specs)
    async with admin_client(settings) as admin:
        await _create(admin, specs)
        await _wait_until_led(admin, specs)


async def _wait_until_led(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    # The controller acknowledges a creation before the brokers' metadata has it. A
    # consumer that joins its group in between is assigned none of the topic's
    # partitions, and notices them only at its next metadata refresh (minutes).
    deadline = time.monotonic() + _CONVERGE_TIMEOUT
    while True:
        meta = await _metadata(admin)
        waiting = [s.name for s in specs if not _all_led(meta.get(s.name), s.partitions)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"created topics still have no leader after {_CONVERGE_TIMEOUT:.0f}s: "
                              + ", ".join(waiting) + "; check the brokers with `streamlake topics describe`")
        await asyncio.sleep(0.1)


def _all_led(meta: Mapping[str, Any] | None, partitions: int) -> bool:
    if meta is None or len(meta["partitions"]) < partitions:
        return False
    return all(p["leader"] >= 0 for p in meta["partitions"])


async def _alter(admin: AIOKafkaAdminClient, updates: Mapping[str, Mapping[str, str]],
                 keep: Mapping[str, Mapping[str, str]]) -> None:
    if not updates:
        return
    # AlterConfigs replaces a topic's whole override set: resend the overrides we keep.
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, {**keep.get(name, {}), **values})
                 for name, values in updates.items()]
    errors = []
    for response in await admin.alter_configs(resources):
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                errors.append(f"{resource['resource_name']}: {for_code(resource['error_code']).__name__}: "
                              f"{resource['error_message']}")
    if errors:
        raise BrokerError("altering topic configs failed: " + "; ".join(errors))


async def alter_topic_configs(settings: Settings, updates: Mapping[str, Mapping[str, str]]) -> None:
    """Set the configs in *updates* (topic -> key -> value), keeping each topic's other overrides."""
    async with admin_client(settings) as admin:
        state = await _observe(admin, updates)
        await _alter(admin, updates, {n: t.overrides for n, t in state.topics.items()})


async def _add_partitions(admin: AIOKafkaAdminClient, counts: Mapping[str, int]) -> None:
    if counts:
        await admin.create_partitions({name: NewPartitions(total_count=n) for name, n in counts.items()})


async def create_partitions(settings: Settings, counts: Mapping[str, int]) -> None:
    """Grow each topic in *counts* to that many partitions (the caller decided it is safe)."""
    async with admin_client(settings) as admin:
        await _add_partitions(admin, counts)


async def _plan(admin: AIOKafkaAdminClient, catalog: Catalog, allow_partition_increase: bool) -> tuple[TopicPlan, ClusterState]:
    state = await _observe(admin, catalog.names)
    plan = plan_topics(catalog.topics, state.topics, allow_partition_increase=allow_partition_increase,
                       existing_names=state.existing_names, broker_count=state.broker_count)
    return plan, state


async def plan_catalog(settings: Settings, catalog: Catalog, allow_partition_increase: bool = False) -> TopicPlan:
    """Return what ``apply`` would change to bring the broker in line with *catalog*."""
    async with admin_client(settings) as admin:
        return (await _plan(admin, catalog, allow_partition_increase))[0]


async def apply_catalog(settings: Settings, catalog: Catalog, allow_partition_increase: bool = False) -> ApplyReport:
    """Bring the broker in line with *catalog*, all or nothing, and wait until it shows.

    A plan with any refused change applies nothing (outcome ``REFUSED``); an
    empty plan changes nothing (``UP_TO_DATE``).
    """
    async with admin_client(settings) as admin:
        plan, state = await _plan(admin, catalog, allow_partition_increase)
        if plan.refused:
            return ApplyReport(ApplyOutcome.REFUSED, plan, ())
        if plan.in_sync:
            return ApplyReport(ApplyOutcome.UP_TO_DATE, plan, ())
        todo = plan.to_apply
        await _create(admin, [c.spec for c in todo if c.kind is ChangeKind.CREATE])
        await _add_partitions(admin, {c.topic: c.spec.partitions for c in todo
                                      if c.kind is ChangeKind.INCREASE_PARTITIONS})
        await _alter(admin, {c.topic: {d.key: d.wanted for d in c.drift} for c in todo
                             if c.kind is ChangeKind.ALTER_CONFIG},
                     {n: t.overrides for n, t in state.topics.items()})
        await _converge(admin, catalog, allow_partition_increase)
        return ApplyReport(ApplyOutcome.APPLIED, plan, todo)


async def _converge(admin: AIOKafkaAdminClient, catalog: Catalog, allow_partition_increase: bool) -> None:
    # Creation and config changes reach the brokers' metadata asynchronously;
    # wait so a following command (or a worker) sees the result.
    deadline = time.monotonic() + _CONVERGE_TIMEOUT
    while True:
        plan, _ = await _plan(admin, catalog, allow_partition_increase)
        if plan.in_sync:
            return
        if time.monotonic() > deadline:
            raise BrokerError("the broker accepted the changes but still differs after "
                              f"{_CONVERGE_TIMEOUT:.0f}s: " + "; ".join(f"{c.topic}: {c.reason}" for c in plan.changes)
                              + "; run `streamlake topics plan` to see what is left")
        await asyncio.sleep(0.2)


async def describe_topic(settings: Settings, catalog: Catalog, name: str) -> TopicDescription:
    """Return *name* as the catalog wants it and as the broker has it.

    Raises:
        BrokerError: when the topic is neither in the catalog nor on the broker.
    """
    spec = next((s for s in catalog.topics if s.name == name), None)
    async with admin_client(settings) as admin:
        meta = await _metadata(admin)
        if spec is None and name not in meta:
            raise BrokerError(f"topic {name!r} is neither in the catalog nor on the broker; "
                              "see `streamlake topics list` for the catalog's topics")
        configs = await _configs(admin, [name] if name in meta else [])
    observed = _observed(meta[name], configs[name]) if name in meta else None
    partitions = tuple(sorted(
        (PartitionInfo(p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
         for p in (meta[name]["partitions"] if name in meta else ())),
        key=lambda p: p.partition))
    changes = plan_topics([spec], {name: observed} if observed else {}).changes if spec else ()
    return TopicDescription(name, spec, observed, partitions, changes)
