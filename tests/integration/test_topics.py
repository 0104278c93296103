"""``streamlake topics`` against the real broker: plan, apply, drift, partitions.

Each test gets its own project root (conf/ and topologies/) in a tmp dir, so
it can edit the catalog, and a unique topic prefix from ``test_env``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from click.testing import CliRunner, Result

from streamlake.cli.topics import topics
from streamlake.config import Settings
from streamlake.kafka import admin
from streamlake.kafka.client import client_kwargs
from tests import kafka_fixtures
from tests.kafka_fixtures import ROOT, wait_for

CATALOG = """
[defaults]
partitions = {partitions}
replication_factor = 1
[defaults.config]
"cleanup.policy" = "delete"
"retention.ms" = "3600000"
"min.insync.replicas" = "1"

[dlq.config]
"retention.ms" = "7200000"
"""


@dataclass
class Project:
    """A throwaway StreamLake project root wired to the test broker."""

    env: kafka_fixtures.TestEnv
    root: Path
    dataset: str

    @property
    def source(self) -> str:
        return f"{self.env.prefix}.shop.{self.dataset}.raw.v1"

    @property
    def names(self) -> list[str]:
        base = f"{self.env.prefix}.shop.{self.dataset}"
        return [f"{base}.raw.v1", f"{base}.valid.v1", f"{base}.raw.v1.dlq", f"{base}.raw.v1.retry",
                f"{base}.raw.v1.repartition"]  # partitioning=repartition, the default

    def write_catalog(self, partitions: int) -> None:
        (self.root / "conf" / "catalog.toml").write_text(CATALOG.format(partitions=partitions))

    def environ(self) -> dict[str, str]:
        return self.env.environ(STREAMLAKE_HOME=str(self.root))

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(topics, list(args), env=self.environ(), catch_exceptions=False)

    def run_json(self, *args: str) -> tuple[int, object]:
        result = self.run(*args, "--json")
        return result.exit_code, orjson.loads(result.stdout)

    def settings(self) -> Settings:
        return self.env.settings(STREAMLAKE_HOME=str(self.root))


@pytest.fixture
def project(test_env: kafka_fixtures.TestEnv) -> Project:
    root = test_env.tmp / "project"
    (root / "conf").mkdir(parents=True)
    (root / "topologies").mkdir()
    shutil.copy(ROOT / "conf" / "test.toml", root / "conf" / "test.toml")
    dataset = f"d{uuid.uuid4().hex[:8]}"
    # A unique module stem: topology modules are cached in sys.modules by stem.
    (root / "topologies" / f"topo_{dataset}.py").write_text(
        "from streamlake.topology import Stream\n"
        f"items = Stream(domain='shop', dataset='{dataset}', key_field='item_id')\n"
    )
    proj = Project(test_env, root, dataset)
    proj.write_catalog(partitions=2)
    return proj


def counts(project: Project) -> dict[str, int | None]:
    return asyncio.run(admin.topic_partition_counts(project.settings(), project.names))


def configs(project: Project, name: str) -> dict[str, str]:
    state = asyncio.run(admin.observe_cluster(project.settings(), [name]))
    return dict(state.topics[name].config)


def alter_out_of_band(project: Project, name: str, values: dict[str, str]) -> None:
    """Change a topic's configs with a bare admin client, as an operator would."""
    async def alter() -> None:
        client = AIOKafkaAdminClient(**client_kwargs(project.settings()))
        await client.start()
        try:
            await client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, values)])
        finally:
            await client.close()
    asyncio.run(alter())


def test_plan_lists_creates_and_apply_creates_every_catalog_topic(project: Project) -> None:
    code, plan = project.run_json("plan")
    assert code == 0
    assert [(c["kind"], c["topic"], c["status"]) for c in plan["changes"]] == [
        ("create", name, "apply") for name in project.names]

    result = project.run("apply")
    assert result.exit_code == 0, result.output
    assert f"{len(project.names)} change(s) applied" in result.stdout
    assert counts(project) == {name: 2 for name in project.names}
    assert configs(project, project.names[0])["retention.ms"] == "3600000"
    assert configs(project, project.names[2])["retention.ms"] == "7200000"  # the DLQ keeps data longer


def test_second_apply_changes_nothing_and_says_so(project: Project) -> None:
    assert project.run("apply").exit_code == 0
    again = project.run("apply")
    assert again.exit_code == 0
    assert "nothing changed" in again.stdout
    code, report = project.run_json("apply")
    assert (code, report["outcome"], report["applied"]) == (0, "up-to-date", [])
    code, plan = project.run_json("plan")
    assert plan["in_sync"] is True and plan["changes"] == []


def test_plan_detects_out_of_band_config_change_and_apply_restores_it(project: Project) -> None:
    assert project.run("apply").exit_code == 0
    source = project.source
    # segment.ms is not in the catalog: apply must keep it (AlterConfigs replaces the whole set).
    alter_out_of_band(project, source, {"retention.ms": "60000", "segment.ms": "3600000",
                                        "cleanup.policy": "delete", "min.insync.replicas": "1"})
    wait_for(lambda: configs(project, source)["retention.ms"] == "60000", timeout=30, what="the out-of-band change")

    code, plan = project.run_json("plan")
    assert code == 0
    assert plan["changes"] == [{
        "kind": "alter-config", "topic": source, "status": "apply", "reason": plan["changes"][0]["reason"],
        "partitions": 2, "current_partitions": 2,
        "drift": [{"key": "retention.ms", "wanted": "3600000", "actual": "60000"}],
    }]

    result = project.run("apply")
    assert result.exit_code == 0, result.output
    after = configs(project, source)
    assert after["retention.ms"] == "3600000"
    assert after["segment.ms"] == "3600000"
    assert project.run_json("plan")[1]["in_sync"] is True


def test_partition_increase_is_refused_without_the_flag_and_applied_with_it(project: Project) -> None:
    assert project.run("apply").exit_code == 0
    project.write_catalog(partitions=4)

    code, plan = project.run_json("plan")
    assert {(c["kind"], c["status"]) for c in plan["changes"]} == {("increase-partitions", "refused")}

    refused = project.run("apply")
    assert refused.exit_code == 1
    assert "per-key order" in refused.stderr and "--allow-partition-increase" in refused.stderr
    assert counts(project) == {name: 2 for name in project.names}

    allowed = project.run("apply", "--allow-partition-increase")
    assert allowed.exit_code == 0, allowed.output
    assert counts(project) == {name: 4 for name in project.names}
    assert "nothing changed" in project.run("apply").stdout


def test_partition_decrease_is_refused_even_with_the_flag(project: Project) -> None:
    project.write_catalog(partitions=4)
    assert project.run("apply").exit_code == 0
    project.write_catalog(partitions=2)

    result = project.run("apply", "--allow-partition-increase")
    assert result.exit_code == 1
    assert "Kafka cannot remove partitions" in result.stderr
    code, report = project.run_json("apply")
    assert code == 1 and report["outcome"] == "refused"
    assert {c["kind"] for c in report["plan"]["changes"]} == {"decrease-partitions"}
    assert counts(project) == {name: 4 for name in project.names}


def test_refused_plan_applies_nothing_at_all(project: Project) -> None:
    assert project.run("apply").exit_code == 0
    alter_out_of_band(project, project.source, {"retention.ms": "60000"})
    wait_for(lambda: configs(project, project.source)["retention.ms"] == "60000", timeout=30, what="alter")
    project.write_catalog(partitions=3)  # increase (refused) and drift (fixable) together

    assert project.run("apply").exit_code == 1
    assert configs(project, project.source)["retention.ms"] == "60000"


def test_list_and_describe_show_catalog_and_broker_state(project: Project) -> None:
    code, rows = project.run_json("list")
    assert code == 0
    assert [(r["name"], r["status"]) for r in rows] == [(n, "missing") for n in project.names]
    assert project.run("apply").exit_code == 0
    code, rows = project.run_json("list")
    assert [r["status"] for r in rows] == ["ok"] * len(project.names)
    assert project.names[0] in project.run("list").stdout

    code, described = project.run_json("describe", project.source)
    assert code == 0
    assert described["catalog"]["role"] == "source"
    assert described["broker"]["partitions"] == 2
    assert [p["partition"] for p in described["partitions"]] == [0, 1]
    assert described["changes"] == []
    assert "retention.ms" in project.run("describe", project.source).stdout


def test_describe_unknown_topic_exits_non_zero_with_a_hint(project: Project) -> None:
    result = project.run("describe", f"{project.env.prefix}.no.such.raw.v1")
    assert result.exit_code == 1
    assert "neither in the catalog nor on the broker" in result.stderr


def test_partition_counts_report_missing_topics_without_creating_them(project: Project) -> None:
    missing = f"{project.env.prefix}.shop.missing.raw.v1"
    assert asyncio.run(admin.topic_partition_counts(project.settings(), [missing])) == {missing: None}
    assert missing not in asyncio.run(admin.list_topic_names(project.settings()))


@pytest.mark.parametrize("argv", [
    [str(ROOT / ".venv" / "bin" / "streamlake")],
    [sys.executable, "-m", "faust", "-A", "streamlake.app"],
], ids=["streamlake", "faust"])
def test_commands_run_from_both_entry_points(project: Project, argv: list[str]) -> None:
    assert project.run("apply").exit_code == 0
    proc = subprocess.run([*argv, "topics", "describe", project.source, "--json"], env=project.environ(),
                          cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert orjson.loads(proc.stdout)["broker"]["partitions"] == 2
