"""Settings, thresholds and the stage tables of SecAgg+."""

from __future__ import annotations

import pytest

from fedcore.common.errors import ConfigError
from fedcore.common.stages import Stage
from fedcore.secagg.state import (
    CLIENT_TRANSITIONS,
    ROUND_STAGES,
    SecAggSettings,
    SecAggStage,
    graph_plan,
    resolve_threshold,
)


def test_defaults_are_documented_values():
    s = SecAggSettings.from_mapping({})
    assert (s.k, s.threshold, s.min_clients, s.clip, s.bits, s.noise_sigma) == ("auto", 0.5, 3, 1.0, "auto", 0.0)
    assert (s.corrupt_fraction, s.dropout_fraction) == (1 / 3, 1 / 3)
    assert (s.stats_noise, s.stats_epsilon, s.stats_delta) == ("auto", 1.0, 1e-5)


def test_settings_report_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        SecAggSettings.from_mapping(
            {
                "k": 1,
                "threshold": 1.5,
                "min_clients": 2,
                "clip": -1,
                "bits": 16,
                "noise_sigma": -1,
                "unrelated": "ignored",
            }
        )
    assert len(err.value.problems) == 6


@pytest.mark.parametrize(
    "threshold,n,expected", [(0.5, 5, 3), (0.5, 6, 4), (0.5, 3, 3), (0.9, 10, 9), (2 / 3, 9, 6), (4, 6, 4), (1.0, 7, 7)]
)
def test_threshold_resolution(threshold, n, expected):
    assert resolve_threshold(threshold, n, 3) == expected


@pytest.mark.parametrize(
    "threshold,n,match",
    [(3, 6, "not more than half"), (0.5, 2, "fewer than the threshold"), (5, 4, "fewer than the threshold")],
)
def test_unsafe_thresholds_are_refused(threshold, n, match):
    with pytest.raises(ValueError, match=match):
        resolve_threshold(threshold, n, 3)


def test_share_threshold_is_a_majority_of_each_neighbourhood():
    assert graph_plan(SecAggSettings.from_mapping({}), 6, 4).t == 4  # complete graph: T itself
    loose = SecAggSettings.from_mapping({"corrupt_fraction": 0.05, "dropout_fraction": 0.05})
    for n in (100, 200, 1000):
        gp = graph_plan(loose, n, resolve_threshold(0.5, n, 3))
        assert not gp.complete and 2 * gp.t > gp.k + 1 and gp.t <= gp.k + 1


def test_every_secagg_stage_maps_to_the_wire_and_back():
    assert [s.wire for s in ROUND_STAGES] == [
        Stage.SECAGG_ADVERTISE_KEYS,
        Stage.SECAGG_SHARE_KEYS,
        Stage.SECAGG_MASKED_INPUT,
        Stage.SECAGG_UNMASK,
    ]
    assert all(SecAggStage.from_wire(s.wire) == s for s in ROUND_STAGES)
    with pytest.raises(ValueError, match="not a SecAgg stage"):
        SecAggStage.from_wire(Stage.TRAIN)


def test_client_table_never_allows_rekeying_or_going_back():
    assert (SecAggStage.ADVERTISE_KEYS, SecAggStage.ADVERTISE_KEYS) not in CLIENT_TRANSITIONS
    order = [SecAggStage.IDLE, *ROUND_STAGES]
    for a, b in CLIENT_TRANSITIONS:
        assert order.index(b) >= order.index(a)


def test_settings_that_crossed_a_struct_as_floats_keep_their_meaning():
    """JoinReply carries mode settings in a google.protobuf.Struct: every number becomes a float."""
    s = SecAggSettings.from_mapping({"k": 4.0, "threshold": 4.0, "min_clients": 3.0, "bits": 32.0, "frac_bits": 12.0})
    assert (s.k, s.threshold, s.min_clients, s.bits, s.frac_bits) == (4, 4, 3, 32, 12)
    assert isinstance(s.k, int) and isinstance(s.threshold, int)
    assert SecAggSettings.from_mapping({"threshold": 1.0}).threshold == 1.0  # a fraction: all of them
    assert SecAggSettings.from_mapping({"threshold": 1}).threshold == 1.0
    assert SecAggSettings.from_mapping({"threshold": 0.75}).threshold == 0.75
