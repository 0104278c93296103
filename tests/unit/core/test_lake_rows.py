"""Records to rows: casting, _extra, identity, duplicates, limits."""

from __future__ import annotations

import decimal

import orjson
import pytest

from streamlake.core.dlq import Reason, Stage
from streamlake.core.lake_progress import RecentWindow
from streamlake.core.lake_rows import Built, CastError, LandingFailure, RowBuilder, cast_value
from streamlake.core.lake_schema import parse_column_type as t
from streamlake.core.records import SourceRecord

DECLARED = {"amount": t("decimal(12,2)"), "ts": t("timestamptz"), "qty": t("int"), "day": t("date"),
            "name": t("string")}


def rec(value, key=b"k1", offset=5, headers=()):
    body = value if isinstance(value, bytes) else orjson.dumps(value)
    return SourceRecord("s.d.valid.v1", 3, offset, 1_700_000_000_000, key, body, headers)


def build(value, window=None, builder=None, **kw):
    builder = builder or RowBuilder(DECLARED, "seq", None, "ts", max_field_bytes=kw.pop("limit", 1024))
    out = builder.new_buffer()
    result = builder.build(rec(value, **kw), 42, out, window if window is not None else RecentWindow(100))
    return result, out.as_dict(), out


def test_a_record_becomes_one_typed_row_and_keeps_undeclared_fields():
    result, row, out = build({"seq": 7, "amount": 12.5, "ts": 1_700_000_000_123, "qty": "3", "day": "2024-02-29",
                              "name": "x", "note": {"a": 1}})
    assert result is Built.ROW
    assert row["_key"] == ["k1"] and row["_seq"] == [7] and row["_kafka_partition"] == [3]
    assert row["_kafka_offset"] == [5] and row["_kafka_timestamp"] == [1_700_000_000_000_000]
    assert row["amount"] == [decimal.Decimal("12.50")] and row["ts"] == [1_700_000_000_123_000]
    assert row["qty"] == [3] and row["day"] == [19782] and row["_landed_at"] == [42]
    assert orjson.loads(row["_extra"][0]) == {"seq": 7, "note": {"a": 1}}
    assert out.event_time_max == 1_700_000_000_123_000


@pytest.mark.parametrize("field,value", [("amount", 1.234), ("amount", 1e12), ("amount", "abc"), ("qty", 2**31),
                                         ("qty", 1.5), ("ts", "yesterday"), ("name", 5), ("day", "2024-13-01"),
                                         ("qty", True)])
def test_a_value_that_does_not_cast_fails_the_record_with_its_field(field, value):
    result, row, _ = build({"seq": 1, field: value})
    assert isinstance(result, LandingFailure) and result.reason is Reason.LAND_CAST_FAILED
    assert field in result.message and row["_key"] == []
    assert result.reason.stage is Stage.LAND


def test_missing_fields_are_null_and_iso_timestamps_are_utc():
    result, row, _ = build({"seq": 1, "ts": "2023-11-14T23:13:20+01:00"})
    assert result is Built.ROW and row["amount"] == [None] and row["_extra"] == ['{"seq":1}']
    assert row["ts"] == [1_700_000_000_000_000]  # 22:13:20Z


@pytest.mark.parametrize("value,key,reason", [
    (b"[1,2]", b"k", Reason.LAND_UNDECODABLE), (b"{", b"k", Reason.LAND_UNDECODABLE),
    ({"seq": 1}, None, Reason.LAND_MISSING_IDENTITY), ({"x": 1}, b"k", Reason.LAND_MISSING_IDENTITY),
    ({"seq": "x"}, b"k", Reason.LAND_MISSING_IDENTITY), ({"seq": 1}, b"\xff", Reason.LAND_UNDECODABLE),
])
def test_undecodable_or_unidentified_records_fail(value, key, reason):
    result, _, _ = build(value, key=key)
    assert isinstance(result, LandingFailure) and result.reason is reason


def test_oversized_string_and_extra_fail_the_record():
    result, _, _ = build({"seq": 1, "name": "x" * 2000})
    assert isinstance(result, LandingFailure) and result.reason is Reason.LAND_FIELD_TOO_LARGE
    result, _, _ = build({"seq": 1, "blob": "é" * 600})
    assert isinstance(result, LandingFailure) and "_extra" in result.message


def test_a_repeated_key_and_seq_is_a_duplicate_and_adds_no_row():
    window = RecentWindow(100)
    builder = RowBuilder(DECLARED, "seq", None, "ts")
    out = builder.new_buffer()
    assert builder.build(rec({"seq": 1}, offset=1), 0, out, window) is Built.ROW
    assert builder.build(rec({"seq": 1}, offset=2), 0, out, window) is Built.DUPLICATE
    assert builder.build(rec({"seq": 2}, offset=3), 0, out, window) is Built.ROW
    assert len(out) == 2


def test_sequence_from_a_header():
    builder = RowBuilder({}, None, "x-seq", None)
    out = builder.new_buffer()
    result = builder.build(rec({"a": 1}, headers=[("x-seq", b"12")]), 0, out, RecentWindow(10))
    assert result is Built.ROW and out.as_dict()["_seq"] == [12]


def test_cast_value_keeps_none_and_raises_cast_errors():
    assert cast_value(t("long"), None) is None
    with pytest.raises(CastError):
        cast_value(t("boolean"), "true")
