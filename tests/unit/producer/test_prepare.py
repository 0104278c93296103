"""Producer-side checks are ingestion's rules: what prepare_record accepts, the pipeline forwards."""

from __future__ import annotations

import orjson
import pytest

from streamlake.core.dlq import Reason, Stage
from streamlake.core.pipeline import process_batch
from streamlake.core.records import SourceRecord
from streamlake.partitioner import partition_for_key
from streamlake.producer import ProducerError, RecordRefused, prepare_record
from streamlake.topology import Stream

ORDERS = Stream(domain="sales", dataset="orders", key_field="order_id", required_fields={"amount": "number"})
BY_HEADER = Stream(domain="sales", dataset="events", key_field="id", sequence_field=None, sequence_header="x-seq")


@pytest.mark.parametrize("value,reason", [
    (b"", Reason.EMPTY_VALUE), (b"\xff{", Reason.INVALID_UTF8), (b"{", Reason.INVALID_JSON),
    (b"[1]", Reason.NOT_AN_OBJECT), ({"order_id": "k", "seq": 1}, Reason.MISSING_FIELD),
    ({"order_id": "k", "seq": 1, "amount": "3"}, Reason.WRONG_TYPE),
    ({"seq": 1, "amount": 1}, Reason.MISSING_KEY), ({"order_id": 7, "seq": 1, "amount": 1}, Reason.KEY_WRONG_TYPE),
    ({"order_id": "k", "amount": 1}, Reason.MISSING_SEQUENCE),
    ({"order_id": "k", "seq": 1.5, "amount": 1}, Reason.INVALID_SEQUENCE),
    ({"order_id": "k", "seq": -1, "amount": 1}, Reason.SEQUENCE_OUT_OF_RANGE),
    ({"order_id": "k", "seq": 1, "amount": 1, "when": object()}, Reason.INVALID_JSON),
])
def test_refusal_names_the_same_reason_ingestion_would_give(value, reason):
    with pytest.raises(RecordRefused) as refused:
        prepare_record(ORDERS, value, 8)
    assert refused.value.reason is reason
    assert refused.value.stage is reason.stage
    assert f"stage {reason.stage.value}" in str(refused.value)
    if isinstance(value, bytes):  # the pipeline dead-letters the same bytes for the same reason
        result = process_batch(ORDERS, [SourceRecord("t", 0, 0, 0, b"k", value)], {}.get, 8)
        assert [d.reason for d in result.dead_letters] == [reason]


def test_accepted_record_is_keyed_by_its_key_field_on_the_java_partition_and_ingestion_forwards_it():
    record = prepare_record(ORDERS, {"order_id": "order-42", "seq": 3, "amount": 9.5}, 8)
    assert record.key == b"order-42" and record.seq == 3
    assert record.partition == partition_for_key(b"order-42", 8)
    consumed = SourceRecord("t", record.partition, 0, 0, record.key, record.value, record.headers)
    result = process_batch(ORDERS, [consumed], {}.get, 8)
    assert len(result.forwards) == 1 and not result.dead_letters


def test_nan_is_checked_as_it_will_be_sent_not_as_the_caller_holds_it():
    # orjson writes NaN as null: the required field arrives missing, so the producer refuses it.
    with pytest.raises(RecordRefused) as refused:
        prepare_record(ORDERS, {"order_id": "k", "seq": 1, "amount": float("nan")}, 8)
    assert refused.value.reason is Reason.MISSING_FIELD and refused.value.stage is Stage.VALIDATE


def test_allocated_sequence_goes_into_the_field_or_the_header_and_never_overwrites_one():
    record = prepare_record(ORDERS, {"order_id": "k", "amount": 1}, 8, seq=5)
    assert orjson.loads(record.value)["seq"] == 5 and record.seq == 5
    by_header = prepare_record(BY_HEADER, b'{"id": "e1"}', 4, seq=9)
    assert dict(by_header.headers)["x-seq"] == b"9" and by_header.seq == 9
    with pytest.raises(ProducerError, match="already has seq"):
        prepare_record(ORDERS, {"order_id": "k", "amount": 1, "seq": 2}, 8, seq=5)
    with pytest.raises(ProducerError, match="already has header"):
        prepare_record(BY_HEADER, b'{"id": "e1"}', 4, headers=[("x-seq", b"1")], seq=9)
