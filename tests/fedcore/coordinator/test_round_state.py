"""The phase state machine: every listed transition works, every other one is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedcore.common.params import ParamSpec
from fedcore.coordinator.state import (
    TRANSITIONS,
    IllegalTransition,
    Phase,
    State,
    transition,
)


def _state(phase: Phase) -> State:
    return State(phase, 0, 0, 1, np.zeros(0, np.float32), ParamSpec(()), 0)


LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]
ILLEGAL = [(a, b) for a, b in itertools.product(Phase, Phase) if b not in TRANSITIONS[a]]


def test_every_phase_has_a_transition_entry():
    assert set(TRANSITIONS) == set(Phase)


@pytest.mark.parametrize(("src", "dst"), LEGAL)
def test_legal_transition_moves_the_phase(src, dst):
    st = _state(src)
    transition(st, dst)
    assert st.phase == dst


@pytest.mark.parametrize(("src", "dst"), ILLEGAL)
def test_illegal_transition_is_refused(src, dst):
    st = _state(src)
    with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
        transition(st, dst)
    assert st.phase == src


def test_terminal_phases_have_no_way_out():
    assert not TRANSITIONS[Phase.DONE] and not TRANSITIONS[Phase.ABORTED]
    assert len(ILLEGAL) > len(LEGAL)  # the table is a real restriction
