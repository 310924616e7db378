"""One-command simulation: a coordinator and N client processes on loopback over mTLS.

``simulate()`` provisions a CA and certificates under ``RUN_DIR/federation``, starts
``python -m fedcore.cli coordinator`` on a free loopback port (port 0; the daemon writes the
bound address to ``RUN_DIR/coordinator.address``), then one ``python -m fedcore.cli client``
process per client, follows ``RUN_DIR/metrics.jsonl`` with a progress bar (silent when stderr is
not a terminal), prints a closing table and returns when the coordinator exits. Every process
logs to ``RUN_DIR/logs/<name>.log``. The result's ``returncode`` is 0 only when every round
finished.

From Python::

    from fedcore.simulation import simulate
    res = simulate(clients=3, rounds=5, out="runs/demo", aggregation="plain",
                   client_settings=[{"alpha": 0.1}, {"alpha": 0.5}, {"alpha": 5.0}])
    res.returncode, res.summary["accuracy"], res.metrics[-1]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcore.common.errors import ConfigError, FedError
from fedcore.exitcodes import ExitCode
from fedcore.provision import DEFAULT_WORKLOAD, client_toml, provision
from fedcore.simulation_report import closing_table, progress_bar

#: Deadlines that suit loopback: quick polling, prompt detection of a dead process.
SIM_DEADLINES = {"poll_interval": 0.1, "heartbeat_interval": 1.0, "heartbeat_timeout": 15.0}


@dataclass
class SimulationResult:
    returncode: int
    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    client_returncodes: dict[str, int | None] = field(default_factory=dict)
    status_page: str = ""  # the status page's URL while the coordinator ran ("" = none)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _child_env(clients: int, env: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONUNBUFFERED"] = "1"
    threads = str(max(1, (os.cpu_count() or 1) // max(1, clients)))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        out.setdefault(key, threads)
    out.update(env or {})
    return out


def _parent_death_hook():
    """Linux: a pre-exec hook that makes the kernel send SIGTERM to the child when the simulating
    process dies, so no daemon is orphaned. libc and the signal number are resolved here, in the
    parent; the hook itself only makes one system call (nothing that takes a lock after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        sig = int(signal.SIGTERM)
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, sig)  # 1 = PR_SET_PDEATHSIG


def _spawn(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        argv = [sys.executable, "-m", "fedcore.cli", *args]  # this interpreter, our own module, fixed options
        # argv is built above (S603); the pre-exec hook makes one system call (PLW1509, see above)
        return subprocess.Popen(  # noqa: S603
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_parent_death_hook(),  # noqa: PLW1509
        )


def _stop(procs: Sequence[subprocess.Popen], grace: float) -> None:
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class CoordinatorFailed(FedError):
    """The simulation's coordinator exited before serving (or never bound); ``returncode`` is its
    exit code (``None``: it did not bind in time) and the message ends with its last error line."""

    def __init__(self, message: str, returncode: int | None):
        super().__init__(message)
        self.returncode = returncode


def last_error(log_path: Path) -> str:
    """The last ERROR line of a daemon's log (without the time stamp), or ""."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if " ERROR " in line:
            return line.split(" ERROR ", 1)[1].strip()
    return ""


def _wait_address(path: Path, coord: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if coord.poll() is not None:
            why = last_error(log_path) or "no error line"
            raise CoordinatorFailed(
                f"the coordinator exited with code {coord.returncode} before serving: {why} (log: {log_path})",
                coord.returncode,
            )
        time.sleep(0.05)
    raise CoordinatorFailed(f"the coordinator did not bind within {timeout:.0f} s (log: {log_path})", None)


@dataclass
class Prepared:
    """A provisioned simulation folder: certificates, coordinator.toml, and how to write the
    clients' configs once the coordinator's address is known."""

    run_dir: Path
    prov: Any
    ids: list[str]
    write_client_configs: Any  # (address) -> None


def prepare(
    clients: int = 3,
    rounds: int = 5,
    out: str | Path | None = None,
    *,
    aggregation: str = "secagg",
    workload: str = DEFAULT_WORKLOAD,
    workload_settings: Mapping[str, Any] | None = None,
    client_settings: Sequence[Mapping[str, Any]] | None = None,
    seed: int = 0,
    strategy: Mapping[str, Any] | None = None,
    privacy: Mapping[str, Any] | None = None,
    client_privacy: Sequence[Mapping[str, Any]] | None = None,
    secagg: Mapping[str, Any] | None = None,
    ckks: Mapping[str, Any] | None = None,
    central_dp: Mapping[str, Any] | None = None,
    deadlines: Mapping[str, Any] | None = None,
    federation: Mapping[str, Any] | None = None,
    client_ids: Sequence[str] | None = None,
    resume: bool = False,
    status: str | None = None,
    seeded: bool = False,
    device: str | None = None,
) -> Prepared:
    """Provision a simulation's folder (the arguments are :func:`simulate`'s)."""
    ids = list(client_ids or [f"client{i + 1}" for i in range(clients)])
    if len(ids) != clients or clients < 1:
        raise ConfigError(f"need clients >= 1 and one id per client (got {clients} clients, ids {ids})", "simulate")
    run_dir = Path(out or f"runs/sim-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"{run_dir} holds an earlier run; choose a new --out (or resume=True)", "simulate")
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pki = run_dir / "federation"
    fed_extra = {"seed": seed, **dict(federation or {})}
    prov = provision(
        pki,
        ids,
        address="127.0.0.1:1",
        listen="127.0.0.1:0",
        aggregation=aggregation,
        rounds=rounds,
        min_clients=fed_extra.pop("min_clients", min(3, clients)),
        workload=workload,
        workload_settings=workload_settings,
        client_settings=client_settings,
        overwrite=True,
        federation=fed_extra,
        server={"run_dir": str(run_dir)},
        deadlines={**SIM_DEADLINES, **dict(deadlines or {})},
        strategy=dict(strategy or {}),
        privacy=privacy,
        secagg=secagg,
        ckks=ckks,
        central_dp=central_dp,
        status={"address": status} if status else None,
    )

    def write_client_configs(address: str) -> None:
        for i, cid in enumerate(ids):
            settings = {
                **dict(workload_settings or {}),
                "client_index": i,
                "num_clients": clients,
                **dict(client_settings[i] if client_settings else {}),
            }
            extra: dict[str, Any] = {"backoff_max": 2.0, **({"device": device} if device else {})}
            if seeded:
                extra["seed"] = int(seed) * 1_000_003 + i
            prov.client_configs[cid].write_text(
                client_toml(
                    cid,
                    federation="fedpsyau",
                    coordinator=address,
                    workload=workload,
                    settings=settings,
                    privacy=client_privacy[i] if client_privacy else None,
                    client=extra,
                )
            )

    return Prepared(run_dir, prov, ids, write_client_configs)


def simulate(
    clients: int = 3,
    rounds: int = 5,
    out: str | Path | None = None,
    *,
    aggregation: str = "secagg",
    workload: str = DEFAULT_WORKLOAD,
    workload_settings: Mapping[str, Any] | None = None,
    client_settings: Sequence[Mapping[str, Any]] | None = None,
    insecure: bool = False,
    seed: int = 0,
    strategy: Mapping[str, Any] | None = None,
    privacy: Mapping[str, Any] | None = None,
    client_privacy: Sequence[Mapping[str, Any]] | None = None,
    secagg: Mapping[str, Any] | None = None,
    ckks: Mapping[str, Any] | None = None,
    central_dp: Mapping[str, Any] | None = None,
    deadlines: Mapping[str, Any] | None = None,
    federation: Mapping[str, Any] | None = None,
    client_ids: Sequence[str] | None = None,
    progress: bool | None = None,
    timeout: float | None = None,
    resume: bool = False,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
    status: str | None = None,
    transport: str = "grpc",
    seeded: bool = False,
    faults: Any = None,
    device: str | None = None,
    trainers: Mapping[str, Any] | None = None,
) -> SimulationResult:
    """Run a whole federation locally; see the module docstring. ``client_settings[i]`` and
    ``client_privacy[i]`` are client i's ``[workload.settings]`` additions and ``[privacy]`` table
    (``workload_settings`` go to the coordinator's ``[workload]`` and under every client's settings);
    ``federation`` adds keys to ``[federation]`` (e.g. ``min_clients``, ``fraction``); ``status`` is
    the ``[status] address`` of the live status page (e.g. ``127.0.0.1:0``; None: off), whose URL
    is printed once it serves and kept in ``SimulationResult.status_page``.

    ``transport``: ``grpc`` (processes over mTLS on loopback) or ``memory`` (the same engine and
    clients in this process, :mod:`fedcore.simulation_memory`; ``faults`` scripts its dropouts and
    stragglers, ``timeout`` is then in simulated seconds). ``seeded``: every client gets
    ``[client] seed`` (derived from ``seed`` and its index), so a run is reproducible -- with DP
    only together with ``privacy = {"secure_rng": False, ...}``. ``device``: every client's
    ``[client] device`` (default auto). ``trainers`` (memory only): client id -> the Trainer it
    runs instead of the one its workload would make (data already in memory)."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)} (got {transport!r})", "simulate")
    if trainers is not None and transport != "memory":
        raise ConfigError("trainers made in this process can only run over --transport memory", "simulate")
    if transport == "memory" and status:
        raise ConfigError(
            "the status page is served by the coordinator daemon: use --transport grpc with --status", "simulate"
        )
    prep = prepare(
        clients,
        rounds,
        out,
        aggregation=aggregation,
        workload=workload,
        workload_settings=workload_settings,
        client_settings=client_settings,
        seed=seed,
        strategy=strategy,
        privacy=privacy,
        client_privacy=client_privacy,
        secagg=secagg,
        ckks=ckks,
        central_dp=central_dp,
        deadlines=deadlines,
        federation=federation,
        client_ids=client_ids,
        resume=resume,
        status=status,
        seeded=seeded,
        device=device,
    )
    run_dir, prov, ids, write_client_configs = prep.run_dir, prep.prov, prep.ids, prep.write_client_configs
    logs = run_dir / "logs"
    if transport == "memory":
        from fedcore.simulation_memory import run_in_memory

        write_client_configs(MEMORY_ADDRESS)
        rc, client_rcs = run_in_memory(
            prov.coordinator_config,
            [prov.client_configs[c] for c in ids],
            insecure=insecure,
            rounds=rounds,
            progress=progress,
            timeout=timeout,
            faults=faults,
            log_path=logs / "federation.log",
            trainers=trainers,
        )
    else:
        rc, client_rcs = _run_processes(
            run_dir,
            prov,
            ids,
            write_client_configs,
            insecure=insecure,
            rounds=rounds,
            progress=progress,
            timeout=timeout,
            env=env,
            echo=echo,
        )
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    metrics = read_metrics(run_dir / "metrics.jsonl")
    if rc == 0 and summary.get("status") != "completed":
        rc = ExitCode.INTERNAL
    if echo:
        print(closing_table(metrics, summary, run_dir))
    page = run_dir / "status.address"
    return SimulationResult(
        int(rc), run_dir, summary, metrics, client_rcs, page.read_text().strip() if page.exists() else ""
    )


#: the transports a simulation runs over
TRANSPORTS = ("grpc", "memory")
#: the ``[client] coordinator`` written for an in-memory run (never dialled)
MEMORY_ADDRESS = "memory:1"


def _run_processes(
    run_dir: Path,
    prov,
    ids: list[str],
    write_client_configs,
    *,
    insecure: bool,
    rounds: int,
    progress: bool | None,
    timeout: float | None,
    env: Mapping[str, str] | None,
    echo: bool,
) -> tuple[int, dict[str, int | None]]:
    """The gRPC transport: the coordinator and one process per client; (exit code, client exit codes)."""
    logs = run_dir / "logs"
    child_env = _child_env(len(ids), env)
    flag = ["--insecure"] if insecure else []
    for stale in ("coordinator.address", "status.address"):
        (run_dir / stale).unlink(missing_ok=True)
    coord_log = logs / "coordinator.log"
    coord = _spawn(["coordinator", "--config", str(prov.coordinator_config), *flag], coord_log, child_env)
    procs: dict[str, subprocess.Popen] = {}
    started = time.monotonic()
    try:
        address = _wait_address(run_dir / "coordinator.address", coord, coord_log)
        write_client_configs(address)
        for cid in ids:
            procs[cid] = _spawn(
                ["client", "--config", str(prov.client_configs[cid]), *flag], logs / f"{cid}.log", child_env
            )
        rc = _follow(run_dir, coord, list(procs.values()), rounds, progress, timeout, started, echo)
    except BaseException:
        coord.terminate()
        _stop([coord, *procs.values()], grace=0)
        raise
    _stop(list(procs.values()), grace=10.0)
    return rc, {c: p.returncode for c, p in procs.items()}


#: after every client process has exited, give the coordinator this long to finish on its own
ORPHAN_GRACE = 15.0


def _follow(
    run_dir: Path,
    coord: subprocess.Popen,
    clients: list[subprocess.Popen],
    rounds: int,
    progress: bool | None,
    timeout: float | None,
    started: float,
    echo: bool = True,
) -> int:
    """Update the progress bar from metrics.jsonl until the coordinator exits; its exit code.

    When every client process has died and the coordinator has not finished within
    :data:`ORPHAN_GRACE` seconds, the coordinator is stopped and the run counts as aborted."""
    path = run_dir / "metrics.jsonl"
    bar = progress_bar(rounds, progress)
    seen = 0
    all_gone: float | None = None
    page = run_dir / "status.address"
    announced = False
    try:
        while True:
            if not announced and page.exists() and page.read_text().strip():
                announced = True
                if echo:
                    print(f"status page: {page.read_text().strip()}", file=sys.stderr, flush=True)
            lines = read_metrics(path)
            for line in lines[seen:]:
                bar.update_round(line)
            seen = len(lines)
            if coord.poll() is not None:
                return coord.returncode
            if all_gone is None and all(p.poll() is not None for p in clients):
                all_gone = time.monotonic()
            if all_gone is not None and time.monotonic() - all_gone > ORPHAN_GRACE:
                print(
                    f"every client process exited ({[p.returncode for p in clients]}); stopping the coordinator "
                    f"(see {run_dir / 'logs'})",
                    file=sys.stderr,
                )
                coord.terminate()
                coord.wait(timeout=30)
                return ExitCode.ABORTED
            if timeout is not None and time.monotonic() - started > timeout:
                coord.terminate()
                coord.wait(timeout=30)
                return ExitCode.INTERRUPTED
            time.sleep(0.2)
    finally:
        bar.close()
