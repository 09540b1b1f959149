"""The lifecycle table and gate (gq._core.states) against the reference table."""

import itertools

import pytest
from hypothesis import given, strategies as st

from gq._core import states
from gq._core.codec import JobRecord
from gq.errors import InvalidTransition
from reference import REFERENCE_STATE_NAMES, REFERENCE_TRANSITIONS

NAMES = REFERENCE_STATE_NAMES
ALL_PAIRS = list(itertools.product(range(len(NAMES)), repeat=2))


def test_constants():
    assert states.STATE_NAMES == NAMES
    assert states.NUM_STATES == 7
    for value, name in enumerate(NAMES):
        assert getattr(states, name.upper()) == value
        assert type(getattr(states, name.upper())) is int
    assert states.INITIAL_STATES == REFERENCE_TRANSITIONS["submit"]


def test_allowed_transitions_match_reference():
    expected = {(s, d) for s, dsts in REFERENCE_TRANSITIONS.items() if s != "submit"
                for d in dsts}
    assert states.ALLOWED_TRANSITIONS == expected
    assert isinstance(states.ALLOWED_TRANSITIONS, frozenset)


@pytest.mark.parametrize("src,dst", ALL_PAIRS,
                         ids=[f"{NAMES[s]}->{NAMES[d]}" for s, d in ALL_PAIRS])
def test_every_pair(src, dst):
    allowed = NAMES[dst] in REFERENCE_TRANSITIONS[NAMES[src]]
    assert states.can_transition(src, dst) is allowed
    if allowed:
        assert states.check_transition(src, dst, "j1") is None
    else:
        with pytest.raises(InvalidTransition) as info:
            states.check_transition(src, dst, "j1")
        err = info.value
        assert (err.src, err.dst, err.job_id) == (NAMES[src], NAMES[dst], "j1")
        assert NAMES[src] in str(err) and NAMES[dst] in str(err)
        assert "'j1'" in str(err)


@pytest.mark.parametrize("state", range(7))
def test_initial_states(state):
    if NAMES[state] in REFERENCE_TRANSITIONS["submit"]:
        states.check_initial(state, "j")
    else:
        with pytest.raises(InvalidTransition) as info:
            states.check_initial(state, "j")
        assert (info.value.src, info.value.dst) == ("submit", NAMES[state])
        assert NAMES[state] in str(info.value)


@pytest.mark.parametrize("state", range(7))
def test_is_terminal(state):
    assert states.is_terminal(state) is (not REFERENCE_TRANSITIONS[NAMES[state]])
    assert states.is_terminal(state) is (NAMES[state] in ("completed", "failed", "cancelled"))


@pytest.mark.parametrize("bad", [-1, 7, 8, 255, 2**31 - 1, -2**31])
def test_out_of_range_is_value_error(bad):
    for call in (lambda: states.can_transition(bad, 0),
                 lambda: states.can_transition(0, bad),
                 lambda: states.check_transition(bad, 0),
                 lambda: states.check_transition(0, bad),
                 lambda: states.check_initial(bad),
                 lambda: states.is_terminal(bad)):
        with pytest.raises(ValueError, match=str(bad)):
            call()


def test_non_int_state_is_type_error():
    with pytest.raises(TypeError):
        states.can_transition("pending", 1)
    with pytest.raises(OverflowError):
        states.check_transition(2**40, 0)


def test_record_state_is_read_only():
    rec = JobRecord("j", "t", b"{}", states.PENDING)
    with pytest.raises(AttributeError):
        rec.state = states.RUNNING
    assert rec.state == states.PENDING


def test_new_record_goes_through_submit_gate():
    JobRecord("j", "t", b"{}", states.SCHEDULED)
    with pytest.raises(InvalidTransition) as info:
        JobRecord("j", "t", b"{}", states.RUNNING)
    assert info.value.src == "submit" and info.value.job_id == "j"
    with pytest.raises(ValueError):
        JobRecord("j", "t", b"{}", 9)


@given(st.lists(st.integers(0, 6), max_size=30))
def test_move_to_is_the_gate(path):
    rec = JobRecord("walker", "t", b"{}", states.PENDING)
    for dst in path:
        src = rec.state
        if NAMES[dst] in REFERENCE_TRANSITIONS[NAMES[src]]:
            rec.move_to(dst)
            assert rec.state == dst
        else:
            with pytest.raises(InvalidTransition) as info:
                rec.move_to(dst)
            assert rec.state == src        # a refused move changes nothing
            assert info.value.job_id == "walker"
            assert NAMES[src] in str(info.value) and NAMES[dst] in str(info.value)


def test_terminal_message():
    rec = JobRecord("j", "t", b"{}", states.PENDING)
    rec.move_to(states.CANCELLED)
    with pytest.raises(InvalidTransition, match="terminal"):
        rec.move_to(states.SCHEDULED)
