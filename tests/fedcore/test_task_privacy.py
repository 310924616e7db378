"""The task's typed privacy message: the one route by which DP settings reach a client."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fedcore.client.cache import UpdateCache
from fedcore.client.handlers import StageHandlers
from fedcore.common.aggregation import ClientIdentity
from fedcore.common.errors import ConfigError, InvalidPayload
from fedcore.common.task_privacy import (
    LOCAL_KEYS,
    ClientLevelDP,
    TaskPrivacy,
    decode_privacy,
    encode_privacy,
)
from fedcore.common.workload import load_workload
from fedcore.dp.config import PrivacyConfig
from fedcore.plain import PlainClient
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.settings import to_config


def test_every_privacy_setting_but_the_ledger_can_be_a_coordinator_default():
    """LocalDP mirrors PrivacyConfig: a new [privacy] key without a wire field fails here."""
    fields = {f.name for f in dataclasses.fields(PrivacyConfig)}
    assert set(LOCAL_KEYS) == fields - {"ledger"}
    for f in dataclasses.fields(PrivacyConfig):
        if f.name in LOCAL_KEYS:
            hint = str(f.type)
            assert LOCAL_KEYS[f.name].__name__ in hint, (f.name, hint, LOCAL_KEYS[f.name])


def test_settings_keep_their_types_across_the_wire():
    local = {"target_epsilon": 8.0, "planned_rounds": 20, "secure_rng": False, "accountant": "rdp", "delta": 1e-5}
    sent = TaskPrivacy(local, distributed=ClientLevelDP(0.5, 1.2, 1e-6))
    got = decode_privacy(pb.TaskPrivacy.FromString(encode_privacy(sent).SerializeToString()))
    assert got == sent
    assert type(got.local["planned_rounds"]) is int and type(got.local["target_epsilon"]) is float
    assert got.update_clip == 0.5 and TaskPrivacy().update_clip is None
    assert not encode_privacy(TaskPrivacy()).HasField("local")  # no defaults sent: none invented


@pytest.mark.parametrize(
    ("local", "words"),
    [
        ({"ledger": "/tmp/x.json"}, "'ledger' cannot be a coordinator default"),
        ({"planned_rounds": 2.5}, "planned_rounds: expected int"),
        ({"secure_rng": 1}, "secure_rng: expected bool"),
        ({"target_epsilon": math.inf}, "target_epsilon: expected float"),
    ],
)
def test_the_coordinator_refuses_defaults_that_cannot_travel(local, words):
    with pytest.raises(ConfigError, match=words):
        encode_privacy(TaskPrivacy(local))


def _wire(**kinds):
    msg = pb.TaskPrivacy()
    for name, (clip, noise, delta) in kinds.items():
        getattr(msg, name).CopyFrom(pb.ClientLevelDP(clip_norm=clip, noise_multiplier=noise, delta=delta))
    return msg


@pytest.mark.parametrize(
    ("msg", "words"),
    [
        (_wire(central=(1.0, 0.0, 0.0), distributed=(1.0, 1.0, 1e-5)), "not both"),
        (_wire(central=(0.0, 0.0, 0.0)), "clip_norm > 0"),
        (_wire(distributed=(math.nan, 1.0, 1e-5)), "clip_norm > 0"),
        (_wire(central=(1.0, 2.0, 0.0)), "must not give a noise_multiplier"),
        (_wire(distributed=(1.0, 0.0, 1e-5)), "noise_multiplier > 0"),
        (_wire(distributed=(1.0, 1.0, 1.5)), r"delta in \(0, 1\)"),
    ],
)
def test_a_client_refuses_privacy_settings_no_honest_coordinator_sends(msg, words):
    with pytest.raises(InvalidPayload, match=words):
        decode_privacy(msg)


def _handlers(tmp_path, own):
    trainer = load_workload("fedcore.examples.softmax:workload").make_trainer({}, "alice", tmp_path, "cpu")
    mode = PlainClient(ClientIdentity("alice"), "fed", {})
    cache = UpdateCache(tmp_path / "cache")
    return StageHandlers(trainer, mode, None, cache, own, federation="fed", run_id="r", workdir=tmp_path)


def test_privacy_in_a_task_config_is_refused_and_own_settings_override_the_defaults(tmp_path):
    h = _handlers(tmp_path, {"target_epsilon": 2.0})
    header = pb.Header(federation_id="fed", round=0)
    with pytest.raises(InvalidPayload, match="privacy message, not in its config"):
        h._config(to_config({"privacy": {"enabled": False}}), header, TaskPrivacy())
    config = h._config(to_config({"epochs": 1}), header, TaskPrivacy({"target_epsilon": 8.0, "planned_rounds": 5}))
    assert config["privacy"] == {"target_epsilon": 2.0, "planned_rounds": 5}  # the client's own budget wins
    assert config["epochs"] == 1


def test_client_level_dp_clips_once_in_the_handler_and_sends_weight_one():
    from fedcore.client.handlers import client_update

    delta = np.full(100, 1.0)  # norm 10
    for spec in (TaskPrivacy(central=ClientLevelDP(2.0)), TaskPrivacy(distributed=ClientLevelDP(2.0, 1.0))):
        clipped, weight = client_update(delta, 37.0, spec, round_=1)
        assert np.linalg.norm(clipped) == pytest.approx(2.0) and weight == 1.0
        np.testing.assert_allclose(clipped, delta * 0.2)
