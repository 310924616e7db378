"""Issue 16's list of operator errors, each through the real command line (separate processes):
one clear line, the documented exit code, no traceback (a traceback only with --log-level DEBUG).

=========================================================  ====  =============================================
case                                                       code  test
=========================================================  ====  =============================================
second coordinator on a port in use                        2     test_a_port_or_run_dir_in_use_...
second coordinator on a run folder in use                  2     test_a_port_or_run_dir_in_use_...
status page on a port in use                               2     test_a_port_or_run_dir_in_use_...
coordinator certificate not PEM                            3     test_certificate_problems_...
client trusting another CA (the coordinator's cert fails)  3     test_certificate_problems_...
client certificate from another federation                 3     test_certificate_problems_...
coordinator [privacy] defaults every client would refuse   2     test_bad_privacy_defaults_...
``fedpsyau simulate --rounds 0 / --clients 1 / --epsilon -1``  2  test_bad_simulate_arguments_...
Ctrl-C during ``fedpsyau simulate`` (data preparation)     130   test_ctrl_c_during_fedpsyau_simulate_...
Ctrl-C during ``fedpsyau simulate`` (federation running)   130   test_ctrl_c_during_the_fedpsyau_simulate_...
Ctrl-C during a simulated federation (processes running)   130   test_ctrl_c_during_a_simulated_federation_...
SIGTERM on the coordinator (interrupted run, resumable)    130   test_sigterm_on_the_coordinator_...
``stop`` on a running coordinator                          7     test_stop_finishes_after_the_current_round_...
a client whose data is broken                              4     test_a_client_with_broken_data_...
                                                  (the client: 2)
``status`` / ``stop`` with no coordinator running          5     test_status_and_stop_without_a_coordinator_...
an unexpected error (a bug) in a client's workload         1     test_an_unexpected_error_is_one_line_...
=========================================================  ====  =============================================
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_kit import provision_fast, spawn, stop_all, wait_for

from fedcore.coordinator.control import running_pid
from fedcore.exitcodes import ExitCode

EXAMPLE = "fedcore.examples.softmax:workload"
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, module: str = "fedcore.cli", timeout: float = 120, env=None) -> tuple[int, str]:
    """Run a command to its end; (exit code, stdout + stderr)."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ENV,
        check=False,
    )
    return out.returncode, out.stdout + out.stderr


def assert_clear(text: str, needle: str) -> None:
    assert needle in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def _federation(tmp: Path, rounds: int = 3, slowdown: float = 0.0, settings=None, **tables):
    port = free_port()
    per = [{"slowdown": slowdown, **(settings or {}).get(c, {})} for c in ("alice", "bob", "carol")]
    prov = provision_fast(tmp / "fed", port, rounds=rounds, workload=EXAMPLE, client_settings=per, **tables)
    return prov, port


def _start(prov, tmp: Path, clients=("alice", "bob", "carol"), tag: str = ""):
    address = prov.out / "run" / "coordinator.address"
    address.unlink(missing_ok=True)
    coord = spawn(["coordinator", "--config", str(prov.coordinator_config)], tmp / f"{tag}coordinator.log")
    wait_for(address.exists, 60, "the coordinator to serve", [coord])
    procs = {c: spawn(["client", "--config", str(prov.client_configs[c])], tmp / f"{tag}{c}.log") for c in clients}
    return coord, procs


def _log(tmp: Path, name: str) -> str:
    return (tmp / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """One coordinator waiting for clients (it never gets them): the target of the refusals below."""
    tmp = tmp_path_factory.mktemp("serving")
    prov, port = _federation(tmp, federation={"min_clients": 3})
    coord = spawn(["coordinator", "--config", str(prov.coordinator_config)], tmp / "coordinator.log")
    wait_for(lambda: (prov.out / "run" / "coordinator.address").exists(), 60, "the coordinator to serve", [coord])
    yield prov, port, tmp
    stop_all([coord])


def _copy_config(prov, tmp: Path, name: str, replace: dict[str, str]) -> Path:
    text = prov.coordinator_config.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = prov.out / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_port_or_run_dir_in_use_is_one_line_and_exit_2(serving):
    prov, port, tmp = serving
    other = _copy_config(prov, tmp, "second", {'run_dir = "run"': 'run_dir = "run2"'})
    code, text = cli("coordinator", "--config", str(other))
    assert code == ExitCode.CONFIG
    assert_clear(text, f"[server] address: cannot listen on 127.0.0.1:{port}: the address is in use")

    code, text = cli("coordinator", "--config", str(prov.coordinator_config))
    assert code == ExitCode.CONFIG
    assert_clear(text, "is in use by another coordinator (pid")

    status = _copy_config(
        prov,
        tmp,
        "third",
        {
            'run_dir = "run"': 'run_dir = "run3"',
            f'address = "127.0.0.1:{port}"': 'address = "127.0.0.1:0"',
            'address = ""': f'address = "127.0.0.1:{port}"',
        },
    )
    code, text = cli("coordinator", "--config", str(status))
    assert code == ExitCode.CONFIG
    assert_clear(text, f"[status] address: cannot listen on 127.0.0.1:{port}")


def test_certificate_problems_are_one_line_and_exit_3(serving, tmp_path):
    prov, port, _ = serving
    from fedcore.provision import provision

    broken = _copy_config(
        prov,
        tmp_path,
        "badcert",
        {'cert = "server.pem"': f'cert = "{tmp_path / "server.pem"}"', 'run_dir = "run"': 'run_dir = "run4"'},
    )
    (tmp_path / "server.pem").write_text("not a certificate\n")
    code, text = cli("coordinator", "--config", str(broken))
    assert code == ExitCode.TLS
    assert_clear(text, "is not PEM")

    other = provision(
        tmp_path / "other",
        ["alice"],
        address=f"127.0.0.1:{port}",
        aggregation="plain",
        workload=EXAMPLE,
        client_options={"reconnect_timeout": 60.0},
    )
    client = other.client_configs["alice"]
    t0 = time.monotonic()
    code, text = cli("client", "--config", str(client))
    assert code == ExitCode.TLS and time.monotonic() - t0 < 45  # at once, not after reconnect_timeout
    assert_clear(text, "presents a certificate this client does not accept")

    folder = client.parent  # alice of the other federation, but trusting this federation's CA
    (folder / "ca.pem").write_bytes((prov.out / "ca.pem").read_bytes())
    code, text = cli("client", "--config", str(client))
    assert code == ExitCode.TLS
    assert_clear(text, "refused this client's certificate")


def test_bad_privacy_defaults_are_refused_before_serving(tmp_path):
    prov, _ = _federation(tmp_path, privacy={"target_epsilon": -1.0})
    code, text = cli("coordinator", "--config", str(prov.coordinator_config))
    assert code == ExitCode.CONFIG
    assert_clear(text, "[privacy] target_epsilon: expected a finite number > 0 or absent (got -1.0)")
    assert not (prov.out / "run" / "coordinator.address").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--rounds", "0"], "--rounds must be >= 1 (got 0)"),
        (["--clients", "1"], "--clients must be >= 3 for --aggregation secagg"),
        (["--epsilon", "-1"], "--epsilon must be > 0, or inf / --no-dp for no DP (got -1.0)"),
    ],
)
def test_bad_simulate_arguments_exit_2_before_any_work(tmp_path, argv, needle):
    out = tmp_path / "run"
    code, text = cli("simulate", "--out", str(out), *argv, module="mer.cli")
    assert code == ExitCode.CONFIG
    assert_clear(text, needle)
    assert not out.exists()  # no data written, no process started


def test_ctrl_c_during_fedpsyau_simulate_data_preparation_is_one_line_and_exit_130(tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "sim.log", "wb") as log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "mer.cli", "simulate", "--out", str(out), "--subjects", "8", "--rounds", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    try:
        wait_for(lambda: (out / "data").exists(), 90, "the data set to be written", [sim])
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=60) == ExitCode.INTERRUPTED
    finally:
        stop_all([sim])
    assert_clear((tmp_path / "sim.log").read_text(), "interrupted (Ctrl-C)")


@pytest.mark.slow
def test_ctrl_c_during_the_fedpsyau_simulate_federation_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "sim.log", "wb") as log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "mer.cli", "simulate", "--out", str(out), "--subjects", "12", "--rounds", "20"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    try:
        wait_for(lambda: (out / "coordinator.address").exists(), 300, "the federation to start", [sim])
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=90) == ExitCode.INTERRUPTED
    finally:
        stop_all([sim])
    assert_clear((tmp_path / "sim.log").read_text(), f"Resume with: fedpsyau simulate --out {out} --resume")
    wait_for(lambda: running_pid(out) is None, 30, "the coordinator to exit")


def test_ctrl_c_during_a_simulated_federation_stops_every_process_in_one_line(tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "sim.log", "wb") as log:
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedcore.cli",
                "simulate",
                "--out",
                str(out),
                "--workload",
                EXAMPLE,
                "--aggregation",
                "plain",
                "--rounds",
                "50",
                "--clients",
                "3",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    try:
        wait_for(
            lambda: (
                len((out / "metrics.jsonl").read_text().splitlines()) >= 1
                if (out / "metrics.jsonl").exists()
                else False
            ),
            90,
            "a first round",
            [sim],
        )
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=60) == ExitCode.INTERRUPTED
    finally:
        stop_all([sim])
    assert_clear((tmp_path / "sim.log").read_text(), "simulate interrupted (Ctrl-C)")
    wait_for(lambda: running_pid(out) is None, 30, "the coordinator to exit")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "restart with the same config to resume" in summary["reason"]
    assert "Traceback" not in (out / "logs" / "coordinator.log").read_text()


@pytest.mark.slow
def test_sigterm_on_the_coordinator_checkpoints_and_a_restart_resumes(tmp_path):
    prov, _ = _federation(tmp_path, rounds=6, slowdown=0.3)
    coord, clients = _start(prov, tmp_path)
    run = prov.out / "run"
    try:
        wait_for(
            lambda: (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 2,
            90,
            "two rounds",
            [coord],
        )
        coord.send_signal(signal.SIGTERM)
        assert coord.wait(timeout=60) == ExitCode.INTERRUPTED
        text = _log(tmp_path, "coordinator")
        assert_clear(text, "interrupted by SIGTERM at round")
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and "written" in summary["reason"]
        assert all(p.poll() is None for p in clients.values())  # the clients wait for the coordinator
        coord = spawn(["coordinator", "--config", str(prov.coordinator_config)], tmp_path / "coordinator2.log")
        assert coord.wait(timeout=120) == ExitCode.OK
        assert [p.wait(timeout=60) for p in clients.values()] == [0, 0, 0]
    finally:
        stop_all([coord, *clients.values()])
    assert "resuming from the checkpoint of round" in _log(tmp_path, "coordinator2")
    rounds = [json.loads(line)["round"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_stop_finishes_after_the_current_round_and_a_restart_resumes(tmp_path):
    prov, _ = _federation(tmp_path, rounds=16, slowdown=1.0)
    coord, clients = _start(prov, tmp_path)
    run = prov.out / "run"
    cfg = str(prov.coordinator_config)
    try:
        wait_for(
            lambda: (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 1,
            90,
            "a first round",
            [coord],
        )
        code, text = cli("stop", "--config", cfg, module="mer.cli")
        assert code == ExitCode.OK and "stop after the current round" in text
        assert coord.wait(timeout=60) == ExitCode.STOPPED
        assert [p.wait(timeout=60) for p in clients.values()] == [0, 0, 0]  # told it is over
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "stopped" and summary["rounds"] < 16
        code, text = cli("status", "--config", cfg, module="mer.cli")
        assert code == ExitCode.OK and "stopped on request" in text and "coordinator NOT running" in text
        coord, clients = _start(prov, tmp_path, tag="again-")
        assert coord.wait(timeout=120) == ExitCode.OK
    finally:
        stop_all([coord, *clients.values()])
    rounds = [json.loads(line)["round"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rounds == list(range(1, 17))


def test_a_client_with_broken_data_stops_the_federation_at_once_with_its_message(tmp_path):
    prov, _ = _federation(tmp_path, settings={"carol": {"samples": 2}})
    coord, clients = _start(prov, tmp_path)
    try:
        assert coord.wait(timeout=90) == ExitCode.ABORTED
        assert clients["carol"].wait(timeout=60) == ExitCode.CONFIG
        assert [clients[c].wait(timeout=60) for c in ("alice", "bob")] == [ExitCode.ABORTED] * 2
    finally:
        stop_all([coord, *clients.values()])
    text = _log(tmp_path, "coordinator")
    assert_clear(text, "FEDERATION ABORTED: carol cannot take part")
    assert "samples >= 4" in text and "attempt 1" not in text  # no retry
    assert_clear(_log(tmp_path, "carol"), "client carol cannot start its workload")
    assert "samples >= 4" in json.loads((prov.out / "run" / "summary.json").read_text())["reason"]


def test_status_and_stop_without_a_coordinator_exit_5(tmp_path):
    prov, _ = _federation(tmp_path)
    code, text = cli("status", "--config", str(prov.coordinator_config), module="mer.cli")
    assert code == ExitCode.UNREACHABLE
    assert_clear(text, "no run in")
    code, text = cli("stop", "--config", str(prov.coordinator_config), module="mer.cli")
    assert code == ExitCode.UNREACHABLE
    assert_clear(text, "no coordinator is running on")


def test_an_unexpected_error_is_one_line_and_its_traceback_only_with_debug(tmp_path):
    (tmp_path / "buggy_workload.py").write_text(
        "from fedcore.examples.softmax import SoftmaxWorkload\n"
        "class Buggy(SoftmaxWorkload):\n"
        "    def make_trainer(self, settings, client_id, workdir, device):\n"
        "        raise RuntimeError('boom in make_trainer')\n"
        "workload = Buggy()\n"
    )
    port = free_port()  # nobody listens there: the client cannot even tell a coordinator
    prov = provision_fast(tmp_path / "fed", port, clients=("alice",), workload="buggy_workload:workload")
    text = prov.client_configs["alice"].read_text().replace("reconnect_timeout = 60.0", "reconnect_timeout = 2.0")
    prov.client_configs["alice"].write_text(text)
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")]))
    code, text = cli("client", "--config", str(prov.client_configs["alice"]), env=env)
    assert code == ExitCode.INTERNAL
    assert_clear(text, "cannot start its workload buggy_workload:workload: RuntimeError: boom in make_trainer")
    code, text = cli("client", "--config", str(prov.client_configs["alice"]), "--log-level", "DEBUG", env=env)
    assert code == ExitCode.INTERNAL and "Traceback" in text and "boom in make_trainer" in text
