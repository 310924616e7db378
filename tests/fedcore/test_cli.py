"""fedcore's command line: the exit-code table, help, and the codes for config and TLS errors."""

from __future__ import annotations

import re
import subprocess
import sys

from fedcore import cli
from fedcore.exitcodes import ExitCode


def test_every_exit_code_is_documented_in_the_table():
    rows = dict(re.findall(r"^(\d+)\s+([A-Z_]+)\s+\S", cli.__doc__, flags=re.MULTILINE))
    assert rows == {str(int(code)): code.name for code in ExitCode}


def test_help_lists_the_four_commands():
    out = subprocess.run(
        [sys.executable, "-m", "fedcore.cli", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0
    for cmd in ("provision", "coordinator", "client", "simulate"):
        assert cmd in out.stdout


def test_unknown_command_is_a_usage_error():
    assert cli.main(["frobnicate"]) == ExitCode.CONFIG


def test_invalid_config_exits_with_code_2(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[federation]\nrounds = -3\n")
    assert cli.main(["coordinator", "--config", str(path)]) == ExitCode.CONFIG


def test_unreadable_certificate_exits_with_code_3(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("not a certificate\n")
    path = tmp_path / "client.toml"
    path.write_text('[client]\nid = "alice"\ncoordinator = "127.0.0.1:9"\n')
    assert cli.main(["client", "--config", str(path)]) == ExitCode.TLS


def test_provision_command_writes_a_runnable_layout(tmp_path):
    out = tmp_path / "fed"
    assert cli.main(["provision", "--out", str(out), "--clients", "alice,bob", "--aggregation", "plain"]) == 0
    assert (out / "coordinator.toml").exists() and (out / "clients" / "bob" / "client.toml").exists()
    assert cli.main(["provision", "--out", str(out), "--clients", "alice"]) == ExitCode.CONFIG  # no silent overwrite


def test_enroll_and_provision_sign_commands(tmp_path):
    fed, site, reply = tmp_path / "fed", tmp_path / "site", tmp_path / "reply"
    assert cli.main(["provision", "--out", str(fed), "--aggregation", "plain"]) == 0
    assert cli.main(["enroll", "--name", "alice", "--out", str(site)]) == 0
    assert (site / "alice.key").exists() and (site / "alice.csr").exists()
    args = ["provision", "sign", str(site / "alice.csr"), "--ca", str(fed), "--out", str(reply)]
    assert cli.main(args) == 0 and (reply / "alice.pem").exists()
    assert cli.main(args) == ExitCode.TLS  # already issued: refused
    assert cli.main(["provision", "sign", str(site / "alice.csr"), "--out", str(reply)]) == ExitCode.CONFIG  # no --ca
    assert cli.main(["enroll", "--name", "bad id!", "--out", str(site)]) == ExitCode.CONFIG


def test_provision_makes_the_mer_federation_with_dp_by_default(tmp_path):
    import pytest

    from fedcore.common.errors import ConfigError
    from fedcore.config import load_client_config, load_coordinator_config
    from fedcore.config._load import read_toml
    from fedcore.config.client import parse_client
    from fedcore.provision import MER_WORKLOAD

    out = tmp_path / "fed"
    assert cli.main(["provision", "--out", str(out), "--clients", "alice,bob,carol"]) == 0
    coord = load_coordinator_config(out / "coordinator.toml")
    assert coord.federation.workload == MER_WORKLOAD and coord.workload["model"] == "dpk-gat"
    assert coord.privacy["enabled"] is True and coord.privacy["target_epsilon"] == 8.0
    path = out / "clients" / "alice" / "client.toml"
    with pytest.raises(ConfigError) as info:  # the client refuses to start before its data is named
        load_client_config(path)
    assert '[workload.settings] data = "REQUIRED: ' in str(info.value)
    assert '[workload.settings] format = "REQUIRED: ' in str(info.value)
    assert "Across institutions" in str(info.value)
    data = read_toml(path)
    assert data["workload"]["path"] == MER_WORKLOAD and data["workload"]["settings"]["client_index"] == 0
    data["workload"]["settings"].update(data="/srv/casme2", format="casme2")
    alice = parse_client(data, path.parent)
    assert alice.workload.settings["data"] == "/srv/casme2"
    assert "REQUIRED: " in (out / "client-template.toml").read_text()

    plain = tmp_path / "plain"
    assert cli.main(["provision", "--out", str(plain), "--clients", "alice", "--no-dp"]) == ExitCode.CONFIG
    assert (
        cli.main(
            [
                "provision",
                "--out",
                str(plain),
                "--clients",
                "alice",
                "--workload",
                "example",
                "--no-dp",
                "--aggregation",
                "plain",
            ]
        )
        == 0
    )
    coord = load_coordinator_config(plain / "coordinator.toml")
    assert coord.federation.workload == "fedcore.examples.softmax:workload" and coord.privacy == {"enabled": False}
    assert load_client_config(plain / "clients" / "alice" / "client.toml").workload.path == coord.federation.workload
