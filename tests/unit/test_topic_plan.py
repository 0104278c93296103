"""Planning the catalog against an observed broker, without a broker."""

from __future__ import annotations

from streamlake.catalog import TopicRole, TopicSpec
from streamlake.core.topic_plan import (
    ChangeKind,
    ChangeStatus,
    ConfigDrift,
    ObservedTopic,
    TopicStatus,
    config_drift,
    plan_topics,
    topic_status,
)

CONFIG = {"cleanup.policy": "delete", "retention.ms": "1000"}


def spec(name: str = "sales.orders.raw.v1", partitions: int = 4, replication: int = 1, **config: str) -> TopicSpec:
    return TopicSpec(name, "sales.orders", TopicRole.SOURCE, partitions, replication, {**CONFIG, **config})


def observed(name: str = "sales.orders.raw.v1", partitions: int = 4, replication: int = 1,
             **config: str) -> ObservedTopic:
    effective = {**CONFIG, "segment.ms": "604800000", **config}
    return ObservedTopic(name, partitions, replication, effective, dict(CONFIG))


def kinds(plan) -> list[tuple[ChangeKind, ChangeStatus]]:
    return [(c.kind, c.status) for c in plan.changes]


def test_missing_topic_is_created() -> None:
    plan = plan_topics([spec()], {})
    assert kinds(plan) == [(ChangeKind.CREATE, ChangeStatus.APPLY)]
    assert plan.to_apply[0].spec.partitions == 4 and not plan.in_sync


def test_matching_topic_needs_nothing() -> None:
    plan = plan_topics([spec()], {"sales.orders.raw.v1": observed()})
    assert plan.in_sync and plan.unchanged == ("sales.orders.raw.v1",)


def test_config_drift_lists_only_keys_the_catalog_sets() -> None:
    current = observed(**{"retention.ms": "5", "segment.ms": "1"})  # segment.ms is not in the catalog
    plan = plan_topics([spec()], {"sales.orders.raw.v1": current})
    assert kinds(plan) == [(ChangeKind.ALTER_CONFIG, ChangeStatus.APPLY)]
    assert plan.changes[0].drift == (ConfigDrift("retention.ms", "1000", "5"),)


def test_list_config_order_is_not_drift() -> None:
    assert config_drift({"cleanup.policy": "compact,delete"}, {"cleanup.policy": "delete,compact"}) == ()
    assert config_drift({"cleanup.policy": "compact"}, {"cleanup.policy": "delete"}) != ()


def test_config_missing_on_broker_is_drift() -> None:
    assert config_drift({"retention.ms": "1"}, {}) == (ConfigDrift("retention.ms", "1", None),)


def test_partition_increase_is_refused_by_default_and_explains_key_movement() -> None:
    plan = plan_topics([spec(partitions=8)], {"sales.orders.raw.v1": observed(partitions=4)})
    assert kinds(plan) == [(ChangeKind.INCREASE_PARTITIONS, ChangeStatus.REFUSED)]
    reason = plan.refused[0].reason
    assert "per-key order" in reason and "--allow-partition-increase" in reason
    assert plan.refused[0].current_partitions == 4


def test_partition_increase_is_planned_when_allowed() -> None:
    plan = plan_topics([spec(partitions=8)], {"sales.orders.raw.v1": observed(partitions=4)},
                       allow_partition_increase=True)
    assert kinds(plan) == [(ChangeKind.INCREASE_PARTITIONS, ChangeStatus.APPLY)]


def test_partition_decrease_is_always_refused_because_kafka_cannot() -> None:
    plan = plan_topics([spec(partitions=2)], {"sales.orders.raw.v1": observed(partitions=4)},
                       allow_partition_increase=True)
    assert kinds(plan) == [(ChangeKind.DECREASE_PARTITIONS, ChangeStatus.REFUSED)]
    assert "Kafka cannot remove partitions" in plan.refused[0].reason
    assert "partitions = 4" in plan.refused[0].reason


def test_replication_mismatch_is_reported_not_applied() -> None:
    plan = plan_topics([spec(replication=3)], {"sales.orders.raw.v1": observed(replication=1)})
    assert kinds(plan) == [(ChangeKind.REPLICATION_MISMATCH, ChangeStatus.REFUSED)]


def test_replication_above_broker_count_is_refused_on_create() -> None:
    plan = plan_topics([spec(replication=3)], {}, broker_count=1)
    assert kinds(plan) == [(ChangeKind.CREATE, ChangeStatus.REFUSED)]
    assert "1" in plan.refused[0].reason


def test_existing_topic_with_colliding_metric_name_blocks_create() -> None:
    plan = plan_topics([spec()], {}, existing_names=["sales_orders.raw.v1", "other"])
    assert kinds(plan) == [(ChangeKind.NAME_COLLISION, ChangeStatus.REFUSED)]
    assert "sales_orders.raw.v1" in plan.refused[0].reason


def test_several_problems_on_one_topic_are_all_reported() -> None:
    current = observed(partitions=4, **{"retention.ms": "9"})
    plan = plan_topics([spec(partitions=6)], {"sales.orders.raw.v1": current})
    assert {c.kind for c in plan.changes} == {ChangeKind.INCREASE_PARTITIONS, ChangeKind.ALTER_CONFIG}
    assert len(plan.refused) == 1 and len(plan.to_apply) == 1


def test_topic_status_summarises_the_plan() -> None:
    a, b, c = spec("a.b.raw.v1"), spec("a.c.raw.v1"), spec("a.d.raw.v1")
    plan = plan_topics([a, b, c], {"a.b.raw.v1": observed("a.b.raw.v1"),
                                   "a.c.raw.v1": observed("a.c.raw.v1", **{"retention.ms": "2"})})
    assert [topic_status(s, plan) for s in (a, b, c)] == [TopicStatus.OK, TopicStatus.DRIFT, TopicStatus.MISSING]


def test_plan_as_dict_is_json_ready() -> None:
    data = plan_topics([spec()], {}).as_dict()
    assert data["in_sync"] is False
    assert data["changes"][0]["kind"] == "create" and data["changes"][0]["config"] == CONFIG
