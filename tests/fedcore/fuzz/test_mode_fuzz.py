"""Property-based fuzzing of the aggregation modes' body checks (``ServerMode.accept``).

For every stage of SecAgg+ and of CKKS (key exchange and round), the daemons' engine and client
daemons (in-memory transport) bring a real server to that stage; then one client's valid reply is
mutated (bit flips, insertions, truncations of its wire bytes, which for CKKS means garbage
TenSEAL/SEAL bytes) or replaced by a message of random fields, and handed to the engine mode's
``accept`` again and again. ``accept`` may only refuse
with InvalidPayload, WrongStage or NotAuthorized -- never crash, never another exception (SEAL
parses in-process here: a segfault would take the test run down). Afterwards the honest replies
are submitted and the stage closes or aborts cleanly.
"""

from __future__ import annotations

import pytest
from fuzz_kit import PROFILES, mutate, run_property
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from fedcore.common.errors import (
    AggregationAborted,
    InvalidPayload,
    NotAuthorized,
    WrongStage,
)
from fedcore.common.stages import Stage
from fedcore.simulation_memory import memory_federation

IDS = ("client-00", "client-01", "client-02", "client-03")
VICTIM = "client-01"
LENGTH = 6
REFUSED = (InvalidPayload, WrongStage, NotAuthorized)


def _answer(server, client, stage, job):
    task = any_pb2.Any()
    task.Pack(server.task(stage, client_id(client)))
    return client.handle(stage, task, job, lambda name: server.blob(name, client_id(client)))


def client_id(client) -> str:
    return client.identity.client_id


def _at(out, mode: str, stage: Stage, settings: dict):
    """A federation of real client daemons run by the real engine (in-memory transport) until
    ``stage`` is open: the engine's ServerMode, the clients' ClientModes and their jobs (None in a
    set-up stage) in that state."""
    fed = memory_federation(
        len(IDS),
        1,
        out,
        aggregation=mode,
        client_ids=IDS,
        workload="fedcore.examples.updates:workload",
        workload_settings={"size": LENGTH, "scale": 0.3, "seed": 5},
        **{mode: settings},
    )
    with fed:
        assert fed.run_until(lambda e: e.state.stage is not None and e.state.stage.stage == stage)
    st = fed.engine.state
    clients = {c: fed.daemons[c].handlers.mode for c in IDS}
    jobs = None if st.round == 0 else {c: fed.daemons[c].handlers.jobs[(st.round, st.attempt)] for c in IDS}
    return fed.engine.mode, clients, jobs


SECAGG = [Stage.SECAGG_ADVERTISE_KEYS, Stage.SECAGG_SHARE_KEYS, Stage.SECAGG_MASKED_INPUT, Stage.SECAGG_UNMASK]
CKKS = [
    Stage.CKKS_KEY_ADVERTISE,
    Stage.CKKS_KEY_DISTRIBUTE,
    Stage.CKKS_KEY_RECEIVE,
    Stage.CKKS_ENCRYPTED_INPUT,
    Stage.CKKS_DECRYPT,
]
CASES = [("secagg", s) for s in SECAGG] + [("ckks", s) for s in CKKS]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("mode", "stage"), CASES, ids=[s.name.lower() for _, s in CASES])
def test_mode_accept_refuses_mutated_and_random_bodies_cleanly(tmp_path, mode, stage, profile):
    settings = {"clip": 4.0} if mode == "secagg" else {"min_clients": 3}
    server, clients, jobs = _at(tmp_path / "run", mode, stage, settings)
    expected = sorted(server.expected(stage))
    victim = VICTIM if VICTIM in expected else expected[0]
    honest = {c: _answer(server, clients[c], stage, jobs[c] if jobs else None) for c in expected}
    cls = type(honest[victim])
    wire = honest[victim].SerializeToString()

    @given(
        seed=st.integers(0, 2**32 - 1),
        flips=st.integers(1, 8),
        junk=st.binary(max_size=200),
        kind=st.sampled_from(["mutate", "mutate", "random", "wrong-type"]),
        who=st.sampled_from([victim, victim, "intruder", expected[-1]]),
    )
    def prop(seed, flips, junk, kind, who):
        try:
            if kind == "mutate":
                body = cls.FromString(mutate(wire, seed, flips))
            elif kind == "random":
                body = cls.FromString(junk)
            else:
                body = any_pb2.Any(type_url="type.googleapis.com/fedpsyau.v1.Header", value=junk)
        except DecodeError:
            return  # gRPC never hands the servicer bytes that do not parse as the declared message
        try:
            server.accept(stage, who, body)
        except REFUSED:
            pass

    assert run_property(prop, profile, f"{mode}.accept {stage.name}") >= 100
    for c in expected:  # the honest replies (a victim's may be refused if a mutant got in first)
        try:
            server.accept(stage, c, honest[c])
        except InvalidPayload:
            assert c in (victim, expected[-1])
    try:
        server.close_stage(stage, frozenset(expected))
    except AggregationAborted:
        pass
