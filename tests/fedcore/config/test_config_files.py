"""Coordinator and client TOML configs: defaults, path resolution, and every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcore.common.errors import ConfigError
from fedcore.config import load_client_config, load_coordinator_config, startup_summary


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_minimal_coordinator_config_gets_documented_defaults(tmp_path, pki):
    cfg_dir = tmp_path / "conf"
    cfg_dir.mkdir()
    path = _write(
        cfg_dir / "coordinator.toml",
        f"""
[tls]
ca = "{pki.folder / "ca.pem"}"
cert = "{pki.folder / "server.pem"}"
key = "{pki.folder / "server.key"}"
""",
    )
    cfg = load_coordinator_config(path)
    assert cfg.federation.aggregation == "secagg" and cfg.federation.min_clients == 3
    assert cfg.federation.fraction == 1.0 and cfg.strategy.name == "fedavg"
    assert cfg.server.run_dir == cfg_dir / "run"  # relative to the config file, not the cwd
    assert cfg.mode_settings["min_clients"] == 3
    assert any("TLS: mTLS" in line for line in startup_summary(cfg))


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write(
        tmp_path / "c.toml",
        """
[federation]
rounds = 0
aggregation = "magic"
fraction = 1.5
min_clients = "three"
colour = "blue"

[deadlines]
train = -1
heartbeat_interval = 10.0
heartbeat_timeout = 5.0

[strategy]
name = "fedsgd"

[nonsense]
x = 1
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_coordinator_config(path)
    text = str(exc.value)
    for needle in (
        "rounds must be >= 1",
        "aggregation must be one of plain, secagg, ckks",
        "fraction must be in (0, 1]",
        "min_clients must be an integer",
        "unknown key 'colour'",
        "train must be > 0",
        "heartbeat_timeout (5.0) must exceed",
        "strategy must be one of",
        "unknown section [nonsense]",
        "[tls] ca: file not found",
    ):
        assert needle in text, needle
    assert len(exc.value.problems) >= 10


def test_strategy_options_are_validated_by_the_strategy(tmp_path):
    path = _write(tmp_path / "c.toml", '[strategy]\nname = "fedprox"\nmu = -1.0\nbogus = 2\n')
    with pytest.raises(ConfigError, match="mu must be >= 0") as exc:
        load_coordinator_config(path, insecure=True)
    assert "bogus" in str(exc.value)


def test_insecure_flag_skips_certificate_files(tmp_path):
    path = _write(tmp_path / "c.toml", '[federation]\naggregation = "plain"\n')
    cfg = load_coordinator_config(path, insecure=True)
    assert cfg.tls.insecure and any("DISABLED" in line for line in startup_summary(cfg))


def test_broken_toml_names_the_file(tmp_path):
    path = _write(tmp_path / "c.toml", "[federation\nrounds = 1\n")
    with pytest.raises(ConfigError, match="c.toml: not valid TOML"):
        load_coordinator_config(path)


def test_client_config_resolves_paths_relative_to_itself(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (folder / name).write_text("-----BEGIN X-----\n")
    path = _write(
        folder / "client.toml",
        """
[client]
id = "alice"
coordinator = "coord.example.org:50051"

[workload]
path = "fedcore.examples.softmax:workload"

[workload.settings]
data = "data/alice"
client_index = 0

[privacy]
target_epsilon = 3.0
""",
    )
    cfg = load_client_config(path)
    assert cfg.tls.cert == folder / "cert.pem" and cfg.client.workdir == folder / "work"
    assert cfg.workload.settings == {"data": "data/alice", "client_index": 0, "config_dir": str(folder)}
    assert cfg.privacy == {"target_epsilon": 3.0}


def test_client_config_problems_are_collected(tmp_path):
    path = _write(
        tmp_path / "client.toml",
        """
[client]
coordinator = "no-port"
device = "tpu"

[workload]
path = "nocolon"
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_client_config(path)
    text = str(exc.value)
    for needle in (
        "[client] id is required",
        "coordinator must look like HOST:PORT",
        "device must be one of",
        "path must look like",
        "[tls] ca: file not found",
    ):
        assert needle in text, needle
