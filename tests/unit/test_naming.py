"""Every naming rule, the derived names and the metric-collision check."""

from __future__ import annotations

import pytest

from streamlake.errors import TopicNameError
from streamlake.naming import (
    MAX_TOPIC_LENGTH,
    NAMING_RULES,
    TopicName,
    changelog_topic_for,
    check_topic_names,
    consumer_group_for,
    dlq_topic_for,
    find_metric_collisions,
    parse_topic_name,
    retry_topic_for,
    source_of_derived,
    topic_name,
    validate_segment,
    validate_topic_name,
)


def rule_of(name: str) -> str:
    with pytest.raises(TopicNameError) as info:
        validate_topic_name(name)
    assert info.value.rule in NAMING_RULES
    assert name in str(info.value) or repr(name) in str(info.value)
    return info.value.rule


@pytest.mark.parametrize("name", [
    "sales.orders.raw.v1",
    "prod.sales.orders.valid.v12",
    "eu-west.prod.sales.order-lines.enriched.v3",
    "s3.o2.curated.v10",
    "sales.orders.raw.v1.dlq",
    "sales.orders.raw.v1.retry",
    "a--b.orders.raw.v1",
])
def test_valid_names_pass(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize("name, rule", [
    ("sales.orders.raw.v1 ", "charset"),
    ("sales.ord€rs.raw.v1", "charset"),
    ("sales.orders.raw.v1\n", "charset"),  # a regex `$` would have let this through
    ("sales/orders.raw.v1", "charset"),
    ("sales.Orders.raw.v1", "lowercase"),
    ("SALES.orders.raw.v1", "lowercase"),
    ("sales_x.orders.raw.v1", "no-underscore"),
    ("sales..orders.raw.v1", "empty-segment"),
    (".sales.orders.raw.v1", "empty-segment"),
    ("sales.orders.raw.v1.", "empty-segment"),
    ("sales.orders.raw.1", "version"),
    ("sales.orders.raw.v0", "version"),
    ("sales.orders.raw.v01", "version"),
    ("sales.orders.raw.v-1", "version"),
    ("sales.orders.raw.vx", "version"),
    ("sales.orders.raw.V1", "lowercase"),
    ("-sales.orders.raw.v1", "hyphen-inside"),
    ("sales.orders-.raw.v1", "hyphen-inside"),
    ("sales.orders.bronze.v1", "stage"),
    ("orders.raw.v1", "shape"),
    ("sales.orders.raw.v1.dlq.dlq", "shape"),
    (".", "dot-name"),
    ("..", "dot-name"),
    ("a" * 250, "length"),
])
def test_each_broken_rule_is_named(name: str, rule: str) -> None:
    assert rule_of(name) == rule


def test_name_of_exactly_249_characters_is_valid_and_250_is_not() -> None:
    base = "sales.orders.raw.v1"
    ok = "p" * (MAX_TOPIC_LENGTH - len(base) - 1) + "." + base
    assert len(ok) == MAX_TOPIC_LENGTH
    validate_topic_name(ok)
    assert rule_of("p" + ok) == "length"


def test_topic_name_builds_and_parses_back() -> None:
    name = topic_name("sales", "orders", "raw", 3, prefix="prod.eu")
    assert str(name) == "prod.eu.sales.orders.raw.v3"
    assert parse_topic_name(str(name)) == name
    assert name.with_stage("valid") == parse_topic_name("prod.eu.sales.orders.valid.v3")


@pytest.mark.parametrize("args, rule", [
    (("sales", "orders", "bronze", 1), "stage"),
    (("sales", "orders", "raw", 0), "version"),
    (("sales", "orders", "raw", True), "version"),
    (("sales", "orders", "raw", "1"), "version"),
    (("Sales", "orders", "raw", 1), "lowercase"),
    (("sales", "or_ders", "raw", 1), "no-underscore"),
    (("sales", "", "raw", 1), "empty-segment"),
    (("sales.x", "orders", "raw", 1), "charset"),  # a dot inside a field would parse differently
])
def test_topic_name_rejects_bad_parts_with_the_full_name(args: tuple, rule: str) -> None:
    with pytest.raises(TopicNameError) as info:
        topic_name(*args)
    assert info.value.rule == rule
    assert "raw" in info.value.name or "bronze" in info.value.name


def test_prefix_segments_are_validated() -> None:
    with pytest.raises(TopicNameError) as info:
        topic_name("sales", "orders", "raw", 1, prefix="prod..eu")
    assert info.value.rule == "empty-segment"


def test_source_name_must_leave_room_for_its_retry_topic() -> None:
    dataset = "d" * (MAX_TOPIC_LENGTH - len("s..raw.v1") - 3)
    assert len(f"s.{dataset}.raw.v1") <= MAX_TOPIC_LENGTH
    with pytest.raises(TopicNameError) as info:
        topic_name("s", dataset, "raw", 1)
    assert info.value.rule == "length"
    assert "retry" in info.value.why


def test_topic_name_dataclass_rejects_a_bad_field() -> None:
    with pytest.raises(TopicNameError):
        TopicName("sales", "Orders", "raw", 1)


def test_derived_names_follow_the_source() -> None:
    source = topic_name("sales", "orders", "raw", 1, prefix="test")
    assert dlq_topic_for(source) == "test.sales.orders.raw.v1.dlq"
    assert retry_topic_for(str(source)) == "test.sales.orders.raw.v1.retry"
    assert source_of_derived("test.sales.orders.raw.v1.dlq") == str(source)


def test_derived_name_of_a_derived_name_is_refused() -> None:
    with pytest.raises(TopicNameError):
        dlq_topic_for("sales.orders.raw.v1.dlq")


def test_source_of_derived_rejects_a_source_name() -> None:
    with pytest.raises(TopicNameError) as info:
        source_of_derived("sales.orders.raw.v1")
    assert info.value.rule == "shape"


def test_parse_rejects_derived_names() -> None:
    with pytest.raises(TopicNameError) as info:
        parse_topic_name("sales.orders.raw.v1.retry")
    assert info.value.rule == "shape"


def test_changelog_and_group_names() -> None:
    assert changelog_topic_for("streamlake", "sales.orders.raw.v1.seq") == "streamlake-sales.orders.raw.v1.seq-changelog"
    assert consumer_group_for("streamlake") == "streamlake"
    with pytest.raises(TopicNameError):
        changelog_topic_for("bad app", "t")
    with pytest.raises(TopicNameError):
        changelog_topic_for("a" * 240, "table")


def test_validate_segment_names_what_is_wrong() -> None:
    with pytest.raises(TopicNameError) as info:
        validate_segment("or.ders", "dataset")
    assert info.value.rule == "charset" and "dataset" in info.value.why


def test_check_topic_names_returns_one_verdict_per_name_in_order() -> None:
    verdicts = check_topic_names(["sales.orders.raw.v1", "Sales.orders.raw.v1", "x_y.orders.raw.v1"])
    assert [v.name for v in verdicts] == ["sales.orders.raw.v1", "Sales.orders.raw.v1", "x_y.orders.raw.v1"]
    assert [v.rule for v in verdicts] == [None, "lowercase", "no-underscore"]
    assert verdicts[0].valid and not verdicts[1].valid


def test_metric_collision_is_found_between_dot_and_underscore_names() -> None:
    collisions = find_metric_collisions(["sales.orders.raw.v1", "sales_orders.raw.v1", "sales.orders.valid.v1"])
    assert collisions == [("sales.orders.raw.v1", "sales_orders.raw.v1")]


def test_no_metric_collision_among_distinct_convention_names() -> None:
    names = ["a.b.raw.v1", "a.b.raw.v1.dlq", "a-b.raw.v1.x", "a.b.raw.v1"]  # a repeat is not a collision
    assert find_metric_collisions(names) == []
