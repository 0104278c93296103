import pytest

from streamlake.core.sequence import (
    KeyState,
    SequenceClass,
    StateCodecError,
    classify_sequence,
    decode_key_state,
    encode_key_state,
)


def run(seqs, max_gaps=64):
    state, classes = None, []
    for seq in seqs:
        verdict = classify_sequence(state, seq, max_gaps)
        classes.append(verdict.cls)
        state = verdict.state
    return classes, state


def test_first_record_sets_the_baseline():
    verdict = classify_sequence(None, 41)
    assert verdict.cls is SequenceClass.IN_ORDER and verdict.state == KeyState(42, (), 41)


def test_gap_is_recorded_and_late_record_fills_it_and_is_not_duplicate():
    classes, state = run([1, 2, 5, 3, 4])
    assert classes == [SequenceClass.IN_ORDER, SequenceClass.IN_ORDER, SequenceClass.GAP,
                       SequenceClass.LATE, SequenceClass.LATE]
    assert state == KeyState(6, (), 1)


def test_late_record_seen_twice_is_a_duplicate_the_second_time():
    classes, _ = run([1, 4, 2, 2])
    assert classes[-2:] == [SequenceClass.LATE, SequenceClass.DUPLICATE]


def test_filling_the_middle_of_a_gap_splits_it():
    verdict = classify_sequence(KeyState(10, ((2, 8),)), 5)
    assert verdict.cls is SequenceClass.LATE and verdict.state.gaps == ((2, 5), (6, 8))
    assert not verdict.gap_filled


def test_replayed_old_number_is_a_duplicate():
    assert run([1, 2, 3, 1])[0][-1] is SequenceClass.DUPLICATE


def test_gap_list_is_bounded_and_forgotten_range_is_late_not_dropped():
    seqs = [0] + [2 * i for i in range(1, 6)]  # gaps at 1, 3, 5, 7, 9
    classes, state = run(seqs, max_gaps=3)
    assert len(state.gaps) == 3 and state.gaps[0] == (5, 6)
    assert state.horizon == 4
    verdict = classify_sequence(state, 1, max_gaps=3)  # its gap was forgotten
    assert verdict.cls is SequenceClass.LATE and verdict.ambiguous
    assert classify_sequence(state, 2, max_gaps=3).cls is SequenceClass.LATE  # ambiguous below the horizon too
    assert classify_sequence(state, 6, max_gaps=3).cls is SequenceClass.DUPLICATE


def test_state_round_trips_through_json():
    state = KeyState(9, ((1, 3), (5, 7)), 1)
    assert KeyState.from_json(state.to_json()) == state


def test_number_below_the_baseline_is_late_not_duplicate():
    # The key's first record was delayed (or failed into the DLQ) and seq 5 set the baseline.
    classes, _ = run([5, 6, 3])
    assert classes[-1] is SequenceClass.LATE


# -- changelog codec


@pytest.mark.parametrize("state", [
    KeyState(1, (), 0),
    KeyState(2**32 - 1, (), 2**32 - 2),
    KeyState(2**32, (), 5),
    KeyState(2**63 - 1, (), 2**63 - 2),
    KeyState(9, ((1, 3), (5, 7)), 1),
    KeyState(100, tuple((i * 2, i * 2 + 1) for i in range(64)), 0),
])
def test_state_round_trips_through_the_binary_codec(state):
    assert decode_key_state(encode_key_state(state)) == state


def test_a_key_without_gaps_costs_nine_bytes_and_a_key_with_gaps_sixteen_more_per_gap():
    assert len(encode_key_state(KeyState(43, (), 42))) == 9
    assert len(encode_key_state(KeyState(2**40, (), 42))) == 17
    assert len(encode_key_state(KeyState(43, ((3, 5), (7, 9)), 1))) == 17 + 2 * 16


def test_values_written_as_json_before_the_codec_still_decode():
    assert decode_key_state(b"[9,[[1,3],[5,7]],1]") == KeyState(9, ((1, 3), (5, 7)), 1)
    assert decode_key_state(b"[43,[],0]") == KeyState(43, (), 0)


@pytest.mark.parametrize("raw", [b"", b"\x01short", b"\x03" + bytes(16), b"\x02" + bytes(16), b"\x02" + bytes(20),
                                 b"\x07" + bytes(16), b"[1,", b'["a",[],0]'])
def test_an_unreadable_state_is_a_clear_error(raw):
    with pytest.raises(StateCodecError, match="per-key state"):
        decode_key_state(raw)
