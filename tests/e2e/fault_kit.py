"""Fault injection for the end-to-end fault matrix: real daemons, a loopback TCP proxy, checks.

:class:`FaultRun` provisions a federation of four clients (``alice``..``dave``, ``min_clients`` 3)
over mTLS for one aggregation mode with the fast example workload, starts the coordinator and one
client process per client, and lets a test inject one fault when a given stage of a given round
opens (read from the coordinator's log):

- ``kill``: SIGKILL the victim client;
- ``coordinator``: SIGKILL the coordinator and start it again on the same port and run folder;
- ``slow``: SIGSTOP the victim for longer than the stage deadline (shorter than the heartbeat
  timeout, so it is late, not dead), then SIGCONT;
- ``cut``: the victim's traffic passes through a :class:`Proxy`; the next connection forwards a
  few hundred bytes, then every connection is dropped and new ones are refused for a while;
- ``stall``: the proxy stops forwarding (connections stay open) for a while, then resumes.

:meth:`FaultRun.verify` then checks what every cell must hold: the coordinator completed, the
metrics have every round once in order, every checkpoint loads and verifies, the faulted round's
new model equals FedAvg over a set of at least ``min_clients`` clients recomputed here in the
test process from the previous checkpoint (the example workload is deterministic), and the
round after the fault ran.
"""

from __future__ import annotations

import itertools
import json
import re
import select
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from e2e_kit import spawn, stop_all, wait_for

from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.provision import client_toml, provision

CLIENTS = ("alice", "bob", "carol", "dave")
VICTIM = "dave"  # never the CKKS key holder (the first client in sorted order)
#: every stage closes at its deadline; a stopped ("slow") client stays stopped past it but is
#: declared dead only after the heartbeat timeout, which is longer
#: (TRAIN is longer: a client's first fit imports torch._dynamo, seconds on a loaded machine)
DEADLINE = 6.0
TRAIN_DEADLINE = 15.0
HEARTBEAT_TIMEOUT = 20.0
CUT_FOR = 8.5
DEADLINES = {
    "poll_interval": 0.2,
    "heartbeat_interval": 0.5,
    "heartbeat_timeout": HEARTBEAT_TIMEOUT,
    "join": 30.0,
    "train": TRAIN_DEADLINE,
    "stage": DEADLINE,
    "evaluate": DEADLINE,
    "max_round_retries": 3,
}


def slow_for(stage: Stage) -> float:
    """How long a "slow" victim stays stopped: past the stage's deadline, short of the heartbeat timeout."""
    return (TRAIN_DEADLINE if stage == Stage.TRAIN else DEADLINE) + 2.5


MODE_TABLES = {"plain": {}, "secagg": {"secagg": {"clip": 8.0}}, "ckks": {}}
#: the stages of a training round, per mode (the fault matrix's columns)
ROUND_STAGES = {
    "plain": (Stage.TRAIN, Stage.PLAIN_INPUT, Stage.EVALUATE),
    "secagg": (
        Stage.TRAIN,
        Stage.SECAGG_ADVERTISE_KEYS,
        Stage.SECAGG_SHARE_KEYS,
        Stage.SECAGG_MASKED_INPUT,
        Stage.SECAGG_UNMASK,
        Stage.EVALUATE,
    ),
    "ckks": (Stage.TRAIN, Stage.CKKS_ENCRYPTED_INPUT, Stage.CKKS_DECRYPT, Stage.EVALUATE),
}
FAULTS = ("kill", "coordinator", "slow", "cut")


# -- a loopback TCP proxy ------------------------------------------------------------------------
class Proxy:
    """Forwards 127.0.0.1:``port`` to ``target``; can drop (``cut``) or pause (``stall``) traffic."""

    def __init__(self, target: int):
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self.refuse_until = 0.0
        self.cut_after: int | None = None  # drop everything once this many more bytes passed
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        self.drops = 0
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    def cut(self, seconds: float, after_bytes: int = 300) -> None:
        """Let ``after_bytes`` more bytes through (mid-message), then drop every connection and
        refuse new ones for ``seconds``."""
        with self.lock:
            self.refuse_until = time.monotonic() + seconds + 3600  # fixed once the cut happens
            self.cut_for = seconds
            self.cut_after = after_bytes

    def stall(self, seconds: float) -> None:
        """Stop forwarding for ``seconds`` (connections stay open), then resume."""
        self.flowing.clear()
        threading.Timer(seconds, self.flowing.set).start()

    def close(self) -> None:
        self.closed = True
        self.flowing.set()
        self.sock.close()
        self._drop_all()

    def _drop_all(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if time.monotonic() < self.refuse_until and self.cut_after is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _passed(self, n: int) -> bool:
        """Count ``n`` forwarded bytes against an armed cut; True when the cut fires now."""
        with self.lock:
            if self.cut_after is None:
                return False
            self.cut_after -= n
            if self.cut_after > 0:
                return False
            self.cut_after = None
            self.refuse_until = time.monotonic() + self.cut_for
            self.drops += 1
        return True

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while not self.closed:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    self.flowing.wait()
                    if self._passed(len(data)):
                        self._drop_all()
                        return
                    peer[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


# -- a federation under test -----------------------------------------------------------------------
@dataclass
class FaultRun:
    root: Path
    port: int
    mode: str
    rounds: int = 3
    proxied: bool = False
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    coordinators: list[subprocess.Popen] = field(default_factory=list)
    proxy: Proxy | None = None

    def __post_init__(self):
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.root / "fed" / "run"
        self.prov = provision(
            self.root / "fed",
            list(CLIENTS),
            address=f"127.0.0.1:{self.port}",
            listen=f"127.0.0.1:{self.port}",
            aggregation=self.mode,
            rounds=self.rounds,
            min_clients=3,
            deadlines=DEADLINES,
            federation={"min_available": 4},
            client_options={"backoff_max": 0.5, "reconnect_timeout": 120.0},
            client_settings=[{"fixed_shuffle": 1}] * len(CLIENTS),
            **MODE_TABLES[self.mode],
        )
        if self.proxied:
            self.proxy = Proxy(self.port)
            path = self.prov.client_configs[VICTIM]
            path.write_text(
                client_toml(
                    VICTIM,
                    federation="fedpsyau",
                    coordinator=f"127.0.0.1:{self.proxy.port}",
                    workload="fedcore.examples.softmax:workload",
                    settings={"client_index": CLIENTS.index(VICTIM), "num_clients": len(CLIENTS), "fixed_shuffle": 1},
                    client={"backoff_max": 0.5, "reconnect_timeout": 120.0},
                )
            )
        self.coord_log = self.logs / "coordinator.log"

    # -- processes ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.start_coordinator()
        for cid, path in self.prov.client_configs.items():
            self.procs[cid] = spawn(["client", "--config", str(path)], self.logs / f"{cid}.log")

    def start_coordinator(self) -> None:
        self.coordinators.append(spawn(["coordinator", "--config", str(self.prov.coordinator_config)], self.coord_log))

    @property
    def coordinator(self) -> subprocess.Popen:
        return self.coordinators[-1]

    def all_procs(self) -> list[subprocess.Popen]:
        return [*self.coordinators, *self.procs.values()]

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
        stop_all(self.all_procs())
        if self.proxy:
            self.proxy.close()

    def log(self) -> str:
        return self.coord_log.read_text(errors="replace")

    def wait_stage(self, round_: int, stage: Stage, timeout: float = 120.0) -> None:
        pattern = re.compile(rf"round {round_} attempt \d+: stage {stage.name} open")
        wait_for(
            lambda: pattern.search(self.log()) is not None,
            timeout,
            f"round {round_} stage {stage.name}",
            [self.coordinator],
        )

    # -- faults ------------------------------------------------------------------------------------
    def inject(self, fault: str, stage: Stage) -> None:
        victim = self.procs[VICTIM]
        if fault == "kill":
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        elif fault == "coordinator":
            self.coordinator.send_signal(signal.SIGKILL)
            self.coordinator.wait(timeout=10)
            self.check_checkpoints()  # what a crash leaves behind verifies
            self.start_coordinator()
        elif fault == "slow":
            victim.send_signal(signal.SIGSTOP)
            threading.Timer(
                slow_for(stage), lambda: victim.poll() is None and victim.send_signal(signal.SIGCONT)
            ).start()
        elif fault == "cut":
            self.proxy.cut(CUT_FOR)
        elif fault == "stall":
            self.proxy.stall(CUT_FOR)
        else:
            raise ValueError(f"unknown fault {fault!r}")

    def finish(self, timeout: float = 240.0) -> int:
        try:
            return self.coordinator.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"coordinator still running after {timeout:.0f} s:\n{self.log()[-4000:]}") from None

    # -- checks ------------------------------------------------------------------------------------
    def metrics(self) -> list[dict]:
        path = self.run_dir / "metrics.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def check_checkpoints(self) -> CheckpointStore:
        store = CheckpointStore(self.run_dir / "checkpoints")
        for r in store.rounds():
            store.load(r)  # raises CheckpointError for a corrupt or truncated file
        rounds = [x["round"] for x in self.metrics()]
        assert rounds == list(range(1, len(rounds) + 1)), f"metrics rounds {rounds}: a round was lost or repeated"
        return store

    def verify(self, fault_round: int) -> dict:
        """Every cell's checks; returns the faulted round's FedAvg match (contributors)."""
        rc = self.finish()
        assert rc == 0, f"coordinator exit {rc}:\n{self.log()[-4000:]}"
        lines = self.metrics()
        assert [x["round"] for x in lines] == list(range(1, self.rounds + 1)), [x["round"] for x in lines]
        store = self.check_checkpoints()
        latest = store.load_latest()
        assert latest.round == self.rounds and [h["round"] for h in latest.history] == list(range(1, self.rounds + 1))
        assert json.loads((self.run_dir / "summary.json").read_text())["status"] == "completed"
        match = match_fedavg(store, fault_round, self.mode)
        line = lines[fault_round - 1]
        assert line["contributors"] == len(match["subset"]) >= 3, (line["contributors"], match)
        assert lines[fault_round]["contributors"] >= 3  # the round after the fault ran
        return {"subset": match["subset"], "error": match["error"], "line": line, "next": lines[fault_round]}


# -- the plaintext expectation -------------------------------------------------------------------
TOLERANCE = {"plain": 1e-5, "secagg": 1e-4, "ckks": 1e-4}


def client_deltas(prev_params: np.ndarray, spec, round_: int, statistics) -> dict[str, tuple[np.ndarray, float]]:
    """Each client's (local - global, num_examples) for ``round_``, recomputed in this process."""
    from fedcore.examples.softmax import SoftmaxTrainer
    from fedcore.examples.synthetic import DataSettings

    out = {}
    for i, cid in enumerate(CLIENTS):
        trainer = SoftmaxTrainer(DataSettings(client_index=i, num_clients=len(CLIENTS), fixed_shuffle=1), "cpu")
        fit = trainer.fit(prev_params, spec, round_, {"rounds": 3, "privacy": {}}, statistics)
        out[cid] = (np.asarray(fit.parameters, np.float64) - prev_params.astype(np.float64), float(fit.num_examples))
    return out


def match_fedavg(store: CheckpointStore, round_: int, mode: str) -> dict:
    """The subset (>= 3 clients) whose FedAvg turns checkpoint ``round_-1`` into ``round_``."""
    prev, new = store.load(round_ - 1), store.load(round_)
    deltas = client_deltas(prev.params, prev.spec, round_, prev.statistics)
    best = (np.inf, ())
    for k in (4, 3):
        for subset in itertools.combinations(CLIENTS, k):
            wsum = sum(deltas[c][0] * deltas[c][1] for c in subset)
            mean = wsum / sum(deltas[c][1] for c in subset)
            err = float(np.abs(prev.params.astype(np.float64) + mean - new.params).max())
            best = min(best, (err, subset))
    err, subset = best
    assert err < TOLERANCE[mode], (
        f"round {round_}: the new model is FedAvg of no client subset (closest {subset}, max error {err:.3g})"
    )
    return {"subset": subset, "error": err}


def run_cell(root: Path, port: int, mode: str, stage: Stage, fault: str, fault_round: int = 2) -> dict:
    """One cell of the matrix: start, inject ``fault`` when ``stage`` of ``fault_round`` opens, verify."""
    run = FaultRun(root, port, mode, proxied=fault in ("cut", "stall"))
    try:
        run.start()
        run.wait_stage(fault_round, stage)
        run.inject(fault, stage)
        result = run.verify(fault_round)
    finally:
        run.close()
    result["victim_in_sum"] = VICTIM in result["subset"]
    return result
