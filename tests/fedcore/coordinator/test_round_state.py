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


J, SU, ST, SA = Phase.JOINING, Phase.SETUP, Phase.STATS, Phase.STATS_AGG
TR, AG, EV, DN, AB = Phase.TRAIN, Phase.AGGREGATE, Phase.EVALUATE, Phase.DONE, Phase.ABORTED

# Written out by hand from state.py's diagram and the calls in phases.py, never derived from
# TRANSITIONS: a move added to (or dropped from) the table must be added here too, on purpose.
LEGAL_LITERAL = frozenset(
    {
        # JOINING: start any work (EVALUATE first after a restart with an unevaluated round), wait on,
        # finish (a restart after the last round, or a stop), abort (too many failed attempts)
        (J, SU),
        (J, ST),
        (J, TR),
        (J, EV),
        (J, J),
        (J, DN),
        (J, AB),
        # SETUP: next set-up attempt, then the statistics or (no statistics) the first round
        (SU, SU),
        (SU, ST),
        (SU, TR),
        (SU, J),
        (SU, AB),
        (ST, SA),
        (ST, ST),
        (ST, J),
        (ST, AB),
        # STATS_AGG: a failed sum retries STATS; DONE on a stop request
        (SA, TR),
        (SA, ST),
        (SA, J),
        (SA, DN),
        (SA, AB),
        (TR, AG),
        (TR, TR),
        (TR, J),
        (TR, AB),
        # AGGREGATE: evaluate, or the next round (not evaluated), a failed sum retries TRAIN; DONE on a stop
        (AG, EV),
        (AG, TR),
        (AG, J),
        (AG, DN),
        (AG, AB),
        # EVALUATE: SETUP when a restart evaluated first and the mode's set-up is still to do
        (EV, SU),
        (EV, TR),
        (EV, J),
        (EV, DN),
        (EV, AB),
        # DONE and ABORTED: no way out
    }
)
LEGAL = sorted(LEGAL_LITERAL)
ILLEGAL = sorted(set(itertools.product(Phase, Phase)) - LEGAL_LITERAL)


def test_every_phase_has_a_transition_entry():
    assert set(TRANSITIONS) == set(Phase)


def test_transition_table_is_exactly_the_literal_list():
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table - LEGAL_LITERAL == set(), "moves in TRANSITIONS that the literal list does not allow"
    assert LEGAL_LITERAL - table == set(), "moves of the literal list missing from TRANSITIONS"


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
