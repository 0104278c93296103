"""The pure DLQ rules: retry schedule and verdicts, filters, header styles, previews, redrive headers, tallies."""

from __future__ import annotations

import pytest

from streamlake.core.dlq import DeadLetter, H, Reason, build_dlq_headers
from streamlake.core.dlq_policy import (
    REDRIVE_DLQ_OFFSET,
    REDRIVE_DLQ_PARTITION,
    REDRIVE_DLQ_TOPIC,
    REDRIVE_ID,
    DlqEntry,
    DlqError,
    DlqFilter,
    DlqTally,
    HeaderStyle,
    RedriveVerdict,
    RetryVerdict,
    decide_retry,
    judge_redrive,
    parse_time,
    redrive_headers,
    render_preview,
    retry_delay,
    retry_schedule,
    styled_headers,
)
from streamlake.core.records import SourceRecord
from streamlake.errors import TopicNameError
from streamlake.naming import redrive_group_for
from streamlake.runtime.dlq_agents import empty_counts, fold_counts

SRC = "sales.orders.raw.v1"
DLQ = "sales.orders.raw.v1.dlq"


def entry(reason: Reason = Reason.TRANSFORM_ERROR, attempt_before: int = 0, offset: int = 0, ts: int = 1_000,
          key: bytes | None = b"k1", value: bytes | None = b'{"a":1}', headers: list | None = None) -> DlqEntry:
    original = list(headers or [("trace", b"t1")])
    if attempt_before:
        original += [(H.ATTEMPT, str(attempt_before).encode()), (H.FIRST_FAILED_AT, b"500")]
    rec = SourceRecord(SRC, 3, 42, 900, key, value, tuple(original))
    hdrs = build_dlq_headers(DeadLetter(rec, reason, "boom"), "grp", "w1", ts)
    return DlqEntry.of(DLQ, 3, offset, ts, key, value, hdrs)


def test_backoff_doubles_per_attempt_and_is_capped():
    assert [retry_delay(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert retry_schedule(3, 0.2, 2.0) == [0.2, 0.4]
    assert retry_delay(10_000, 1.0, 30.0) == 30.0
    with pytest.raises(ValueError):
        retry_delay(0, 1.0, 30.0)


def test_retryable_record_is_retried_until_the_attempt_cap_then_parked():
    assert decide_retry(entry(Reason.TRANSFORM_RETRYABLE), 3) is RetryVerdict.RETRY          # attempt 1
    assert decide_retry(entry(Reason.TRANSFORM_RETRYABLE, 1), 3) is RetryVerdict.RETRY       # attempt 2
    assert decide_retry(entry(Reason.TRANSFORM_RETRYABLE, 2), 3) is RetryVerdict.PARK_EXHAUSTED  # attempt 3
    assert decide_retry(entry(Reason.TRANSFORM_ERROR), 3) is RetryVerdict.PARK
    assert decide_retry(entry(Reason.INVALID_JSON), 3) is RetryVerdict.PARK


def test_record_without_dlq_headers_is_malformed_not_an_error():
    bare = DlqEntry.of(DLQ, 0, 1, 1, None, b"\xff", [])
    assert decide_retry(bare, 3) is RetryVerdict.MALFORMED
    assert any(H.REASON in p for p in bare.problems())
    odd = DlqEntry.of(DLQ, 0, 1, 1, b"k", b"v", [(H.REASON, b"no-such"), (H.STAGE, b"x"), (H.ORIGIN_TOPIC, b"t"),
                                                 (H.ORIGIN_PARTITION, b"-1"), (H.ATTEMPT, b"two")])
    assert decide_retry(odd, 3) is RetryVerdict.MALFORMED
    assert judge_redrive(odd, 3) is RedriveVerdict.REFUSED_NO_ORIGIN


def test_loop_guard_refuses_records_at_the_attempt_cap():
    assert judge_redrive(entry(attempt_before=1), 3) is RedriveVerdict.SEND    # attempt 2
    assert judge_redrive(entry(attempt_before=2), 3) is RedriveVerdict.REFUSED_ATTEMPT_CAP
    assert judge_redrive(entry(attempt_before=2), 4) is RedriveVerdict.SEND


def test_redrive_headers_keep_originals_carry_attempt_and_add_provenance():
    e = entry(attempt_before=1, offset=17)
    headers = redrive_headers(e, "fix-1")
    names = [k for k, _ in headers]
    assert ("trace", b"t1") in headers
    assert dict(headers)[H.ATTEMPT] == b"2" and dict(headers)[H.FIRST_FAILED_AT] == b"500"
    assert not {H.REASON, H.STAGE, H.ORIGIN_TOPIC, H.EXC_STACKTRACE} & set(names)
    assert dict(headers)[REDRIVE_ID] == b"fix-1"
    assert (dict(headers)[REDRIVE_DLQ_TOPIC], dict(headers)[REDRIVE_DLQ_PARTITION],
            dict(headers)[REDRIVE_DLQ_OFFSET]) == (DLQ.encode(), b"3", b"17")
    # a second redrive replaces the first one's provenance instead of piling it up
    again = DlqEntry.of(DLQ, 0, 5, 1, e.key, e.value, headers + [(H.REASON, b"transform-error")])
    assert [k for k, _ in redrive_headers(again, "fix-2")].count(REDRIVE_ID) == 1


def test_header_styles_rename_the_context_and_keep_everything_else():
    e = entry()
    connect = dict(styled_headers(e.headers, HeaderStyle.CONNECT))
    assert connect["__connect.errors.topic"] == SRC.encode()
    assert connect["__connect.errors.partition"] == b"3"
    assert connect["__connect.errors.exception.message"] == b"boom"
    assert connect["trace"] == b"t1"
    assert H.ATTEMPT in connect  # Connect has no slot for it: kept under its own name
    spring = dict(styled_headers(e.headers, HeaderStyle.SPRING))
    assert spring["kafka_dlt-original-topic"] == SRC.encode()
    assert spring["kafka_dlt-original-offset"] == b"42"
    assert spring["kafka_dlt-original-timestamp"] == b"900"
    assert styled_headers(e.headers, HeaderStyle.STREAMLAKE) == list(e.headers)
    assert len(styled_headers(e.headers, HeaderStyle.SPRING)) == len(e.headers)


def test_filter_matches_reason_stage_time_window_and_key():
    e = entry(Reason.INVALID_JSON, ts=2_000, key=b"k9")
    assert DlqFilter().matches(e)
    assert DlqFilter(reason="invalid-json", stage="decode").matches(e)
    assert not DlqFilter(reason="transform-error").matches(e)
    assert not DlqFilter(stage="process").matches(e)
    assert DlqFilter(since_ms=2_000, until_ms=2_001).matches(e)
    assert not DlqFilter(since_ms=2_001).matches(e)
    assert not DlqFilter(until_ms=2_000).matches(e)
    assert DlqFilter(key=b"k9").matches(e) and not DlqFilter(key=b"k1").matches(e)


def test_filter_rejects_unknown_codes_and_inverted_windows_with_what_to_use():
    with pytest.raises(DlqError, match="invalid-json"):
        DlqFilter(reason="bogus")
    with pytest.raises(DlqError, match="decode"):
        DlqFilter(stage="bogus")
    with pytest.raises(DlqError, match="earlier"):
        DlqFilter(since_ms=5, until_ms=5)


def test_parse_time_reads_iso_with_zone_and_treats_naive_as_utc():
    assert parse_time("1970-01-01T00:00:01Z") == 1000
    assert parse_time("1970-01-01T00:00:01") == 1000
    assert parse_time("1970-01-01T01:00:01+01:00") == 1000
    with pytest.raises(DlqError, match="ISO 8601"):
        parse_time("yesterday")


def test_preview_escapes_control_characters_and_shows_binary_as_escaped_bytes():
    assert render_preview(None) == "<null>"
    assert render_preview(b"") == "<empty>"
    assert render_preview(b'{"a": "x"}') == '{"a": "x"}'
    assert render_preview("\x1b[31mred\n".encode()) == "\\x1b[31mred\\x0a"
    assert render_preview(b"\xff\x00ab\\") == "binary b'\\xff\\x00ab\\\\'"
    assert render_preview("héllo".encode()) == "héllo"


def test_preview_of_a_large_value_is_cut_and_says_how_much_is_left():
    text = render_preview(b"x" * 10_000, limit=50)
    assert text == "x" * 50 + "… (+9950 chars)"
    binary = render_preview(b"\x00" * 1000, limit=40)
    assert binary == "binary b'" + "\\x00" * 10 + "… (+990 bytes)'"


def test_tally_counts_by_reason_with_failure_times_and_parks_what_is_not_retried():
    tally = DlqTally(max_attempts=3)
    tally.add(entry(Reason.TRANSFORM_RETRYABLE, ts=5))
    tally.add(entry(Reason.TRANSFORM_RETRYABLE, 2, ts=9))
    tally.add(entry(Reason.INVALID_JSON, ts=7))
    tally.add(DlqEntry.of(DLQ, 0, 9, 3, None, None, []))
    data = tally.to_dict()
    assert (data["records"], data["retried"], data["parked"], data["exhausted"], data["malformed"]) == (4, 1, 3, 1, 1)
    assert data["by_stage"] == {"decode": 1, "process": 2, "unknown": 1}
    retryable = next(r for r in data["by_reason"] if r["reason"] == "transform-retryable")
    assert retryable["count"] == 2 and retryable["oldest"] < retryable["newest"]


def test_agent_counts_fold_is_idempotent_for_re_read_offsets():
    counts = empty_counts()
    counts = fold_counts(counts, entry(Reason.TRANSFORM_RETRYABLE, offset=0, ts=10), RetryVerdict.RETRY)
    counts = fold_counts(counts, entry(Reason.TRANSFORM_ERROR, offset=1, ts=20), RetryVerdict.PARK)
    again = fold_counts(counts, entry(Reason.TRANSFORM_ERROR, offset=1, ts=20), RetryVerdict.PARK)
    assert again == counts
    assert (counts["records"], counts["retried"], counts["parked"], counts["hwm"]) == (2, 1, 1, 1)
    assert counts["by_reason"]["process/transform-error"] == {"count": 1, "oldest": 20, "newest": 20}


def test_redrive_group_is_named_from_the_id_and_rejects_bad_ids():
    assert redrive_group_for("fix-1", "app") == "app-redrive-fix-1"
    for bad in ("", "Fix", "a_b", "-a", "x" * 65):
        with pytest.raises(TopicNameError):
            redrive_group_for(bad, "app")
