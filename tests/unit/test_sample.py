"""The sample load generator: reproducible, and every record lands where its kind says."""

from __future__ import annotations

import collections

import pytest

from streamlake.core.pipeline import StreamCounters, process_batch
from streamlake.core.records import SourceRecord
from streamlake.core.sample import (
    MALFORMED_KINDS,
    Reconciliation,
    SampleKind,
    SampleMix,
    counters_delta,
    generate_sample,
    summarize_sample,
)
from streamlake.errors import StreamLakeError
from streamlake.partitioner import partition_for_key
from streamlake.topology import Stream

ORDERS = Stream(domain="sales", dataset="orders", version=1, key_field="order_id", sequence_field="seq")
PARTITIONS = 8


def run_pipeline(records) -> StreamCounters:
    """Feed the records through the pure pipeline per partition, in order, like the workers do."""
    by_partition: dict[int, list[SourceRecord]] = collections.defaultdict(list)
    for i, rec in enumerate(records):
        p = partition_for_key(rec.route_key, PARTITIONS)
        if rec.misroute:
            p = (p + 1) % PARTITIONS
        by_partition[p].append(SourceRecord("sales.orders.raw.v1", p, i, 0, rec.key, rec.value, ()))
    total = StreamCounters()
    for p, recs in by_partition.items():
        states: dict = {}
        result = process_batch(ORDERS, recs, states.get, PARTITIONS)
        total.add(result.counters)
    return total


def test_same_arguments_give_the_same_records():
    a = list(generate_sample(3000, keys=50, seed=7, key_prefix="k"))
    b = list(generate_sample(3000, keys=50, seed=7, key_prefix="k"))
    c = list(generate_sample(3000, keys=50, seed=8, key_prefix="k"))
    assert a == b and a != c


def test_every_kind_is_classified_as_what_it_was_made_to_be():
    records = list(generate_sample(20_000, keys=300, mix=SampleMix(bad=0.05, duplicate=0.03, gap=0.03, late=0.02),
                                   seed=3))
    summary = summarize_sample(records, ORDERS.policies)
    assert set(summary.by_kind) == {k.value for k in SampleKind}, "every kind appears in a large enough load"
    counted = run_pipeline(records)
    rec = Reconciliation(summary, counted)
    assert rec.balanced and rec.complete and rec.as_expected, rec.rows()
    assert counted.classes["late"] == summary.by_kind["late"]
    assert counted.classes["duplicate"] == summary.by_kind["duplicate"]
    assert counted.classes["gap"] == summary.by_kind["gap"]


def test_per_key_sequences_increase_apart_from_the_anomalies():
    last: dict[bytes, int] = {}
    for rec in generate_sample(5000, keys=20, mix=SampleMix(bad=0, duplicate=0, gap=0, late=0), seed=1):
        assert rec.kind is SampleKind.IN_ORDER
        assert rec.seq == last.get(rec.key, 0) + 1
        last[rec.key] = rec.seq


def test_one_partition_topics_get_no_misrouted_records():
    kinds = {r.kind for r in generate_sample(5000, mix=SampleMix(bad=0.5), misroute=False)}
    assert SampleKind.WRONG_PARTITION not in kinds and len(kinds & set(MALFORMED_KINDS)) == len(MALFORMED_KINDS) - 1


@pytest.mark.parametrize("mix", [dict(bad=1.5), dict(bad=-0.1), dict(bad=0.5, duplicate=0.4, gap=0.2)])
def test_impossible_mixes_are_refused(mix):
    with pytest.raises(StreamLakeError):
        SampleMix(**mix)


def test_delta_between_snapshots_drops_unchanged_reasons():
    before = StreamCounters.from_dict({"records_in": 5, "forwarded": 4, "dlq": 1, "dlq_by_reason": {"invalid-json": 1}})
    after = StreamCounters.from_dict({"records_in": 9, "forwarded": 6, "dlq": 3,
                                      "dlq_by_reason": {"invalid-json": 1, "missing-key": 2}})
    delta = counters_delta(after, before)
    assert (delta.records_in, delta.forwarded, delta.dlq) == (4, 2, 2)
    assert dict(delta.dlq_by_reason) == {"missing-key": 2}
