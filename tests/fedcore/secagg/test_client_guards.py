"""The client refuses unsafe or illegal requests with ProtocolAbort before it touches a secret."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import any_pb2

from fedcore.common.aggregation import ClientJob
from fedcore.common.errors import ProtocolAbort
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import quantize as qz
from fedcore.secagg.state import CLIENT_TRANSITIONS, ROUND_STAGES, SecAggStage
from fedcore.secagg.wire import TASK_TYPES

#: sparse graphs for protocol tests: no coalition and no dropout is assumed, so any even k meets the
#: 2^-40 bound of fedcore.secagg.bounds (the privacy tests of the bound are in test_graph_bounds.py)
NO_ADVERSARY = {"corrupt_fraction": 0.0, "dropout_fraction": 0.0}

S = SecAggStage
ME = "client-00"
STATES = [S.IDLE, *ROUND_STAGES, S.ABORTED]
ILLEGAL = [(a, b) for a in STATES for b in ROUND_STAGES if (a, b) not in CLIENT_TRANSITIONS]


def no_blob(name):
    raise KeyError(name)


def run_until(fed, stage: SecAggStage):
    """Run every stage before ``stage`` for all clients; return the driver."""
    drv = fed.driver()
    for s in ROUND_STAGES[:ROUND_STAGES.index(stage)]:
        drv.run_stage(s.wire)
    return drv


def ask(fed, stage: SecAggStage, task, cid: str = ME):
    return fed.clients[cid].handle(stage.wire, task, fed.jobs[cid], no_blob)


def bring_to(fed, state: SecAggStage):
    if state == S.ABORTED:
        run_until(fed, S.SHARE_KEYS)
        task = fed.server.task(S.SHARE_KEYS.wire, ME)
        del task.participants[-1]
        with pytest.raises(ProtocolAbort):
            ask(fed, S.SHARE_KEYS, task)
    elif state != S.IDLE:
        drv = run_until(fed, state)
        drv.run_stage(state.wire)
    assert (fed.clients[ME].state.stage if fed.clients[ME].state else S.IDLE) == state


def test_the_illegal_transitions_are_derived_from_the_legal_table():
    assert len(ILLEGAL) == len(STATES) * len(ROUND_STAGES) - len(CLIENT_TRANSITIONS) == 19


@pytest.mark.parametrize("current,new", ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_illegal_stage_change_is_refused(federation, current, new):
    fed = federation(3, length=3)
    bring_to(fed, current)
    secrets_before = fed.clients[ME].state.self_seed if fed.clients[ME].state else None
    with pytest.raises(ProtocolAbort, match="illegal stage change"):
        ask(fed, new, TASK_TYPES[new](round=1, attempt=0))
    if secrets_before is not None:
        assert fed.clients[ME].state.self_seed == secrets_before  # no re-keying happened
        assert fed.clients[ME].state.stage == S.ABORTED


@pytest.mark.parametrize("stage", [Stage.TRAIN, Stage.PLAIN_INPUT, Stage.CKKS_DECRYPT, Stage.WAIT])
def test_stages_of_other_modes_are_refused(federation, stage):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="not a SecAgg stage"):
        fed.clients[ME].handle(stage, any_pb2.Any(), fed.jobs[ME], no_blob)


def test_a_task_without_a_job_is_refused(federation):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="ClientJob"):
        fed.clients[ME].handle(Stage.SECAGG_ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(), None, no_blob)


def test_wrong_body_types_are_refused(federation):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="expected a fedpsyau.v1.SecAggAdvertiseKeysTask"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggUnmaskTask(round=1))
    packed = any_pb2.Any()
    packed.Pack(spb.SecAggShareKeysTask(round=1))
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="got Any of"):
        ask(fed, S.ADVERTISE_KEYS, packed)


def test_a_task_for_another_round_or_attempt_is_refused(federation):
    fed = federation(3)
    with pytest.raises(ProtocolAbort, match="expected round 1 attempt 0"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, attempt=3, participants=fed.ctx.participants))


@pytest.mark.parametrize("mutate,match", [
    (lambda ids: list(reversed(ids)), "sorted"),
    (lambda ids: [*ids, ids[0]], "duplicate"),
    (lambda ids: ids[1:] + ["client-99"], "do not include"),
    (lambda ids: ["", *ids], "empty"),
])
def test_advertise_refuses_bad_rosters(federation, mutate, match):
    fed = federation(4)
    task = spb.SecAggAdvertiseKeysTask(round=1, attempt=0, participants=mutate(list(fed.ctx.participants)))
    with pytest.raises(ProtocolAbort, match=match):
        ask(fed, S.ADVERTISE_KEYS, task)


def test_advertise_refuses_rounds_below_min_clients(federation):
    fed = federation(3, settings={"min_clients": 4}, client_settings={"min_clients": 4})
    with pytest.raises(ProtocolAbort, match="min_clients"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, participants=fed.ctx.participants))


def test_never_rekeys_within_a_round_attempt(federation):
    fed = federation(3)
    task = spb.SecAggAdvertiseKeysTask(round=1, attempt=0, participants=fed.ctx.participants)
    first = ask(fed, S.ADVERTISE_KEYS, task)
    with pytest.raises(ProtocolAbort, match="advertise_keys -> advertise_keys"):
        ask(fed, S.ADVERTISE_KEYS, task)
    assert fed.clients[ME].state.own_keys == (first.channel_public_key, first.mask_public_key)


def test_a_new_attempt_gets_fresh_keys_and_never_reuses_masks(federation):
    fed = federation(4, length=64, weights={c: 1.0 for c in [f"client-{i:02d}" for i in range(4)]})
    fed.server.record_inputs = True  # keep what the coordinator received
    run_until(fed, S.UNMASK)
    first_keys = fed.clients[ME].state.own_keys
    first_masked = fed.server.r.inputs[ME].copy()
    retry = fed.next_round(1, attempt=1)
    drv = run_until(retry, S.UNMASK)
    assert fed.clients[ME].state.own_keys != first_keys
    assert not set(first_keys) & set(fed.clients[ME].state.own_keys)
    second_masked = fed.server.r.inputs[ME].copy()
    run = drv.run()
    # with reused masks the difference would be the rounding noise (|d| <= 1); fresh masks make it uniform
    diff = qz.from_ring(second_masked - first_masked, 32)
    assert np.abs(diff).max() > 2 ** 20
    want, weight = retry.expected(retry.ctx.participants)
    np.testing.assert_allclose(run.result.weighted_sum, want, atol=retry.tolerance(weight))


def test_a_stale_attempt_is_refused(federation):
    fed = federation(3)
    fed.next_round(1, attempt=2).driver().run_stage(Stage.SECAGG_ADVERTISE_KEYS)
    with pytest.raises(ProtocolAbort, match="stale"):
        ask(fed, S.ADVERTISE_KEYS, spb.SecAggAdvertiseKeysTask(round=1, attempt=0, participants=fed.ctx.participants))


def test_unmask_refuses_both_shares_in_one_request(federation):
    fed = federation(4)
    run_until(fed, S.UNMASK)
    task = fed.server.task(Stage.SECAGG_UNMASK, ME)
    peer = next(c for c in task.survivors if c != ME)
    task.dropped.append(peer)
    with pytest.raises(ProtocolAbort, match="both shares"):
        ask(fed, S.UNMASK, task)


def test_unmask_refuses_both_shares_across_two_requests(federation):
    fed = federation(4)
    run_until(fed, S.UNMASK)
    task = fed.server.task(Stage.SECAGG_UNMASK, ME)
    first = ask(fed, S.UNMASK, task)
    assert {s.owner for s in first.self_mask_shares} == set(task.survivors)
    again = ask(fed, S.UNMASK, task)  # a repeated identical request is answered identically
    assert again == first
    peer = next(c for c in task.survivors if c != ME)
    second = spb.SecAggUnmaskTask(round=1, attempt=0, survivors=[ME], dropped=[peer],
                                  num_survivors=task.num_survivors)
    with pytest.raises(ProtocolAbort, match="revealed before"):
        ask(fed, S.UNMASK, second)


def test_unmask_refuses_its_own_key_share_and_too_few_survivors(federation):
    fed = federation(4)
    run_until(fed, S.UNMASK)
    task = fed.server.task(Stage.SECAGG_UNMASK, ME)
    bad = spb.SecAggUnmaskTask(round=1, survivors=[c for c in task.survivors if c != ME], dropped=[ME],
                               num_survivors=4)
    with pytest.raises(ProtocolAbort, match="never as dropped"):
        ask(fed, S.UNMASK, bad)
    fed = federation(4)
    run_until(fed, S.UNMASK)
    task = fed.server.task(Stage.SECAGG_UNMASK, ME)
    task.num_survivors = 2
    with pytest.raises(ProtocolAbort, match="fewer than the threshold"):
        ask(fed, S.UNMASK, task)


def _sparse(federation):
    """Six clients on a ring (k = 2): client-00 has exactly two neighbours."""
    fed = federation(6, settings={"k": 2, "threshold": 4, **NO_ADVERSARY})
    return fed


def test_share_keys_refuses_a_peer_outside_the_neighbourhood(federation):
    fed = _sparse(federation)
    run_until(fed, S.SHARE_KEYS)
    task = fed.server.task(Stage.SECAGG_SHARE_KEYS, ME)
    mine = {p.client_id for p in task.neighbours}
    stranger = next(c for c in fed.ctx.participants if c not in mine | {ME})
    keys = fed.server.r.keys[stranger]
    task.neighbours.add(client_id=stranger, channel_public_key=keys[0], mask_public_key=keys[1])
    with pytest.raises(ProtocolAbort, match="outside this client's neighbourhood"):
        ask(fed, S.SHARE_KEYS, task)


def test_masked_input_refuses_a_share_from_outside_the_neighbourhood(federation):
    fed = _sparse(federation)
    run_until(fed, S.MASKED_INPUT)
    task = fed.server.task(Stage.SECAGG_MASKED_INPUT, ME)
    mine = {s.sender for s in task.shares}
    stranger = next(c for c in fed.ctx.participants if c not in mine | {ME})
    foreign = next(iter(fed.server.r.outbox[stranger].values()))
    task.shares.add(sender=stranger, receiver=ME, sealed=foreign.sealed)
    with pytest.raises(ProtocolAbort, match="outside this client's neighbourhood"):
        ask(fed, S.MASKED_INPUT, task)


def test_unmask_refuses_a_share_of_a_peer_outside_the_neighbourhood(federation):
    fed = _sparse(federation)
    run_until(fed, S.UNMASK)
    task = fed.server.task(Stage.SECAGG_UNMASK, ME)
    stranger = next(c for c in fed.ctx.participants if c not in set(task.survivors) | set(task.dropped))
    task.dropped.append(stranger)
    with pytest.raises(ProtocolAbort, match="outside this client's neighbourhood"):
        ask(fed, S.UNMASK, task)


@pytest.mark.parametrize("tamper,match", [
    (lambda env, other: setattr(env, "sealed", env.sealed[:-1] + bytes([env.sealed[-1] ^ 1])), "does not open"),
    (lambda env, other: setattr(env, "sealed", b"\x01" + bytes(200)), "does not open"),
    (lambda env, other: setattr(env, "sealed", other.sealed), "does not open"),  # a share meant for someone else
    (lambda env, other: setattr(env, "receiver", "client-03"), "addressed to"),
])
def test_masked_input_refuses_garbage_or_misdirected_sealed_shares(federation, tamper, match):
    fed = federation(4)
    run_until(fed, S.MASKED_INPUT)
    task = fed.server.task(Stage.SECAGG_MASKED_INPUT, ME)
    env = task.shares[0]
    other = fed.server.r.outbox[env.sender]["client-03" if env.sender != "client-03" else "client-02"]
    tamper(env, other)
    with pytest.raises(ProtocolAbort, match=match):
        ask(fed, S.MASKED_INPUT, task)
    assert fed.clients[ME].state.stage == S.ABORTED


@pytest.mark.parametrize("field_,value,match", [
    ("frac_bits", 31, "refusing quantization"),
    ("bits", 16, "refusing quantization"),
    ("num_clients", 3, "quantization is for 3 clients"),
    ("clip", float("nan"), "refusing quantization"),
    ("noise_sigma", 1.0, "no discrete noise sampler"),
])
def test_masked_input_refuses_unsafe_quantization(federation, field_, value, match, monkeypatch):
    monkeypatch.setattr("fedcore.secagg.noise.default_sampler", lambda: None)
    fed = federation(4)
    run_until(fed, S.MASKED_INPUT)
    task = fed.server.task(Stage.SECAGG_MASKED_INPUT, ME)
    setattr(task.quantization, field_, value)
    with pytest.raises(ProtocolAbort, match=match):
        ask(fed, S.MASKED_INPUT, task)


def test_client_floors_on_noise_threshold_and_degree(federation):
    fed = federation(4, client_settings={"noise_sigma": 3.0})
    run_until(fed, S.MASKED_INPUT)
    with pytest.raises(ProtocolAbort, match="below this client's floor"):
        ask(fed, S.MASKED_INPUT, fed.server.task(Stage.SECAGG_MASKED_INPUT, ME))
    fed = federation(6, settings={"threshold": 0.5}, client_settings={"threshold": 0.9})
    run_until(fed, S.SHARE_KEYS)
    with pytest.raises(ProtocolAbort, match="min_survivors"):
        ask(fed, S.SHARE_KEYS, fed.server.task(Stage.SECAGG_SHARE_KEYS, ME))
    fed = federation(6, settings={"k": 2, **NO_ADVERSARY}, client_settings={"k": "all"})
    run_until(fed, S.SHARE_KEYS)
    with pytest.raises(ProtocolAbort, match="requires the complete graph"):
        ask(fed, S.SHARE_KEYS, fed.server.task(Stage.SECAGG_SHARE_KEYS, ME))


@pytest.mark.parametrize("mutate,match", [
    (lambda t: setattr(t, "graph_seed", b"short"), "seed"),
    (lambda t: setattr(t, "degree", 1), "refusing masking graph degree"),
    (lambda t: t.neighbours[0].__setattr__("mask_public_key", b"\x01" * 31), "32-byte"),
    (lambda t: t.neighbours.add().CopyFrom(t.neighbours[0]), "duplicate"),
    (lambda t: t.participants.append("client-99"), "differ from the advertise-keys roster"),
])
def test_share_keys_refuses_malformed_tasks(federation, mutate, match):
    fed = federation(4)
    run_until(fed, S.SHARE_KEYS)
    task = fed.server.task(Stage.SECAGG_SHARE_KEYS, ME)
    mutate(task)
    with pytest.raises(ProtocolAbort, match=match):
        ask(fed, S.SHARE_KEYS, task)


def test_masked_input_refuses_a_nan_update(federation):
    fed = federation(3)
    run_until(fed, S.MASKED_INPUT)
    fed.jobs[ME] = ClientJob(1, 0, np.array([0.1, np.nan, 0.2, 0, 0, 0]), 1.0)
    with pytest.raises(ProtocolAbort, match="finite"):
        ask(fed, S.MASKED_INPUT, fed.server.task(Stage.SECAGG_MASKED_INPUT, ME))
