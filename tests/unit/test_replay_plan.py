"""Replay planning without a broker: formats, clamping, modes, export, window bounds."""

from __future__ import annotations

import pytest

from streamlake.core.replay import (
    ORIGIN_OFFSET_HEADER,
    ORIGIN_PARTITION_HEADER,
    ORIGIN_TIMESTAMP_HEADER,
    ORIGIN_TOPIC_HEADER,
    REPLAY_ID_HEADER,
    ActiveGroupError,
    GroupState,
    PartitionFacts,
    ReplayDecision,
    ReplayInputError,
    ResetMode,
    ResetSpec,
    TopicScope,
    build_reset_plan,
    build_window_plan,
    check_group_inactive,
    clamp_offset,
    decide_window_record,
    export_plan_csv,
    parse_iso_duration,
    parse_kafka_datetime,
    parse_reset_file,
    parse_topic_scope,
    replay_headers,
    timestamp_for_duration,
)
from streamlake.core.replay_options import reset_spec_from_options

# 2020-11-10T16:51:38.198Z, the example in Kafka's Utils.getDateTime docs
EXAMPLE_MS = 1605027098198
HOUR_NS = 3_600 * 10**9


@pytest.mark.parametrize("text, expected", [
    ("2020-11-10T16:51:38.198", EXAMPLE_MS),             # no zone: UTC, like Kafka
    ("2020-11-10T16:51:38.198Z", EXAMPLE_MS),
    ("2020-11-10T18:51:38.198+02:00", EXAMPLE_MS),
    ("2020-11-10T18:51:38.198+0200", EXAMPLE_MS),
    ("2020-11-10T18:51:38.198+02", EXAMPLE_MS),
    ("2020-11-10T11:21:38.198-05:30", EXAMPLE_MS),
    ("2020-1-5T1:2:3.004Z", 1578186123004),              # Java's parser takes short fields
    ("1970-01-01T00:00:00.000Z", 0),
])
def test_kafka_datetime_formats_parse_to_epoch_ms(text: str, expected: int) -> None:
    assert parse_kafka_datetime(text) == expected


@pytest.mark.parametrize("text", [
    "2020-11-10",                     # no 'T': Kafka refuses
    "2020-11-10T16:51:38",            # Kafka requires milliseconds
    "2020-11-10 16:51:38.198",
    "2020-13-10T16:51:38.198",        # non-lenient: month 13
    "2021-02-29T00:00:00.000",        # not a leap year
    "2020-11-10T24:00:00.000",
    "2020-11-10T16:51:38.198Zjunk",
    "1969-12-31T23:59:59.999Z",       # negative timestamps mean latest/earliest to ListOffsets
])
def test_malformed_or_ambiguous_datetime_is_rejected_with_the_format(text: str) -> None:
    with pytest.raises(ReplayInputError):
        parse_kafka_datetime(text)


def test_short_milliseconds_are_refused_because_kafka_reads_them_as_a_count() -> None:
    with pytest.raises(ReplayInputError, match="three digits"):
        parse_kafka_datetime("2020-11-10T16:51:38.5Z")


def test_hhmm_zone_with_minutes_is_refused_because_kafka_drops_the_minutes() -> None:
    with pytest.raises(ReplayInputError, match=r"\+05:30"):
        parse_kafka_datetime("2020-11-10T16:51:38.198+0530")


@pytest.mark.parametrize("text, ns", [
    ("PT1H", HOUR_NS),
    ("pt30m", 30 * 60 * 10**9),
    ("P1DT2H30M", 26 * HOUR_NS + 30 * 60 * 10**9),
    ("P2D", 48 * HOUR_NS),
    ("PT0.5S", 5 * 10**8),
    ("PT-1.5S", -15 * 10**8),
    ("-PT1H", -HOUR_NS),
    ("PT1H-10M", HOUR_NS - 10 * 60 * 10**9),
])
def test_iso_durations_parse_like_java_duration(text: str, ns: int) -> None:
    assert parse_iso_duration(text) == ns


@pytest.mark.parametrize("text", ["P1Y", "P1M", "P1W", "PT", "P", "P1DT", "1H", "PT1.5H", ""])
def test_durations_java_rejects_are_rejected(text: str) -> None:
    with pytest.raises(ReplayInputError):
        parse_iso_duration(text)


def test_by_duration_means_now_minus_duration_in_ms() -> None:
    now_ns = 1_700_000_000_123_456_789
    assert timestamp_for_duration(HOUR_NS, now_ns) == 1_700_000_000_123 - 3_600_000


def test_topic_scope_parses_partitions_like_kafka() -> None:
    assert parse_topic_scope("orders") == TopicScope("orders")
    assert parse_topic_scope("orders:2,0,2") == TopicScope("orders", (0, 2))
    for bad in ("orders:", "orders:a", "orders:1:2", ":1", "orders:-1"):
        with pytest.raises(ReplayInputError):
            parse_topic_scope(bad)


def test_reset_file_reads_kafka_export_and_multi_group_format() -> None:
    assert parse_reset_file("a.b.raw.v1,0,5\na.b.raw.v1,1,7\n", "g") == {("a.b.raw.v1", 0): 5, ("a.b.raw.v1", 1): 7}
    multi = "g,t,0,5\nother,t,0,9\ng,t,1,3\n"
    assert parse_reset_file(multi, "g") == {("t", 0): 5, ("t", 1): 3}
    with pytest.raises(ReplayInputError, match="no lines for group"):
        parse_reset_file(multi, "missing")
    with pytest.raises(ReplayInputError, match="integers"):
        parse_reset_file("t,zero,5\n", "g")
    with pytest.raises(ReplayInputError, match="empty"):
        parse_reset_file("\n\n", "g")


@pytest.mark.parametrize("offset, expected", [(-5, 3), (3, 3), (7, 7), (10, 10), (11, 10)])
def test_clamp_to_earliest_and_latest(offset: int, expected: int) -> None:
    assert clamp_offset(offset, 3, 10) == expected


FACTS = [
    PartitionFacts("t", 1, earliest=0, latest=10, committed=2, offset_for_time=None),
    PartitionFacts("t", 0, earliest=3, latest=10, committed=5, offset_for_time=4),
]


def _plan(spec: ResetSpec, facts=FACTS):
    return build_reset_plan("g", GroupState.EMPTY, spec, facts)


def test_to_datetime_uses_time_index_and_falls_back_to_end_offset() -> None:
    plan = _plan(ResetSpec(ResetMode.TO_DATETIME, timestamp_ms=1, argument="x"))
    assert plan.targets == {("t", 0): 4, ("t", 1): 10}
    assert [r.partition for r in plan.rows] == [0, 1]          # sorted
    assert plan.rows[0].moves == -1 and plan.rows[1].moves == 8


def test_to_offset_and_shift_by_are_clamped() -> None:
    assert _plan(ResetSpec(ResetMode.TO_OFFSET, offset=1)).targets == {("t", 0): 3, ("t", 1): 1}
    assert _plan(ResetSpec(ResetMode.TO_OFFSET, offset=99)).targets == {("t", 0): 10, ("t", 1): 10}
    down = _plan(ResetSpec(ResetMode.SHIFT_BY, shift=-4))
    assert down.targets == {("t", 0): 3, ("t", 1): 0}
    assert all(r.clamped for r in down.rows)
    assert _plan(ResetSpec(ResetMode.SHIFT_BY, shift=3)).targets == {("t", 0): 8, ("t", 1): 5}


def test_shift_by_without_committed_offset_is_refused_like_kafka() -> None:
    facts = [PartitionFacts("t", 0, 0, 10, committed=None)]
    with pytest.raises(ReplayInputError, match="no committed offset"):
        _plan(ResetSpec(ResetMode.SHIFT_BY, shift=1), facts)


def test_earliest_latest_and_file_modes() -> None:
    assert _plan(ResetSpec(ResetMode.TO_EARLIEST)).targets == {("t", 0): 3, ("t", 1): 0}
    assert _plan(ResetSpec(ResetMode.TO_LATEST)).targets == {("t", 0): 10, ("t", 1): 10}
    spec = ResetSpec(ResetMode.FROM_FILE, file_offsets={("t", 0): 0, ("t", 1): 6})
    assert _plan(spec).targets == {("t", 0): 3, ("t", 1): 6}


def test_export_is_kafka_csv_topic_partition_offset() -> None:
    plan = _plan(ResetSpec(ResetMode.TO_LATEST))
    assert export_plan_csv(plan) == "t,0,10\nt,1,10\n"
    assert parse_reset_file(export_plan_csv(plan), "g") == plan.targets


def test_export_quotes_long_topic_names_like_kafkas_jackson_writer() -> None:
    long_topic = "abcdefghijklmnopqrstuvwxy"           # 25 characters: Kafka quotes it
    facts = [PartitionFacts(long_topic, 0, 0, 4), PartitionFacts("abcdefghijklmnopqrstuvwx", 1, 0, 4)]
    plan = _plan(ResetSpec(ResetMode.TO_LATEST), facts)
    assert export_plan_csv(plan) == 'abcdefghijklmnopqrstuvwx,1,4\n"abcdefghijklmnopqrstuvwxy",0,4\n'
    assert parse_reset_file(export_plan_csv(plan), "g") == plan.targets


def test_active_group_is_refused_naming_group_and_state() -> None:
    check_group_inactive("g", GroupState.EMPTY, 0)
    check_group_inactive("g", GroupState.DEAD, 0)
    with pytest.raises(ActiveGroupError) as err:
        check_group_inactive("orders-app", GroupState.STABLE, 2)
    assert "orders-app" in str(err.value) and "Stable" in str(err.value) and "Stop its workers" in str(err.value)
    with pytest.raises(ActiveGroupError):
        check_group_inactive("g", GroupState.PREPARING_REBALANCE, 0)


def test_window_plan_bounds_partitions_by_time_index_and_end_offset() -> None:
    plan = build_window_plan("t", "t", 100, 200, "rid",
                             start_offsets={0: 4, 1: None, 2: 0},
                             end_time_offsets={0: 9, 1: None, 2: None},
                             end_offsets={0: 12, 1: 7, 2: 5})
    assert [(p.partition, p.first_offset, p.stop_offset) for p in plan.partitions] == [(0, 4, 9), (1, 7, 7), (2, 0, 5)]
    assert plan.upper_bound == 10
    with pytest.raises(ReplayInputError):
        build_window_plan("t", "t", 200, 200, "rid", {}, {}, {})


def test_window_includes_start_excludes_end_and_filters_keys() -> None:
    plan = build_window_plan("t", "t", 100, 200, "rid", {0: 0}, {0: 10}, {0: 10}, key=b"k1")
    part = plan.partitions[0]
    assert decide_window_record(plan, part, 1, 100, b"k1") is ReplayDecision.REPLAY
    assert decide_window_record(plan, part, 2, 199, b"k2") is ReplayDecision.SKIP_KEY
    assert decide_window_record(plan, part, 3, 99, b"k1") is ReplayDecision.SKIP_BEFORE_START
    assert decide_window_record(plan, part, 4, 200, b"k1") is ReplayDecision.STOP
    assert decide_window_record(plan, part, 10, 150, b"k1") is ReplayDecision.STOP


def test_replay_headers_keep_originals_and_replace_old_provenance() -> None:
    original = [("trace", b"abc"), (REPLAY_ID_HEADER, b"old"), ("seq", b"7")]
    headers = replay_headers(original, "rid", "t", 3, 42, 1000)
    assert headers[:2] == [("trace", b"abc"), ("seq", b"7")]
    assert dict(headers[2:]) == {
        REPLAY_ID_HEADER: b"rid", ORIGIN_TOPIC_HEADER: b"t", ORIGIN_PARTITION_HEADER: b"3",
        ORIGIN_OFFSET_HEADER: b"42", ORIGIN_TIMESTAMP_HEADER: b"1000",
    }


def test_exactly_one_reset_scenario_is_required(tmp_path) -> None:
    with pytest.raises(ReplayInputError, match="exactly one"):
        reset_spec_from_options(group="g", to_earliest=True, to_latest=True)
    with pytest.raises(ReplayInputError, match="exactly one"):
        reset_spec_from_options(group="g")
    spec = reset_spec_from_options(group="g", by_duration="PT1H", now_ns=HOUR_NS * 2)
    assert (spec.mode, spec.timestamp_ms) == (ResetMode.BY_DURATION, 3_600_000)
    plan = tmp_path / "plan.csv"
    plan.write_text("t,0,4\n")
    assert reset_spec_from_options(group="g", from_file=plan).file_offsets == {("t", 0): 4}
    with pytest.raises(ReplayInputError, match="cannot read"):
        reset_spec_from_options(group="g", from_file=tmp_path / "missing.csv")
