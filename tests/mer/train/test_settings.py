"""The MER workload's settings: today's defaults, the documented table, and every problem at once."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from fedcore.common.errors import ConfigError
from fedcore.transport.settings import from_config, to_config
from mer.train import federated
from mer.train.federated import workload
from mer.train.settings import FEDCORE_SETTINGS, RoundConfig, WorkloadSettings, defaults

#: the defaults federated.py read with settings.get(...) / config.get(...) before the dataclasses,
#: written out literally: a changed default must change this table on purpose
TODAYS_SETTINGS = {
    "data": None,
    "format": "casme2",
    "flow_method": "farneback",
    "cache_dir": None,
    "partition": "subjects",
    "alpha": 0.5,
    "num_clients": 1,
    "client_index": 0,
    "test_fraction": 0.25,
    "seed": 0,
    "model": "dpk-gat",
    "model_options": {},
    "num_classes": None,
    "init": None,
    "init_sha256": None,
    "dp_trainable": "head",
    "max_samples_per_client": 100_000,
}
TODAYS_ROUND = {
    "epochs": 1,
    "batch_size": 16,
    "lr": 2e-3,
    "optimizer": "adamw",
    "proximal_mu": 0.0,
    "emotion_weight": 0.2,
    "au_weight": 0.8,
    "ema": 0.0,
    "aug_mult": 1,
    "rounds": 1,
}


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _allowed() -> list[str]:
    return [*_names(WorkloadSettings), *_names(RoundConfig), *FEDCORE_SETTINGS]


def test_defaults_are_the_ones_federated_used_before():
    assert defaults(WorkloadSettings) == TODAYS_SETTINGS
    assert defaults(RoundConfig) == TODAYS_ROUND
    for cls, want in ((WorkloadSettings, TODAYS_SETTINGS), (RoundConfig, TODAYS_ROUND)):
        got = dataclasses.asdict(cls.from_mapping({}))
        assert got == want and [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_defaults_that_depend_on_the_model_or_the_data_are_the_old_ones():
    s = WorkloadSettings()
    assert s.resolved_init == "pretrained" and WorkloadSettings(model="flow-cnn").resolved_init == "none"
    assert federated.default_init("dpk-gat") == "pretrained" and federated.default_init("ststnet") == "none"
    assert s.model_num_classes == 5  # the coordinator's initial model when num_classes is not given
    _, spec = workload.initial_parameters({"model": "flow-cnn", "dp_trainable": "all"}, 0)
    assert spec.tensors[-1].shape == (5,)


def _table_names(doc: str) -> list[list[str]]:
    """The first column of every reST simple table in ``doc``, table by table."""
    tables, rows, inside = [], [], False
    for line in doc.splitlines():
        if re.fullmatch(r"=+ +=+", line.strip()):
            if inside:
                tables.append(rows)
                rows = []
            inside = not inside
        elif inside:
            rows.append(re.match(r"``(\w+)``", line).group(1))
    return tables


def test_the_module_docstring_tables_list_exactly_the_fields():
    settings, round_ = _table_names(federated.__doc__)
    assert settings == _names(WorkloadSettings)
    assert round_ == _names(RoundConfig)


def test_numbers_that_crossed_a_struct_keep_their_types():
    given = {
        "num_clients": 3,
        "seed": 7,
        "alpha": 1,
        "epochs": 2,
        "lr": 1,
        "aug_mult": 4,
        "model_options": {"prior": "stat"},
    }
    # a table written with whole floats (3.0, as a TOML file or an older Struct-based peer gives)
    raw = {k: float(v) if type(v) is int else v for k, v in given.items()}
    assert isinstance(raw["num_clients"], float)
    assert from_config(to_config(given)) == given  # the typed wire keeps ints as ints
    for data in (raw, from_config(to_config(given))):
        s, rc = WorkloadSettings.from_mapping(data), RoundConfig.from_mapping(data)
        assert (s.num_clients, s.seed, rc.epochs, rc.aug_mult) == (3, 7, 2, 4)
        assert all(type(v) is int for v in (s.num_clients, s.seed, rc.epochs, rc.aug_mult))
        assert type(s.alpha) is float and type(rc.lr) is float and rc.lr == 1.0


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("num_clients", 3.5, "num_clients: expected an integer (got 3.5, a float)"),
        ("client_index", True, "client_index: expected an integer (got True, a bool)"),
        ("seed", "0", "seed: expected an integer (got '0', a str)"),
        ("alpha", "0.5", "alpha: expected a finite number (got '0.5', a str)"),
        ("test_fraction", float("nan"), "test_fraction: expected a finite number (got nan, a float)"),
        ("model", 3, "model: expected a string (got 3, a int)"),
        ("model_options", "psych", "model_options: expected a table (got 'psych', a str)"),
        ("epochs", 2.5, "epochs: expected an integer (got 2.5, a float)"),
        ("lr", "fast", "lr: expected a finite number (got 'fast', a str)"),
    ],
)
def test_a_wrong_type_names_the_key_the_type_and_what_came(key, value, words):
    with pytest.raises(ConfigError) as err:
        WorkloadSettings.from_mapping({key: value})
    assert err.value.problems == [words]


def test_every_problem_is_reported_at_once():
    bad = {
        "epoch": 2,
        "partiton": "subjects",
        "seed": "0",
        "test_fraction": 2.0,
        "lr": -1.0,
        "optimizer": "adam",
        "format": "casme9",
    }
    with pytest.raises(ConfigError) as err:
        WorkloadSettings.from_mapping(bad, "client.toml [workload.settings]")
    p = err.value.problems
    assert p[0] == "unknown setting 'epoch' (did you mean 'epochs'?)"
    assert p[1] == "unknown setting 'partiton' (did you mean 'partition'?)"
    assert p[2] == f"allowed settings: {', '.join(sorted(_allowed()))}"  # built from the fields: cannot go stale
    assert "seed: expected an integer (got '0', a str)" in p
    assert "test_fraction: expected a number in (0, 1) (got 2.0)" in p
    assert "lr: expected a number > 0 (got -1.0)" in p
    assert "optimizer: expected one of adamw, sgd (got 'adam')" in p
    assert "format: expected one of casme2, samm, smic, casme3, composite, manifest (got 'casme9')" in p
    assert len(p) == 8
    assert str(err.value).startswith("client.toml [workload.settings]: unknown setting 'epoch'")
    assert isinstance(err.value, ValueError)  # what callers caught before


def test_every_documented_name_and_fedcores_config_dir_are_accepted():
    values = {
        **TODAYS_SETTINGS,
        **TODAYS_ROUND,
        "config_dir": "/etc/fedpsyau",
        "data": Path("/data/casme2"),
        "init": "none",
        "num_classes": 5,
        "init_sha256": "0" * 64,
    }
    s = WorkloadSettings.from_mapping(values)
    assert s.data == "/data/casme2" and s.init == "none"  # a Path is taken as its string


def test_the_round_config_leaves_fedcores_and_the_settings_keys_alone():
    config = {
        "data": "/x",
        "model": "dpk-gat",
        "privacy": {"enabled": False},
        "task": {"seed": 3},
        "central_dp": {"clip_norm": 1.0},
        "rounds": 20.0,
        "epochs": 3,
        "lr": 0.01,
    }
    rc = RoundConfig.from_mapping(config)
    assert (rc.rounds, rc.epochs, rc.lr, rc.batch_size) == (20, 3, 0.01, 16)
    with pytest.raises(ConfigError, match="epochs: expected an integer >= 1 .got 0.; ema: expected a number in"):
        RoundConfig.from_mapping({"epochs": 0, "ema": 1.0}, "round 3 task config")


def test_a_bad_round_key_in_the_settings_fails_at_start_up_not_in_round_one():
    with pytest.raises(ConfigError, match="batch_size: expected an integer >= 1"):
        workload.initial_parameters({"batch_size": 0}, 0)


def test_a_trainer_with_bad_settings_is_refused_before_any_data_is_read(tmp_path):
    with pytest.raises(ConfigError) as err:
        workload.make_trainer({"data": str(tmp_path / "absent"), "clients": 3}, "client1", tmp_path, "cpu")
    assert err.value.problems[0] == "unknown setting 'clients' (did you mean 'num_clients'?)"
    assert str(err.value).startswith("client1 [workload] settings: ")
    with pytest.raises(ConfigError, match="needs settings 'data'"):
        workload.make_trainer({}, "client1", tmp_path, "cpu")
    with pytest.raises(ConfigError, match="expected a table of settings .got list."):
        WorkloadSettings.from_mapping([("seed", 1)])
