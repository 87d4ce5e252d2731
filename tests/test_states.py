"""The transition table: every (current, target) pair, decided in one place."""

from __future__ import annotations

import itertools

import pytest

from taskloom import InvalidTransitionError, TaskState
from taskloom.states import ACTIVE_STATES, TERMINAL_STATES, check_transition, sources

_S = TaskState

# The table as the design draws it, written out here so that a change to it is deliberate.
ALLOWED: dict[TaskState, set[TaskState]] = {
    _S.SUBMITTED: {_S.WORKING, _S.CANCELLED, _S.EXPIRED, _S.REJECTED, _S.FAILED},
    _S.WORKING: {_S.INPUT_REQUIRED, _S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED},
    _S.INPUT_REQUIRED: {_S.WORKING, _S.FAILED, _S.CANCELLED, _S.EXPIRED},
}
TERMINAL = {_S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED}


def test_terminal_and_active_states_split_all_states() -> None:
    assert TERMINAL_STATES == TERMINAL
    assert ACTIVE_STATES == set(ALLOWED)
    assert TERMINAL_STATES | ACTIVE_STATES == set(TaskState)
    assert not TERMINAL_STATES & ACTIVE_STATES
    assert {s for s in TaskState if s.terminal} == TERMINAL


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(TaskState, TaskState)), ids=str
)
def test_check_transition(current: TaskState, target: TaskState) -> None:
    if current in TERMINAL:
        assert check_transition("t-1", current, target) is False
    elif target in ALLOWED[current]:
        assert check_transition("t-1", current, target) is True
    else:
        with pytest.raises(InvalidTransitionError) as info:
            check_transition("t-1", current, target)
        message = str(info.value)
        assert "'t-1'" in message
        assert f"it is {current.value}" in message
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current]))
        assert f"may only become {allowed}" in message


def test_nothing_goes_back_to_submitted() -> None:
    for current in ACTIVE_STATES:
        with pytest.raises(InvalidTransitionError):
            check_transition("t-1", current, _S.SUBMITTED)


def test_completing_an_unstarted_task_says_how_to_start_it() -> None:
    with pytest.raises(InvalidTransitionError, match="enter it first"):
        check_transition("t-1", _S.SUBMITTED, _S.COMPLETED)
    with pytest.raises(InvalidTransitionError, match="answer its input request"):
        check_transition("t-1", _S.INPUT_REQUIRED, _S.COMPLETED)


@pytest.mark.parametrize("target", list(TaskState), ids=str)
def test_sources_agree_with_the_table(target: TaskState) -> None:
    expected = sorted(s.value for s, targets in ALLOWED.items() if target in targets)
    found = sources(target)
    assert isinstance(found, tuple)
    assert list(found) == expected
    assert all(type(s) is str for s in found)
    assert not set(found) & {s.value for s in TERMINAL}
    for current in TaskState:
        if current.value in found:
            assert check_transition("t-1", current, target) is True


def test_every_state_is_reachable_from_submitted() -> None:
    reached = {_S.SUBMITTED}
    frontier = [_S.SUBMITTED]
    while frontier:
        for target in ALLOWED.get(frontier.pop(), set()):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(TaskState)
