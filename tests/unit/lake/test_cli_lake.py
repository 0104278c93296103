"""The lake commands' errors and --json, on an empty lake of the test's own (no broker)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from streamlake.cli.lake import lake, land
from tests.kafka_fixtures import ROOT


@pytest.fixture
def empty_lake(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMLAKE_ENV", "test")
    monkeypatch.setenv("STREAMLAKE_HOME", str(ROOT))
    monkeypatch.setenv("STREAMLAKE_LAKE_CATALOG_URI", f"sqlite:///{tmp_path}/catalog.db")
    monkeypatch.setenv("STREAMLAKE_LAKE_WAREHOUSE", f"file://{tmp_path}/warehouse")
    return tmp_path


def test_query_json_prints_an_array_of_row_objects(empty_lake):
    result = CliRunner().invoke(lake, ["query", "--json", "SELECT 1 AS one, 'x' AS two"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"one": 1, "two": "x"}]


def test_query_sees_a_table_derived_beside_the_stream_table(empty_lake):
    import pyarrow as pa

    from streamlake.config import load_settings
    from streamlake.lake.info import LakeSession

    rows = pa.table({"currency": ["EUR", "USD"], "orders": pa.array([3, 4], pa.int64())})
    with LakeSession(load_settings()) as session:
        session.catalog.create_namespace_if_not_exists(("test", "sales"))
        session.catalog.create_table(("test", "sales", "orders_v1_daily"), schema=rows.schema).append(rows)
    result = CliRunner().invoke(lake, ["query", "--json", "SELECT * FROM test.sales.orders_v1_daily ORDER BY currency"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"currency": "EUR", "orders": 3}, {"currency": "USD", "orders": 4}]


def test_bad_sql_and_unknown_tables_say_what_to_do_and_exit_1(empty_lake):
    bad = CliRunner().invoke(lake, ["query", "SELECT nope FROM nowhere"])
    assert bad.exit_code == 1 and "query failed" in bad.output
    unknown = CliRunner().invoke(lake, ["describe", "sales.nothing_v1"])
    assert unknown.exit_code == 1 and "known tables: test.sales.orders_v1" in unknown.output
    missing = CliRunner().invoke(lake, ["history", "sales.orders"])
    assert missing.exit_code == 1 and "start a lander" in missing.output


def test_tables_lists_streams_before_any_landing_and_maintenance_is_a_dry_run(empty_lake):
    tables = CliRunner().invoke(lake, ["tables", "--json"])
    assert tables.exit_code == 0 and json.loads(tables.output)[0]["exists"] is False
    compact = CliRunner().invoke(lake, ["compact"])
    assert compact.exit_code == 0 and "dry run: nothing changed" in compact.output


def test_land_refuses_an_unknown_stream(empty_lake):
    result = CliRunner().invoke(land, ["--stream", "sales.nope"])
    assert result.exit_code == 1 and "unknown stream(s) sales.nope" in result.output
