"""The coordinator's run state lives in its State, and a checkpoint carries exactly what outlives a round."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from fedcore.common.params import ParamSpec, TensorSpec
from fedcore.coordinator.state import Phase, State

#: the State fields a checkpoint's ``extra`` must carry (besides model, spec, statistics, history)
PERSISTENT = {"exhausted", "privacy", "clients_before", "round0", "client_dp_state", "pending_eval"}


def _state() -> State:
    return State(Phase.JOINING, 0, 0, 1, np.zeros(3, np.float32), ParamSpec((TensorSpec("w", (3,)),)), 0)


def test_checkpoint_extra_round_trips_every_persistent_field():
    st = _state()
    st.exhausted = {"c2": "privacy budget exhausted"}
    st.privacy = {"c1": {"enabled": True, "epsilon": 3.5}}
    st.clients_before = frozenset({"c9"})
    st.round0 = {"seconds": 1.5, "contributors": 3}
    st.pending_eval = 4
    extra = json.loads(json.dumps(st.checkpoint_extra({"c1", "c2"}, {"rounds": 4})))  # JSON-able
    back = _state()
    back.restore_extra(extra, checkpoint_round=4)
    assert back.exhausted == st.exhausted and back.privacy == st.privacy and back.round0 == st.round0
    assert back.clients_before == {"c1", "c2", "c9"}  # this run's clients join the earlier ones
    assert back.client_dp_state == {"rounds": 4} and back.pending_eval == 4


def test_a_pending_evaluation_of_another_round_is_not_restored():
    st = _state()
    st.pending_eval = 3
    back = _state()
    back.restore_extra(st.checkpoint_extra(set(), None), checkpoint_round=4)
    assert back.pending_eval == 0


def test_every_state_field_is_either_per_round_per_run_or_checkpointed():
    """A field added to State must be placed: checkpointed (PERSISTENT), or listed here as living
    only for a round or for this coordinator run -- so nothing meant to survive a restart is lost."""
    # per round, per coordinator run, or carried by the Checkpoint itself (params, spec, statistics, history)
    transient = {
        "phase",
        "round",
        "attempt",
        "next_round",
        "params",
        "spec",
        "model_round",
        "statistics",
        "needs_stats",
        "setup_done",
        "setup_members",
        "retries",
        "stage",
        "mode_stages",
        "stage_index",
        "selected",
        "participants",
        "submissions",
        "train_reports",
        "eval_reports",
        "aggregate_notes",
        "contributors",
        "waiting_since",
        "tally",
        "blob",
        "outcome",
        "history",
        "round_dp",
        "started_work",
        "stop_request",
        "eval_mark",
    }
    names = {f.name for f in dataclasses.fields(State)}
    assert names == transient | PERSISTENT, sorted(names ^ (transient | PERSISTENT))
    assert set(_state().checkpoint_extra(set(), None)) == {
        "excluded",
        "privacy",
        "clients",
        "round0",
        "client_dp",
        "pending_eval",
    }
