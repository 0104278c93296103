"""Lake table shape rules: type specs, fixed columns, partition specs, schema changes."""

from __future__ import annotations

import pytest

from streamlake.core.lake_schema import (
    FIXED_COLUMNS,
    ColumnType,
    PartitionTransform,
    TypeKind,
    can_promote,
    check_partition_spec,
    default_partition_spec,
    parse_column_type,
    parse_partition_field,
    plan_schema_change,
    table_columns,
)
from streamlake.errors import TopologyError
from streamlake.topology import Stream


def test_type_specs_parse_with_aliases_and_decimal_precision():
    assert parse_column_type("decimal(12, 2)") == ColumnType(TypeKind.DECIMAL, 12, 2)
    assert parse_column_type("BIGINT").kind is TypeKind.LONG
    assert str(parse_column_type("decimal(38,0)")) == "decimal(38,0)"


@pytest.mark.parametrize("spec", ["decimal", "decimal(40,2)", "decimal(4,5)", "money", "varchar(3)"])
def test_bad_type_specs_are_refused_with_the_accepted_ones(spec):
    with pytest.raises(TopologyError, match="decimal|unknown type"):
        parse_column_type(spec)


def test_every_table_starts_with_the_fixed_columns_and_refuses_clashes():
    columns = table_columns({"amount": parse_column_type("double")})
    assert [c.name for c in columns[:7]] == ["_key", "_seq", "_kafka_partition", "_kafka_offset",
                                             "_kafka_timestamp", "_landed_at", "_extra"]
    assert columns[-1].name == "amount" and columns[:7] == FIXED_COLUMNS
    with pytest.raises(TopologyError, match="clash"):
        table_columns({"_seq": parse_column_type("long")})


def test_default_partition_is_day_of_event_time_or_kafka_timestamp():
    assert [str(f) for f in default_partition_spec("ts")] == ["day(ts)"]
    assert [str(f) for f in default_partition_spec(None)] == ["day(_kafka_timestamp)"]


def test_identity_of_the_key_is_never_a_partition():
    columns = table_columns({"order_id": parse_column_type("string"), "currency": parse_column_type("string")})
    with pytest.raises(TopologyError, match="one file per key"):
        check_partition_spec([parse_partition_field("order_id")], columns, "order_id", "s")
    check_partition_spec([parse_partition_field("currency")], columns, "order_id", "s")  # low cardinality: fine
    with pytest.raises(TopologyError, match="date or timestamp"):
        check_partition_spec([parse_partition_field("day(currency)")], columns, "order_id", "s")


def test_stream_declaration_checks_columns_event_time_and_partitions():
    stream = Stream(domain="sales", dataset="orders", key_field="order_id",
                    columns={"ts": "timestamptz", "amount": "decimal(12,2)"}, event_time_field="ts")
    assert [str(f) for f in stream.lake_partition_spec] == ["day(ts)"]
    assert parse_partition_field("hour(ts)").transform is PartitionTransform.HOUR
    with pytest.raises(TopologyError, match="event_time_field"):
        Stream(domain="sales", dataset="orders", key_field="order_id", columns={"ts": "string"},
               event_time_field="ts")
    with pytest.raises(TopologyError, match="one file per key"):
        Stream(domain="sales", dataset="orders", key_field="order_id", columns={"order_id": "string"},
               partition_by=("order_id",))


def test_promotions_follow_iceberg():
    t = parse_column_type
    assert can_promote(t("int"), t("long")) and can_promote(t("float"), t("double"))
    assert can_promote(t("decimal(10,2)"), t("decimal(12,2)"))
    assert not can_promote(t("decimal(10,2)"), t("decimal(12,3)"))
    assert not can_promote(t("long"), t("int")) and not can_promote(t("string"), t("long"))


def test_schema_change_adds_promotes_and_refuses_with_what_to_do():
    t = parse_column_type
    existing = {"a": t("int"), "b": t("string"), "gone": t("long")}
    wanted = table_columns({"a": t("long"), "b": t("long"), "c": t("date")})
    change = plan_schema_change({**{c.name: c.type for c in FIXED_COLUMNS}, **existing}, wanted, "sales.x_v1")
    assert [c.name for c in change.add] == ["c"]
    assert [c.name for c in change.promote] == ["a"]
    assert len(change.refused) == 1 and "sales.x_v1.b is string" in change.refused[0]
    assert "new column name" in change.refused[0] and "bump the stream's version" in change.refused[0]
