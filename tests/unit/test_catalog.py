"""The catalog: layering, derived topics, validation and file loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamlake.catalog import (
    DLQ_DEFAULTS,
    REPARTITION_DEFAULTS,
    RETRY_DEFAULTS,
    TopicRole,
    build_catalog,
    load_catalog,
)
from streamlake.config import Settings
from streamlake.errors import CatalogError
from streamlake.topology import Partitioning, Stream

ORDERS = Stream(domain="sales", dataset="orders", key_field="order_id")
PAYMENTS = Stream(domain="billing", dataset="payments", key_field="payment_id", version=2,
                  partitioning=Partitioning.STRICT)


def catalog_data(**datasets: Any) -> dict[str, Any]:
    return {
        "defaults": {"partitions": 4, "replication_factor": 1,
                     "config": {"cleanup.policy": "delete", "retention.ms": 1000, "min.insync.replicas": 1}},
        "datasets": datasets,
    }


def test_each_stream_gets_source_output_dlq_and_retry_topics() -> None:
    catalog = build_catalog(catalog_data(), [ORDERS, PAYMENTS], prefix="test")
    assert catalog.names == (
        "test.sales.orders.raw.v1", "test.sales.orders.valid.v1",
        "test.sales.orders.raw.v1.dlq", "test.sales.orders.raw.v1.retry", "test.sales.orders.raw.v1.repartition",
        "test.billing.payments.raw.v2", "test.billing.payments.valid.v2",
        "test.billing.payments.raw.v2.dlq", "test.billing.payments.raw.v2.retry",
    )
    assert catalog.for_stream("sales.orders", TopicRole.DLQ).name == "test.sales.orders.raw.v1.dlq"
    assert catalog.by_name("test.billing.payments.raw.v2").role is TopicRole.SOURCE


def test_repartition_topic_is_co_partitioned_with_its_source_and_a_count_of_its_own_is_refused() -> None:
    data = catalog_data(**{"sales.orders": {"partitions": 6, "repartition": {"config": {"retention.ms": "60000"}}}})
    spec = build_catalog(data, [ORDERS]).for_stream("sales.orders", TopicRole.REPARTITION)
    assert spec.partitions == 6
    assert spec.config == {**REPARTITION_DEFAULTS, "retention.ms": "60000"}
    data["repartition"] = {"partitions": 3}
    with pytest.raises(CatalogError, match="must equal the source's"):
        build_catalog(data, [ORDERS])


def test_dataset_overrides_defaults_and_merges_config() -> None:
    data = catalog_data(**{"sales.orders": {"partitions": 12, "config": {"retention.ms": "5000"}}})
    source = build_catalog(data, [ORDERS]).for_stream("sales.orders", TopicRole.SOURCE)
    assert source.partitions == 12
    assert source.config == {"cleanup.policy": "delete", "retention.ms": "5000", "min.insync.replicas": "1"}


def test_dlq_and_retry_use_their_own_documented_defaults() -> None:
    catalog = build_catalog(catalog_data(**{"sales.orders": {"partitions": 6}}), [ORDERS])
    dlq = catalog.for_stream("sales.orders", TopicRole.DLQ)
    retry = catalog.for_stream("sales.orders", TopicRole.RETRY)
    assert dlq.config == dict(DLQ_DEFAULTS) and retry.config == dict(RETRY_DEFAULTS)
    assert int(dlq.config["retention.ms"]) > int(retry.config["retention.ms"])  # a DLQ keeps data longer
    assert dlq.partitions == retry.partitions == 6  # follow the dataset unless set


def test_dlq_section_and_per_dataset_dlq_override_layer_in_order() -> None:
    data = catalog_data(**{"sales.orders": {"dlq": {"partitions": 2, "config": {"retention.ms": "9"}}}})
    data["dlq"] = {"partitions": 3, "config": {"retention.ms": "7", "segment.ms": "100"}}
    orders = build_catalog(data, [ORDERS, PAYMENTS])
    dlq = orders.for_stream("sales.orders", TopicRole.DLQ)
    assert (dlq.partitions, dlq.config["retention.ms"], dlq.config["segment.ms"]) == (2, "9", "100")
    other = orders.for_stream("billing.payments", TopicRole.DLQ)
    assert (other.partitions, other.config["retention.ms"]) == (3, "7")


def test_booleans_become_kafka_strings() -> None:
    data = catalog_data(**{"sales.orders": {"config": {"unclean.leader.election.enable": False}}})
    spec = build_catalog(data, [ORDERS]).for_stream("sales.orders", TopicRole.SOURCE)
    assert spec.config["unclean.leader.election.enable"] == "false"


@pytest.mark.parametrize("change, message", [
    ({"defaults": {"partitions": 0}}, "positive integer"),
    ({"defaults": {"partitions": True}}, "positive integer"),
    ({"defaults": {"replication_factor": "3"}}, "positive integer"),
    ({"defaults": {"partition": 3}}, "unknown key"),
    ({"datasets": {"sales.orders": {"config": {"retention.msx": "1"}}}}, "not a Kafka topic config"),
    ({"datasets": {"sales.orders": {"config": {"cleanup.policy": "remove"}}}}, "cleanup.policy"),
    ({"datasets": {"sales.orders": {"config": {"min.insync.replicas": "2"}}}}, "exceeds replication_factor"),
    ({"datasets": {"sales.order": {}}}, "not declared under topologies"),
    ({"dlq": {"partitions": -1}}, "dlq topic of sales.orders"),
    ({"topics": {}}, "unknown key"),
    ({"datasets": {"sales.orders": {"dlq": {"retention": 1}}}}, "unknown key"),
])
def test_invalid_catalog_is_rejected_with_a_message_saying_what_to_fix(change: dict, message: str) -> None:
    data = catalog_data()
    for section, value in change.items():
        data[section] = {**data.get(section, {}), **value}
    with pytest.raises(CatalogError, match=message):
        build_catalog(data, [ORDERS])


def test_compact_delete_policy_is_accepted() -> None:
    data = catalog_data(**{"sales.orders": {"config": {"cleanup.policy": "compact,delete"}}})
    assert build_catalog(data, [ORDERS]).topics[0].config["cleanup.policy"] == "compact,delete"


def test_unknown_topic_lookups_say_what_is_known() -> None:
    catalog = build_catalog(catalog_data(), [ORDERS])
    with pytest.raises(CatalogError, match="sales.orders.raw.v1"):
        catalog.by_name("nope.nope.raw.v1")
    with pytest.raises(CatalogError):
        catalog.for_stream("billing.payments", TopicRole.SOURCE)


def write_conf(root: Path, base: str, overlay: str | None = None) -> Settings:
    (root / "conf").mkdir()
    (root / "conf" / "catalog.toml").write_text(base)
    if overlay is not None:
        (root / "conf" / "catalog.prod.toml").write_text(overlay)
    return Settings(env="prod", root=root, topic_prefix="prod")


def test_environment_overlay_file_overrides_the_base(tmp_path: Path) -> None:
    settings = write_conf(tmp_path, '[defaults]\npartitions = 4\n[defaults.config]\n"retention.ms" = "1"\n',
                          '[defaults]\npartitions = 16\n')
    source = load_catalog(settings, [ORDERS]).topics[0]
    assert (source.name, source.partitions, source.config["retention.ms"]) == ("prod.sales.orders.raw.v1", 16, "1")


def test_missing_or_broken_catalog_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog"):
        load_catalog(Settings(root=tmp_path), [ORDERS])
    settings = write_conf(tmp_path, "[defaults\n")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(settings, [ORDERS])


def test_repository_catalog_loads_for_the_declared_topologies() -> None:
    root = Path(__file__).resolve().parents[2]
    from streamlake.topology import discover_streams
    catalog = load_catalog(Settings(root=root), discover_streams(root / "topologies"))
    assert catalog.topics and all(spec.partitions >= 1 for spec in catalog.topics)
