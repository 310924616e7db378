"""Starting real coordinator and client processes for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fedcore.provision import Provisioned, provision

FAST = {
    "poll_interval": 0.1,
    "heartbeat_interval": 0.5,
    "heartbeat_timeout": 10.0,
    "join": 30.0,
    "train": 30.0,
    "stage": 20.0,
    "evaluate": 20.0,
    "max_round_retries": 2,
}


def provision_fast(
    out: Path, port: int, clients=("alice", "bob", "carol"), rounds=3, client_settings=None, **tables
) -> Provisioned:
    return provision(
        out,
        list(clients),
        address=f"127.0.0.1:{port}",
        listen=f"127.0.0.1:{port}",
        aggregation="plain",
        rounds=rounds,
        client_settings=client_settings,
        deadlines={**FAST, **tables.pop("deadlines", {})},
        client_options={"backoff_max": 0.5, "reconnect_timeout": 60.0},
        **tables,
    )


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "fedcore.cli", *args], stdout=fh, stderr=subprocess.STDOUT, env=env
        )


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process {p.args[3:5]} exited early with {p.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
