from streamlake.core.sequence import KeyState, SequenceClass, classify_sequence


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
