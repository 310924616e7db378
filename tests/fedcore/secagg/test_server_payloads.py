"""The server refuses malformed submissions with InvalidPayload (nothing changes), out-of-stage
ones with WrongStage, and unsafe rounds with AggregationAborted.

The engine and the client daemons run the round over the in-memory transport up to the stage a
test needs (``secagg_round``); the test then hands the engine's mode a mutated copy of a client's
honest reply to the engine's own task. Refusals of a round that never began ask a bare server
(``federation``).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from google.protobuf import any_pb2

from fedcore.common.aggregation import AggregationContext
from fedcore.common.errors import (
    AggregationAborted,
    ConfigError,
    InvalidPayload,
    WrongStage,
)
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import shamir
from fedcore.secagg.state import ROUND_STAGES, SecAggStage
from fedcore.simulation_memory import Faults

S = SecAggStage
ME = "client-00"


def at_stage(run, stage: SecAggStage):
    """Run the federation until ``stage`` is open (every client answered the stages before it);
    return ME's honest reply to the engine's task at ``stage`` (not submitted)."""
    run.open(stage)
    return run.ask(stage, run.task(stage, ME), ME)


def refused(run, stage, body, match):
    with pytest.raises(InvalidPayload, match=match):
        run.server.accept(stage.wire, ME, body)
    assert ME not in run.server.r.bodies[stage]


@pytest.mark.parametrize("stage", ROUND_STAGES)
def test_wrong_message_types_are_invalid(secagg_round, stage):
    run = secagg_round(3)
    at_stage(run, stage)
    refused(run, stage, pb.PlainInput(weight=1.0), "expected a fedpsyau.v1.SecAgg")
    wrong = any_pb2.Any()
    wrong.Pack(pb.PlainInput())
    refused(run, stage, wrong, "got Any of")
    refused(run, stage, b"raw bytes", "got bytes")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda m: setattr(m, "channel_public_key", b"\x01" * 31), "32-byte"),
        (lambda m: setattr(m, "mask_public_key", m.channel_public_key), "distinct"),
        (lambda m: setattr(m, "mask_public_key", bytes(32)), "not a usable X25519"),  # low-order point
        (lambda m: setattr(m, "mask_public_key", b""), "32-byte"),
    ],
)
def test_bad_advertised_keys_are_invalid(secagg_round, mutate, match):
    run = secagg_round(3)
    reply = at_stage(run, S.ADVERTISE_KEYS)
    mutate(reply)
    refused(run, S.ADVERTISE_KEYS, reply, match)


def test_a_key_already_advertised_by_another_client_is_invalid(secagg_round):
    run = secagg_round(3).open(S.ADVERTISE_KEYS)
    other = run.ask(S.ADVERTISE_KEYS, run.task(S.ADVERTISE_KEYS, "client-01"), "client-01")
    run.server.accept(Stage.SECAGG_ADVERTISE_KEYS, "client-01", other)
    copy = spb.SecAggAdvertiseKeys(channel_public_key=other.channel_public_key, mask_public_key=bytes(range(1, 33)))
    refused(run, S.ADVERTISE_KEYS, copy, "already advertised")


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda m: m.shares.pop(), "expected one share for each"),
        (lambda m: m.shares.add().CopyFrom(m.shares[0]), "expected one share for each"),
        (lambda m: setattr(m.shares[0], "receiver", "client-99"), "expected one share for each"),
        (lambda m: setattr(m.shares[0], "sender", "client-01"), "malformed"),
        (lambda m: setattr(m.shares[0], "sealed", b"\x02" + m.shares[0].sealed[1:]), "malformed"),  # version
        (lambda m: setattr(m.shares[0], "sealed", m.shares[0].sealed[:40]), "malformed"),
    ],
)
def test_bad_share_envelopes_are_invalid(secagg_round, mutate, match):
    run = secagg_round(4)
    reply = at_stage(run, S.SHARE_KEYS)
    mutate(reply)
    refused(run, S.SHARE_KEYS, reply, match)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda m: m.ClearField("masked"), "no vector"),
        (lambda m: m.masked.CopyFrom(encode_vector(np.zeros(8, np.uint64))), "expected dtype uint32"),
        (lambda m: m.masked.CopyFrom(encode_vector(np.zeros(5, np.uint32))), "expected 8 values"),
        (lambda m: setattr(m.masked, "data", m.masked.data[:-4]), "need 32 bytes"),
        (lambda m: m.masked.CopyFrom(encode_vector(np.zeros(8, np.float64))), "expected dtype uint32"),
    ],
)
def test_bad_masked_vectors_are_invalid(secagg_round, mutate, match):
    # vector length 6 -> 8 ring values; the 32-bit ring (the engine's weight bound 1e6 makes "auto" pick 64)
    run = secagg_round(3, secagg={"bits": 32})
    reply = at_stage(run, S.MASKED_INPUT)
    mutate(reply)
    refused(run, S.MASKED_INPUT, reply, match)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda m: m.self_mask_shares.pop(), "expected self-mask shares"),
        (lambda m: m.key_shares.add(owner="client-01", share=m.self_mask_shares[0].share), "expected key shares"),
        (lambda m: setattr(m.self_mask_shares[0], "share", b"\x00" * 10), "not a 70-byte share"),
        (lambda m: setattr(m.self_mask_shares[0], "share", shamir.split(b"x", [2], 1)[0]), "for holder 1"),
    ],
)
def test_bad_unmask_replies_are_invalid(secagg_round, mutate, match):
    run = secagg_round(3)
    reply = at_stage(run, S.UNMASK)
    mutate(reply)
    refused(run, S.UNMASK, reply, match)


def test_resubmission_identical_is_ignored_different_is_refused(secagg_round):
    run = secagg_round(3)
    reply = at_stage(run, S.MASKED_INPUT)
    server = run.server
    server.accept(Stage.SECAGG_MASKED_INPUT, ME, reply)
    stored = server.r.total.copy()  # the running sum (the complete graph folds at once)
    assert server.r.folded == {ME} and not server.r.held
    server.accept(Stage.SECAGG_MASKED_INPUT, ME, reply)
    other = spb.SecAggMaskedInput()
    other.CopyFrom(reply)
    other.masked.data = bytes(len(reply.masked.data))
    with pytest.raises(InvalidPayload, match="already submitted"):
        server.accept(Stage.SECAGG_MASKED_INPUT, ME, other)
    assert np.array_equal(server.r.total, stored)  # neither resubmission touched the sum


def test_out_of_stage_and_unexpected_clients_are_wrong_stage(secagg_round):
    run = secagg_round(4, faults=Faults(silent_at={Stage.SECAGG_ADVERTISE_KEYS: {"client-03"}}))
    run.open(S.ADVERTISE_KEYS)
    with pytest.raises(WrongStage, match="not the current one"):
        run.server.accept(Stage.SECAGG_UNMASK, ME, spb.SecAggUnmask())
    with pytest.raises(WrongStage, match="not a SecAgg stage"):
        run.server.task(Stage.TRAIN, ME)
    run.open(S.SHARE_KEYS)  # client-03 went silent: the engine dropped it from advertise-keys
    assert run.server.expected(Stage.SECAGG_SHARE_KEYS) == frozenset(run.ids) - {"client-03"}
    with pytest.raises(WrongStage, match="not expected"):
        run.server.task(Stage.SECAGG_SHARE_KEYS, "client-03")
    with pytest.raises(WrongStage, match="not the current one"):
        run.server.close_stage(Stage.SECAGG_ADVERTISE_KEYS, frozenset())


@pytest.mark.parametrize(
    "n,settings,match",
    [
        (2, {}, "fewer than the threshold"),
        (3, {"min_clients": 4}, "fewer than the threshold"),
        (6, {"threshold": 3}, "not more than half"),
        (5, {"bits": 32, "clip": 1e9}, "overflow"),
    ],
)
def test_unsafe_rounds_are_refused_at_begin(federation, n, settings, match):
    fed = federation(n, settings=settings, client_settings={}, max_weight=1e6)
    with pytest.raises(AggregationAborted, match=match):
        fed.server.begin(fed.ctx)


def test_bad_settings_are_a_config_error(federation):
    fed = federation(4, settings={"k": 0, "clip": "big"}, client_settings={})
    with pytest.raises(ConfigError, match="k must be"):
        fed.server.begin(fed.ctx)


def test_no_result_before_the_round_finished_or_after_an_abort(secagg_round, caplog):
    run = secagg_round(4, faults=Faults(silent_at={Stage.SECAGG_MASKED_INPUT: {"client-01", "client-02"}}))
    run.open(S.SHARE_KEYS)
    with pytest.raises(AggregationAborted, match="no result"):
        run.server.result()
    with caplog.at_level(logging.WARNING, logger="fedcore.coordinator.phases"):
        run.until(lambda: run.attempt == 1)  # the engine failed attempt 0 at the close of masked-input
    assert any("only 2 of 4 clients completed masked_input" in r.getMessage() for r in caplog.records)
    with pytest.raises(AggregationAborted, match="aborted"):
        run.server.result()
    with pytest.raises(WrongStage):
        run.server.task(Stage.SECAGG_UNMASK, ME)


def test_a_refused_round_does_not_leave_the_previous_result_reachable(secagg_round):
    run = secagg_round(4)
    assert run.run() == 0
    assert run.server.result().num_contributors == 4
    small = AggregationContext(run.server.federation_id, 2, 0, run.ids[:2], 6, {})
    with pytest.raises(AggregationAborted, match="fewer than the threshold"):
        run.server.begin(small)
    with pytest.raises(AggregationAborted, match="no result"):
        run.server.result()
    assert run.server.expected(Stage.SECAGG_ADVERTISE_KEYS) == frozenset()
