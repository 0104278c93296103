"""Plan the changes that bring the broker in line with the catalog.

Pure: the Kafka-facing side (:mod:`streamlake.kafka.admin`) observes the
broker into :class:`ObservedTopic` values and carries out the plan.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalog import TopicSpec
from ..naming import metric_name_of

__all__ = [
    "ChangeKind", "ChangeStatus", "TopicStatus", "ConfigDrift", "ObservedTopic", "TopicChange", "TopicPlan",
    "plan_topics", "config_drift", "topic_status",
]

# Configs whose value is an unordered list: "compact,delete" equals "delete,compact".
_LIST_CONFIGS = {"cleanup.policy", "leader.replication.throttled.replicas", "follower.replication.throttled.replicas"}


class ChangeKind(enum.Enum):
    """What one change does to one topic."""

    CREATE = "create"
    ALTER_CONFIG = "alter-config"
    INCREASE_PARTITIONS = "increase-partitions"
    DECREASE_PARTITIONS = "decrease-partitions"
    REPLICATION_MISMATCH = "replication-mismatch"
    NAME_COLLISION = "name-collision"


class ChangeStatus(enum.Enum):
    """Whether ``apply`` carries a change out."""

    APPLY = "apply"
    REFUSED = "refused"


class TopicStatus(enum.Enum):
    """How a catalog topic compares with the broker (``topics list``)."""

    OK = "ok"
    MISSING = "missing"
    DRIFT = "drift"


@dataclass(frozen=True)
class ConfigDrift:
    """A config the catalog sets whose broker value differs."""

    key: str
    wanted: str
    actual: str | None


@dataclass(frozen=True)
class ObservedTopic:
    """A topic as the broker has it.

    Attributes:
        config: effective value of every topic config.
        overrides: the configs set on the topic itself (not broker defaults);
            ``alter`` keeps these, because Kafka's AlterConfigs replaces the whole set.
    """

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"name": self.name, "partitions": self.partitions, "replication_factor": self.replication_factor,
                "config": dict(self.config), "overrides": dict(self.overrides)}


@dataclass(frozen=True)
class TopicChange:
    """One change to one topic, and why it is made or refused."""

    kind: ChangeKind
    topic: str
    status: ChangeStatus
    reason: str
    spec: TopicSpec
    current_partitions: int | None = None
    drift: tuple[ConfigDrift, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        out: dict[str, Any] = {
            "kind": self.kind.value, "topic": self.topic, "status": self.status.value, "reason": self.reason,
            "partitions": self.spec.partitions, "current_partitions": self.current_partitions,
        }
        if self.kind is ChangeKind.CREATE:
            out["replication_factor"] = self.spec.replication_factor
            out["config"] = dict(self.spec.config)
        if self.drift:
            out["drift"] = [{"key": d.key, "wanted": d.wanted, "actual": d.actual} for d in self.drift]
        return out


@dataclass(frozen=True)
class TopicPlan:
    """Every change the catalog needs, and the topics already in line."""

    changes: tuple[TopicChange, ...]
    unchanged: tuple[str, ...]

    @property
    def to_apply(self) -> tuple[TopicChange, ...]:
        return tuple(c for c in self.changes if c.status is ChangeStatus.APPLY)

    @property
    def refused(self) -> tuple[TopicChange, ...]:
        return tuple(c for c in self.changes if c.status is ChangeStatus.REFUSED)

    @property
    def in_sync(self) -> bool:
        """True when the broker already matches the catalog."""
        return not self.changes

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"in_sync": self.in_sync, "changes": [c.as_dict() for c in self.changes],
                "unchanged": list(self.unchanged), "refused": len(self.refused)}


def plan_topics(
    specs: Iterable[TopicSpec],
    observed: Mapping[str, ObservedTopic],
    *,
    allow_partition_increase: bool = False,
    existing_names: Iterable[str] = (),
    broker_count: int | None = None,
) -> TopicPlan:
    """Compare the catalog's *specs* with the *observed* broker state.

    Args:
        specs: the topics the catalog wants.
        observed: the broker's view of those topics that exist, by name.
        allow_partition_increase: accept growing a keyed topic (moves keys).
        existing_names: every topic on the broker, to catch metric-name collisions.
        broker_count: brokers in the cluster, to refuse an impossible replication factor.
    """
    by_metric = {metric_name_of(n): n for n in existing_names}
    changes: list[TopicChange] = []
    unchanged: list[str] = []
    for spec in specs:
        current = observed.get(spec.name)
        found = _plan_missing(spec, by_metric, broker_count) if current is None else \
            _plan_existing(spec, current, allow_partition_increase)
        if found:
            changes.extend(found)
        else:
            unchanged.append(spec.name)
    return TopicPlan(tuple(changes), tuple(unchanged))


def _plan_missing(spec: TopicSpec, by_metric: Mapping[str, str], broker_count: int | None) -> list[TopicChange]:
    clash = by_metric.get(metric_name_of(spec.name))
    if clash is not None and clash != spec.name:
        return [TopicChange(
            ChangeKind.NAME_COLLISION, spec.name, ChangeStatus.REFUSED,
            f"existing topic {clash!r} has the same metric name ('.' and '_' both become '_'), so Kafka refuses "
            f"to create {spec.name!r}; rename or delete {clash!r}", spec)]
    if broker_count is not None and spec.replication_factor > broker_count:
        return [TopicChange(
            ChangeKind.CREATE, spec.name, ChangeStatus.REFUSED,
            f"replication_factor {spec.replication_factor} needs as many brokers, the cluster has {broker_count}; "
            "lower replication_factor in the catalog for this environment", spec)]
    return [TopicChange(ChangeKind.CREATE, spec.name, ChangeStatus.APPLY,
                        f"create with {spec.partitions} partitions, replication {spec.replication_factor}", spec)]


def _plan_existing(spec: TopicSpec, current: ObservedTopic, allow_increase: bool) -> list[TopicChange]:
    changes: list[TopicChange] = []
    have, want = current.partitions, spec.partitions
    if want < have:
        changes.append(TopicChange(
            ChangeKind.DECREASE_PARTITIONS, spec.name, ChangeStatus.REFUSED,
            f"the catalog asks for {want} partitions but the topic has {have}; Kafka cannot remove partitions. "
            f"Set partitions = {have} in the catalog, or create a new topic version (v<N+1>) and migrate to it",
            spec, have))
    elif want > have:
        moves = ("keys hash to other partitions, so new records of a key may land on a different partition "
                 "than its earlier records and per-key order breaks while both are in flight")
        if spec.keyed and not allow_increase:
            changes.append(TopicChange(
                ChangeKind.INCREASE_PARTITIONS, spec.name, ChangeStatus.REFUSED,
                f"growing {have} -> {want} partitions on a keyed topic: {moves}. Drain producers and consumers "
                "first and re-run with --allow-partition-increase, or keep partitions = "
                f"{have} in the catalog", spec, have))
        else:
            changes.append(TopicChange(
                ChangeKind.INCREASE_PARTITIONS, spec.name, ChangeStatus.APPLY,
                f"grow {have} -> {want} partitions (allowed: {moves})", spec, have))
    if spec.replication_factor != current.replication_factor:
        changes.append(TopicChange(
            ChangeKind.REPLICATION_MISMATCH, spec.name, ChangeStatus.REFUSED,
            f"the catalog asks for replication {spec.replication_factor}, the topic has "
            f"{current.replication_factor}; StreamLake does not move replicas: use kafka-reassign-partitions, "
            "or set the catalog to the actual value", spec, have))
    drift = config_drift(spec.config, current.config)
    if drift:
        changes.append(TopicChange(
            ChangeKind.ALTER_CONFIG, spec.name, ChangeStatus.APPLY,
            "set " + ", ".join(f"{d.key}={d.wanted} (now {d.actual})" for d in drift), spec, have, drift))
    return changes


def config_drift(wanted: Mapping[str, str], actual: Mapping[str, str]) -> tuple[ConfigDrift, ...]:
    """Return the keys *wanted* sets whose *actual* value differs (other keys are ignored)."""
    return tuple(
        ConfigDrift(key, value, actual.get(key))
        for key, value in sorted(wanted.items())
        if _normal(key, value) != _normal(key, actual.get(key))
    )


def _normal(key: str, value: str | None) -> Any:
    if value is None:
        return None
    if key in _LIST_CONFIGS:
        return frozenset(v.strip() for v in value.split(",") if v.strip())
    return value.strip().lower()


def topic_status(spec: TopicSpec, plan: TopicPlan) -> TopicStatus:
    """Return how *spec*'s topic stands in *plan*."""
    kinds = {c.kind for c in plan.changes if c.topic == spec.name}
    if not kinds:
        return TopicStatus.OK
    if kinds & {ChangeKind.CREATE, ChangeKind.NAME_COLLISION}:
        return TopicStatus.MISSING
    return TopicStatus.DRIFT
