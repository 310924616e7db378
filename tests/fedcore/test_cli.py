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
    out = subprocess.run([sys.executable, "-m", "fedcore.cli", "--help"], capture_output=True, text=True, timeout=60,
                         check=False)
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
    assert cli.main(args) == ExitCode.TLS                           # already issued: refused
    assert cli.main(["provision", "sign", str(site / "alice.csr"), "--out", str(reply)]) == ExitCode.CONFIG  # no --ca
    assert cli.main(["enroll", "--name", "bad id!", "--out", str(site)]) == ExitCode.CONFIG
