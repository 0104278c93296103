import orjson
import pytest

from streamlake.core.dlq import DeadLetter, H, Reason, Stage, build_dlq_headers, read_dlq_context
from streamlake.core.pipeline import process_batch
from streamlake.core.records import SourceRecord
from streamlake.errors import RetryableError
from streamlake.partitioner import partition_for_key
from streamlake.topology import Action, Policies, Stream

ORDERS = Stream(domain="sales", dataset="orders", key_field="order_id")


def rec(offset, key, value, headers=(), partition=None):
    if partition is None:
        partition = partition_for_key(key, 8) if key else 0
    return SourceRecord("sales.orders.raw.v1", partition, offset, 1000 + offset, key, value, tuple(headers))


def order(offset, key, seq, headers=()):
    return rec(offset, key.encode(), orjson.dumps({"order_id": key, "seq": seq}), headers)


def run(records, stream=ORDERS, states=None):
    states = dict(states or {})
    return process_batch(stream, records, states.get, 8)


@pytest.mark.parametrize("value,reason", [
    (None, Reason.EMPTY_VALUE), (b"", Reason.EMPTY_VALUE),
    (b"\xc3\x28", Reason.INVALID_UTF8), (b"{", Reason.INVALID_JSON),
    (b'{"order_id":"k","seq":Infinity}', Reason.INVALID_JSON), (b"[]", Reason.NOT_AN_OBJECT),
    (b"null", Reason.NOT_AN_OBJECT), (b"1", Reason.NOT_AN_OBJECT),
    (b'{"seq":1}', Reason.MISSING_KEY), (b'{"order_id":null,"seq":1}', Reason.MISSING_KEY),
    (b'{"order_id":["k"],"seq":1}', Reason.KEY_WRONG_TYPE),
    (b'{"order_id":"other","seq":1}', Reason.KEY_MISMATCH),
    (b'{"order_id":"k"}', Reason.MISSING_SEQUENCE), (b'{"order_id":"k","seq":"3"}', Reason.INVALID_SEQUENCE),
    (b'{"order_id":"k","seq":false}', Reason.INVALID_SEQUENCE), (b'{"order_id":"k","seq":2.0}', Reason.INVALID_SEQUENCE),
    (b'{"order_id":"k","seq":-5}', Reason.SEQUENCE_OUT_OF_RANGE),
    (b'{"order_id":"k","seq":9223372036854775808}', Reason.SEQUENCE_OUT_OF_RANGE),
])
def test_malformed_record_goes_to_dlq_with_its_reason(value, reason):
    result = run([rec(0, b"k", value)])
    assert [d.reason for d in result.dead_letters] == [reason]
    assert not result.forwards and not result.states
    assert result.counters.dlq == result.counters.records_in == 1


def test_record_without_record_key_and_on_wrong_partition_are_rejected_at_key_stage():
    body = b'{"order_id":"k","seq":1}'
    wrong = (partition_for_key(b"k", 8) + 1) % 8
    result = run([rec(0, None, body), rec(1, b"k", body, partition=wrong)])
    assert [d.reason for d in result.dead_letters] == [Reason.MISSING_RECORD_KEY, Reason.WRONG_PARTITION]
    assert {d.stage for d in result.dead_letters} == {Stage.KEY}


def test_largest_valid_sequence_is_accepted():
    assert len(run([order(0, "k", 2**63 - 1)]).forwards) == 1


def test_default_policies_forward_gaps_drop_duplicates_and_dlq_late():
    result = run([order(0, "k", 1), order(1, "k", 3), order(2, "k", 3), order(3, "k", 2)])
    assert [f.record.offset for f in result.forwards] == [0, 1]
    assert [d.reason for d in result.dead_letters] == [Reason.ORDERING_LATE]
    c = result.counters
    assert (c.records_in, c.forwarded, c.dropped, c.dlq) == (4, 2, 1, 1)
    assert c.gaps_opened == 1 and c.gaps_filled == 0


def test_dlq_record_does_not_count_as_seen_and_is_accepted_when_it_comes_back():
    first = run([order(0, "k", 1), order(1, "k", 3), order(2, "k", 2)])
    state = first.states[b"k"]
    assert state.gaps == ((2, 3),)  # the late record 2 left its gap open
    back = order(3, "k", 2, headers=[(H.ATTEMPT, b"1")])
    second = run([back], states={b"k": state})
    assert [f.record.offset for f in second.forwards] == [3]
    assert second.states[b"k"].gaps == () and second.counters.gaps_filled == 1


def test_failing_transform_sends_record_to_dlq_without_advancing_state():
    def explode(doc):
        if doc["seq"] == 2:
            raise ValueError("boom")
        if doc["seq"] == 3:
            raise RetryableError("try later")
        return {**doc, "enriched": True}

    stream = Stream(domain="sales", dataset="orders", key_field="order_id", transform=explode)
    result = run([order(0, "k", 1), order(1, "k", 2), order(2, "k", 3)], stream=stream)
    assert [orjson.loads(f.value)["enriched"] for f in result.forwards] == [True]
    assert [d.reason for d in result.dead_letters] == [Reason.TRANSFORM_ERROR, Reason.TRANSFORM_RETRYABLE]
    assert result.dead_letters[0].exc_class == "builtins.ValueError" and "boom" in result.dead_letters[0].stacktrace
    assert result.states[b"k"].next_seq == 2


def test_replayed_duplicate_is_forwarded_again_without_moving_the_tracker():
    states = {b"k": run([order(0, "k", 1), order(1, "k", 2)]).states[b"k"]}
    replay = order(5, "k", 1, headers=[("streamlake.replay.id", b"r1")])
    result = run([replay], states=states)
    assert len(result.forwards) == 1 and result.counters.replayed == 1
    assert not result.states  # tracker untouched


def test_policy_can_send_duplicates_to_dlq():
    stream = Stream(domain="sales", dataset="orders", key_field="order_id",
                    policies=Policies(duplicate=Action.DLQ))
    result = run([order(0, "k", 1), order(1, "k", 1)], stream=stream)
    assert [d.reason for d in result.dead_letters] == [Reason.ORDERING_DUPLICATE]


def test_required_fields_are_checked_by_json_type():
    stream = Stream(domain="sales", dataset="orders", key_field="order_id",
                    required_fields={"amount": "number", "paid": "boolean"})
    ok = rec(0, b"k", b'{"order_id":"k","seq":1,"amount":2,"paid":false}')
    missing = rec(1, b"k", b'{"order_id":"k","seq":2,"paid":true}')
    wrong = rec(2, b"k", b'{"order_id":"k","seq":3,"amount":true,"paid":true}')
    result = run([ok, missing, wrong], stream=stream)
    assert len(result.forwards) == 1
    assert [d.reason for d in result.dead_letters] == [Reason.MISSING_FIELD, Reason.WRONG_TYPE]


def test_dlq_headers_keep_originals_and_count_attempts():
    original = rec(7, b"k", b"x", headers=[("trace", b"\x01\x02")])
    letter = DeadLetter(original, Reason.INVALID_JSON, "bad", stacktrace="x" * 20000)
    headers = build_dlq_headers(letter, "group", "host:1", now_ms=123)
    assert headers[0] == ("trace", b"\x01\x02")
    ctx = read_dlq_context(headers)
    assert ctx[H.ATTEMPT] == "1" and ctx[H.FIRST_FAILED_AT] == "123" and ctx[H.STAGE] == "decode"
    assert len(dict(headers)[H.EXC_STACKTRACE]) <= 8 * 1024
    again = DeadLetter(SourceRecord("t", 0, 9, 0, b"k", b"x", tuple(headers)), Reason.INVALID_JSON, "bad")
    ctx2 = read_dlq_context(build_dlq_headers(again, "group", "host:2", now_ms=999))
    assert ctx2[H.ATTEMPT] == "2" and ctx2[H.FIRST_FAILED_AT] == "123"
    assert sum(1 for k, _ in build_dlq_headers(again, "g", "w", 1) if k == H.ATTEMPT) == 1


def test_reread_record_that_went_to_the_dlq_is_not_dead_lettered_again():
    first = run([order(0, "k", 1), order(1, "k", 3), order(2, "k", 2)])
    assert [d.record.offset for d in first.dead_letters] == [2]
    again = process_batch(ORDERS, [order(2, "k", 2)], {b"k": first.states[b"k"]}.get, 8,
                          {"sales.orders.raw.v1": 2})
    assert not again.dead_letters and again.counters.dropped_by_class == {"already-in-dlq": 1}


def test_reread_replayed_copy_is_not_re_emitted_twice():
    states = {b"k": run([order(0, "k", 1)]).states[b"k"]}
    replay = order(7, "k", 1, headers=[("streamlake.replay.id", b"r1")])
    assert len(process_batch(ORDERS, [replay], states.get, 8, {"sales.orders.raw.v1": 6}).forwards) == 1
    reread = process_batch(ORDERS, [replay], states.get, 8, {"sales.orders.raw.v1": 7})
    assert not reread.forwards and reread.counters.dropped_by_class == {"duplicate": 1}
