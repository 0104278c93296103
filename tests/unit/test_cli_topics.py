"""``streamlake topics check`` and ``topics acls`` need no broker: exit codes, one line per bad name, the grants."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from streamlake.cli.topics import topics


def test_check_exits_zero_when_every_name_is_valid() -> None:
    result = CliRunner().invoke(topics, ["check", "sales.orders.raw.v1", "sales.orders.raw.v1.dlq"])
    assert result.exit_code == 0
    assert "2 name(s) valid" in result.stdout


def test_check_prints_one_line_per_invalid_name_with_its_rule() -> None:
    result = CliRunner().invoke(topics, ["check", "Sales.orders.raw.v1", "sales.orders.raw.v1", "a_b.c.raw.v1",
                                         "sales.orders.raw.v01"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("'Sales.orders.raw.v1': breaks rule lowercase")
    assert lines[1].startswith("'a_b.c.raw.v1': breaks rule no-underscore")
    assert lines[2].startswith("'sales.orders.raw.v01': breaks rule version")


def test_check_keeps_a_name_with_a_newline_on_one_line() -> None:
    result = CliRunner().invoke(topics, ["check", "sales.orders.raw.v1\nx"])
    assert result.exit_code == 1 and len(result.stdout.splitlines()) == 1


def test_check_json_gives_a_verdict_for_every_name() -> None:
    result = CliRunner().invoke(topics, ["check", "--json", "sales.orders.raw.v1", ".."])
    assert result.exit_code == 1
    assert orjson.loads(result.stdout) == [
        {"name": "sales.orders.raw.v1", "valid": True, "rule": None, "why": ""},
        {"name": "..", "valid": False, "rule": "dot-name", "why": "Kafka forbids the names '.' and '..'"},
    ]


def test_plan_against_an_unreachable_broker_says_what_to_do(monkeypatch) -> None:
    monkeypatch.setenv("STREAMLAKE_BROKER", "kafka://127.0.0.1:1")
    monkeypatch.setenv("STREAMLAKE_ENV", "dev")
    result = CliRunner().invoke(topics, ["plan"])
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr and "streamlake broker start" in result.stderr


def test_acls_grant_the_landers_dlq_topics_with_the_catalog_topics(monkeypatch) -> None:
    monkeypatch.setenv("STREAMLAKE_ENV", "cluster")
    result = CliRunner().invoke(topics, ["acls", "--principal", "User:ingest", "--json"])
    assert result.exit_code == 0, result.output
    literal = [g for g in orjson.loads(result.output) if g["pattern_type"] == "literal"]
    assert len(literal) == 1
    names = literal[0]["names"]
    assert "sales.orders.valid.v1.dlq" in names and "sales.orders.raw.v1" in names
    assert "sales.orders.raw.v1.dlq.dlq" not in names  # only outputs are landed
