"""Property-based fuzzing of the aggregation modes' body checks (``ServerMode.accept``).

For every stage of SecAgg+ and of CKKS (key exchange and round), a real server is brought to that
stage by real clients; then one client's valid reply is mutated (bit flips, insertions,
truncations of its wire bytes, which for CKKS means garbage TenSEAL/SEAL bytes) or replaced by a
message of random fields, and handed to ``accept`` again and again. ``accept`` may only refuse
with InvalidPayload, WrongStage or NotAuthorized -- never crash, never another exception (SEAL
parses in-process here: a segfault would take the test run down). Afterwards the honest replies
are submitted and the stage closes or aborts cleanly.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzz_kit import PROFILES, mutate, run_property
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from fedcore.common.aggregation import AggregationContext, ClientIdentity, ClientJob
from fedcore.common.errors import (
    AggregationAborted,
    InvalidPayload,
    NotAuthorized,
    WrongStage,
)
from fedcore.common.stages import Stage
from fedcore.transport.certs import create_ca, issue_client

FED = "fed-fuzz"
IDS = ("client-00", "client-01", "client-02", "client-03")
VICTIM = "client-01"
LENGTH = 6
REFUSED = (InvalidPayload, WrongStage, NotAuthorized)


def _jobs(round_: int = 1) -> dict[str, ClientJob]:
    return {c: ClientJob(round_, 0, np.linspace(-0.5, 0.5, LENGTH) * (i + 1), 10.0 + i) for i, c in enumerate(IDS)}


def _answer(server, client, stage, job):
    task = any_pb2.Any()
    task.Pack(server.task(stage, client_id(client)))
    return client.handle(stage, task, job, lambda name: server.blob(name, client_id(client)))


def client_id(client) -> str:
    return client.identity.client_id


def _secagg_at(stage: Stage):
    from fedcore.secagg.client import SecAggClient
    from fedcore.secagg.driver import InProcessRound
    from fedcore.secagg.server import SecAggServer

    server = SecAggServer(FED, {"clip": 4.0})
    clients = {c: SecAggClient(ClientIdentity(c), FED, {"clip": 4.0}) for c in IDS}
    ctx = AggregationContext(FED, 1, 0, IDS, LENGTH, {}, max_weight=100.0)
    jobs = _jobs()
    drv = InProcessRound(server, clients, ctx, jobs)
    drv.begin()
    for s in server.round_stages()[:server.round_stages().index(stage)]:
        drv.run_stage(s)
    return server, clients, jobs


_CA = None


def _ckks_clients():
    global _CA
    from fedcore.he.client import CkksClient

    _CA = _CA or create_ca("fuzz CA")
    out = {}
    for c in IDS:
        creds = issue_client(_CA, c)
        out[c] = CkksClient(ClientIdentity(c, creds.cert_pem, creds.key_pem, _CA.cert_pem), FED, {"min_clients": 3})
    return out


def _ckks_at(stage: Stage):
    from fedcore.he.driver import InProcessDriver
    from fedcore.he.server import CkksServer

    server = CkksServer(FED, {"min_clients": 3})
    clients = _ckks_clients()
    drv = InProcessDriver(server, clients)
    setup = server.setup_stages()
    if stage in setup:
        server.begin_setup(AggregationContext(FED, 0, 0, IDS, 0, server.settings))
        for s in setup[:setup.index(stage)]:
            drv._stage(s, None, {}, [])
        return server, clients, None
    drv.setup()
    jobs = _jobs()
    server.begin(AggregationContext(FED, 1, 0, IDS, LENGTH, server.settings, 1.0e6))
    if stage == Stage.CKKS_DECRYPT:
        drv._stage(Stage.CKKS_ENCRYPTED_INPUT, jobs, {}, [])
    return server, clients, jobs


SECAGG = [Stage.SECAGG_ADVERTISE_KEYS, Stage.SECAGG_SHARE_KEYS, Stage.SECAGG_MASKED_INPUT, Stage.SECAGG_UNMASK]
CKKS = [Stage.CKKS_KEY_ADVERTISE, Stage.CKKS_KEY_DISTRIBUTE, Stage.CKKS_KEY_RECEIVE, Stage.CKKS_ENCRYPTED_INPUT,
        Stage.CKKS_DECRYPT]
CASES = [("secagg", s) for s in SECAGG] + [("ckks", s) for s in CKKS]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("mode", "stage"), CASES, ids=[s.name.lower() for _, s in CASES])
def test_mode_accept_refuses_mutated_and_random_bodies_cleanly(mode, stage, profile):
    server, clients, jobs = (_secagg_at if mode == "secagg" else _ckks_at)(stage)
    expected = sorted(server.expected(stage))
    victim = VICTIM if VICTIM in expected else expected[0]
    honest = {c: _answer(server, clients[c], stage, jobs[c] if jobs else None) for c in expected}
    cls = type(honest[victim])
    wire = honest[victim].SerializeToString()

    @given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 8), junk=st.binary(max_size=200),
           kind=st.sampled_from(["mutate", "mutate", "random", "wrong-type"]),
           who=st.sampled_from([victim, victim, "intruder", expected[-1]]))
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
    for c in expected:       # the honest replies (a victim's may be refused if a mutant got in first)
        try:
            server.accept(stage, c, honest[c])
        except InvalidPayload:
            assert c in (victim, expected[-1])
    try:
        server.close_stage(stage, frozenset(expected))
    except AggregationAborted:
        pass
