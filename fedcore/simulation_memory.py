"""The in-memory transport's simulation: the daemons' engine and clients, in one process.

:class:`MemoryFederation` builds exactly what the two daemons build from the same config files
-- the coordinator's :class:`~fedcore.coordinator.engine.RoundEngine` (workload, mode, strategy,
checkpoints, records, privacy plumbing: :func:`fedcore.coordinator.daemon.build_engine`) and one
:class:`~fedcore.client.daemon.ClientDaemon` per client (trainer, stage handlers, update cache,
privacy ledger) -- and joins them with :class:`~fedcore.transport.memory.MemoryConnection`
instead of gRPC. So a round here is the round the daemons run, message for message and byte for
byte; what differs is only how messages travel and how time passes.

Time is a :class:`ManualClock`. Clients take turns: each pass asks every live client for its task
and lets it answer, then the engine ticks. Only when a whole pass changes nothing does the clock
move, straight to the engine's next deadline or heartbeat expiry. So training never makes a
client miss a deadline (runs are repeatable), and a dead client or a straggler is seen exactly as
the daemons would see it, without sleeping:

- :class:`Faults` ``silent_at``: a client goes silent (no answers, no heartbeats: a crash) when it
  is handed a task of the named stage; the engine drops it at the heartbeat timeout;
- :class:`Faults` ``late``: a client answers each task that many simulated seconds after it
  exists (heartbeats go on meanwhile), so it misses deadlines shorter than that.

As a test and benchmark harness (it replaced the per-mode in-process drivers)::

    from fedcore.examples import updates
    from fedcore.simulation_memory import Faults, memory_federation

    fed = memory_federation(5, 1, tmp_path / "run", aggregation="secagg",
                            workload="fedcore.examples.updates:workload",
                            workload_settings={"size": 1000, "seed": 1},
                            faults=Faults(silent_at={("SECAGG_MASKED_INPUT", 1): {"client5"}}),
                            record=True)          # also: tamper=, trainers=, secagg=, ckks=, privacy=, deadlines=
    fed.run()                                     # exit code: 0 completed, 4 aborted
    # or step: fed.run_until(lambda engine: engine.state.stage is not None
    #                        and engine.state.stage.stage == Stage.SECAGG_UNMASK)
    # then reach in: fed.engine.mode (the ServerMode), fed.engine.state,
    # fed.daemons["client1"].handlers.mode (a ClientMode), fed.server_received (record=True),
    # fed.timings ((round, attempt, stage) -> StageTiming), fed.engine.records.metrics_path.
    # The final model: CheckpointStore(fed.cfg.server.run_dir / "checkpoints").load_latest().params
    # and the sum it should hold: updates.expected_mean(settings, [0, 1, 2, 3], 1).

:mod:`fedcore.transport.memory` describes the ``tamper(stage, client_id, direction, data)`` hook.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcore.client.daemon import ClientDaemon
from fedcore.common.errors import FedError
from fedcore.common.stages import Stage
from fedcore.config.client import ClientConfig, load_client_config
from fedcore.config.coordinator import CoordinatorConfig, load_coordinator_config, log_summary
from fedcore.coordinator import control
from fedcore.coordinator.daemon import build_engine
from fedcore.coordinator.state import Phase
from fedcore.exitcodes import ExitCode
from fedcore.transport.memory import MemoryConnection

log = logging.getLogger("fedcore.simulation")

#: passes in a row that change nothing and move the clock before the run counts as stalled
_STALL_PASSES = 10_000


class ManualClock:
    """A monotonic clock that moves only when told to (seconds)."""

    def __init__(self, start: float = 0.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward (got {seconds})")
        self.now += seconds


@dataclass
class Faults:
    """Scripted misbehaviour for an in-memory run (module docstring). A ``silent_at`` key is a
    stage -- a name of :class:`~fedcore.common.stages.Stage` (``"TRAIN"``, ``"SECAGG_UNMASK"``)
    or a member: that stage in any round, round 0's statistics included -- or a ``(stage, round)``
    pair."""

    silent_at: Mapping[Any, Sequence[str] | set[str]] = field(default_factory=dict)  # stage -> client ids
    late: Mapping[str, float] = field(default_factory=dict)  # client id -> seconds

    def goes_silent(self, client_id: str, stage: Stage, round_: int) -> bool:
        for key, ids in self.silent_at.items():
            at, only = key if isinstance(key, tuple) else (key, None)
            if _stage(at) == stage and only in (None, round_) and client_id in ids:
                return True
        return False


def _stage(name) -> Stage:
    try:
        return name if isinstance(name, Stage) else Stage[str(name)]
    except KeyError:
        raise ValueError(f"unknown stage {name!r} (one of {', '.join(s.name for s in Stage)})") from None


@dataclass
class StageTiming:
    """Where one stage's time went (real seconds; the stage names are those of the wire)."""

    round: int
    attempt: int
    stage: str
    server_s: float = 0.0  # the engine: RPCs it answered + the ticks that closed it
    client_s: dict[str, float] = field(default_factory=dict)  # per client: handler + (de)serialisation
    bytes_up: int = 0  # submissions, all clients
    bytes_down: int = 0  # blobs downloaded, all clients


class MemoryFederation:
    """The coordinator and clients of one federation over the in-memory transport. ``trainers``
    (client id -> Trainer) replaces the trainers the workload would make (data already in memory);
    ``tamper`` and ``record`` stand in the middle (:mod:`fedcore.transport.memory`)."""

    def __init__(
        self,
        coordinator: CoordinatorConfig,
        clients: Sequence[ClientConfig],
        *,
        faults: Faults | None = None,
        clock: ManualClock | None = None,
        trainers: Mapping[str, Any] | None = None,
        tamper=None,
        record: bool = False,
    ):
        self.cfg = coordinator
        #: every submission as the engine was handed it (with ``record``), for what-the-server-saw tests
        self.server_received: list[bytes] | None = [] if record else None
        self.clock = clock or ManualClock()
        self.faults = faults or Faults()
        self.engine = build_engine(coordinator, clock=self.clock)
        self.daemons: dict[str, ClientDaemon] = {}
        self.connections: dict[str, MemoryConnection] = {}
        for cc in clients:
            cid = cc.client.id
            conn = MemoryConnection(
                self.engine,
                client_id=cid,
                federation_id=cc.client.federation,
                max_payload_bytes=cc.client.max_payload_bytes,
                server_max_payload_bytes=coordinator.limits.max_payload_bytes,
                tamper=tamper,
                received=self.server_received,
            )
            self.connections[cid] = conn
            self.daemons[cid] = ClientDaemon(
                cc, connection=conn, sleep=lambda _s: None, trainer=(trainers or {}).get(cid)
            )
        self.exit_codes: dict[str, int | None] = {cid: None for cid in self.daemons}
        self.timings: dict[tuple[int, int, str], StageTiming] = {}  # (round, attempt, stage) -> its times
        self.silent: set[str] = set()
        self._task_seen: dict[str, tuple[tuple, float]] = {}  # late clients: the task and when it appeared
        self._lock: control.RunLock | None = None
        self._lines = 0  # history lines (metrics.jsonl's) passed to on_round

    # -- one pass -----------------------------------------------------------------------------
    def _expected(self, cid: str) -> tuple | None:
        """(round, stage, attempt) of the open stage when it waits for ``cid``, else None."""
        st = self.engine.state
        if st.stage is not None and cid in st.stage.pending:
            return (st.round, st.stage.stage, st.attempt)
        return None

    def _turn(self, cid: str, daemon: ClientDaemon) -> bool:
        """Let one client act; True when it did something (answered a task, or left)."""
        expected = self._expected(cid)
        if expected is not None and self.faults.goes_silent(cid, expected[1], expected[0]):
            log.info("%s goes silent at round %d stage %s (scripted)", cid, expected[0], expected[1].name)
            self.silent.add(cid)
            return True
        late = float(self.faults.late.get(cid, 0.0))
        if expected is not None and late > 0:
            seen = self._task_seen.get(cid)
            if seen is None or seen[0] != expected:
                self._task_seen[cid] = seen = (expected, self.clock())
            if self.clock() < seen[1] + late:
                self.connections[cid].heartbeat()  # alive, still busy
                return False
        conn = self.connections[cid]
        t0, e0, up, down = time.perf_counter(), conn.engine_seconds, conn.bytes_up, conn.bytes_down
        code = daemon.step()
        if code is not None:
            self.exit_codes[cid] = int(code)
            return True
        if not daemon.idle and expected is not None:
            timing = self._timing(expected)
            engine = conn.engine_seconds - e0
            timing.server_s += engine
            timing.client_s[cid] = timing.client_s.get(cid, 0.0) + time.perf_counter() - t0 - engine
            timing.bytes_up += conn.bytes_up - up
            timing.bytes_down += conn.bytes_down - down
        return not daemon.idle

    def _timing(self, key: tuple) -> StageTiming:
        round_, stage, attempt = key
        k = (round_, attempt, stage.name)
        if k not in self.timings:
            self.timings[k] = StageTiming(round_, attempt, stage.name)
        return self.timings[k]

    def _live(self) -> list[tuple[str, ClientDaemon]]:
        return [(c, d) for c, d in self.daemons.items() if self.exit_codes[c] is None and c not in self.silent]

    def _where(self) -> tuple:
        st = self.engine.state
        return (
            st.phase,
            st.round,
            st.stage.stage if st.stage else None,
            st.attempt,
            frozenset(st.stage.responded) if st.stage else frozenset(),
        )

    # -- the run ------------------------------------------------------------------------------
    def start(self) -> MemoryFederation:
        """Take the run folder's lock, log the start-up summary and let every client join. A test
        then drives the run with :meth:`run_until`; :meth:`close` releases the lock."""
        if self._lock is None:
            self._lock = control.RunLock(self.cfg.server.run_dir)
            self._lock.__enter__()
            log_summary(self.cfg, log)
            for cid, daemon in self.daemons.items():
                try:
                    daemon.join()
                except FedError as exc:
                    log.error("%s could not join: %s", cid, exc)
                    self.exit_codes[cid] = int(ExitCode.REFUSED)
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __enter__(self) -> MemoryFederation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def run_until(self, done=None, *, timeout: float | None = None, on_round=None) -> bool:
        """Run passes until ``done(engine)`` holds (checked after every pass; None: the end of the
        run, every live client told). True when ``done`` held or the run ended; False when it
        stalled or ``timeout`` simulated seconds passed. ``on_round(metrics_line)`` is called for
        every new line of metrics.jsonl (a progress bar)."""
        self.start()
        stalled = 0
        while True:
            before = self._where()
            acted = False
            for cid, daemon in self._live():
                acted |= self._turn(cid, daemon)
            st = self.engine.state
            open_stage = (st.round, st.stage.stage, st.attempt) if st.stage is not None else None
            t0 = time.perf_counter()
            wake = self.engine.tick()
            if open_stage is not None:
                self._timing(open_stage).server_s += time.perf_counter() - t0
            if on_round is not None:
                history = self.engine.state.history  # what metrics.jsonl holds, without re-reading it each pass
                for line in history[self._lines :]:
                    on_round(line)
                self._lines = len(history)
            if done is not None and done(self.engine):
                return True
            if self.engine.finished and not self._live():
                return True
            if acted or self._where() != before:
                stalled = 0
                continue
            if self.engine.finished:  # every live client is told at its next turn
                continue
            stalled += 1
            if stalled > _STALL_PASSES or (timeout is not None and self.clock() > timeout):
                log.error("the federation made no progress (simulated time %.1f s); stopping", self.clock())
                return False
            self.clock.advance(max(wake, 1e-3) if math.isfinite(wake) else 1.0)

    def run(self, timeout: float | None = None, on_round=None) -> int:
        """Run to the end; the coordinator's exit code (0 completed, 4 aborted, 7 stopped, 130 when
        it stalled or ``timeout`` simulated seconds passed first)."""
        with self:
            if not self.run_until(timeout=timeout, on_round=on_round):
                return int(ExitCode.INTERRUPTED)
        return int(_exit_code(self.engine))


def _exit_code(engine) -> ExitCode:
    if engine.state.phase == Phase.DONE:
        return ExitCode.STOPPED if engine.state.outcome.startswith("stopped on request") else ExitCode.OK
    return ExitCode.ABORTED


def _note_wall_time(path: Path, total: float, per_line: list[float]) -> None:
    """Add the wall-clock seconds to summary.json (its ``seconds`` are the engine's simulated time)."""
    if not path.exists():
        return
    from fedcore.coordinator.records import atomic_write

    summary = json.loads(path.read_text())
    summary.update(
        {
            "clock": "simulated (in-memory transport)",
            "wall_seconds": round(total, 3),
            "wall_seconds_per_round": per_line,
        }
    )
    atomic_write(path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())


def run_in_memory(
    coordinator_config: Path,
    client_configs: Sequence[Path],
    *,
    insecure: bool = False,
    rounds: int = 0,
    progress: bool | None = None,
    timeout: float | None = None,
    faults: Faults | None = None,
    log_path: Path | None = None,
    trainers: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, int | None]]:
    """Load the configs that ``simulate`` provisioned and run them in memory; (exit code, client
    exit codes). ``log_path`` gets the run's log lines (coordinator and clients, one file)."""
    from fedcore.simulation_report import progress_bar

    cfg = load_coordinator_config(coordinator_config, insecure=insecure or None)
    clients = [load_client_config(p, insecure=insecure or None) for p in client_configs]
    root = logging.getLogger()
    level, handler = root.level, None
    if log_path is not None:  # INFO and above to the file; what other handlers show stays as it was
        handler = logging.FileHandler(log_path)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for other in root.handlers:
            if other.level == logging.NOTSET:
                other.setLevel(level or logging.WARNING)
        root.addHandler(handler)
        root.setLevel(min(level or logging.WARNING, logging.INFO))
    bar = progress_bar(rounds or cfg.federation.rounds, progress)
    walls: list[float] = []
    started = time.perf_counter()

    def on_round(line) -> None:
        walls.append(round(time.perf_counter() - started - sum(walls), 4))
        bar.update_round(line)

    try:
        fed = MemoryFederation(cfg, clients, faults=faults, trainers=trainers)
        rc = fed.run(timeout=timeout, on_round=on_round)
        _note_wall_time(fed.engine.records.summary_path, time.perf_counter() - started, walls)
    finally:
        bar.close()
        if handler is not None:
            root.removeHandler(handler)
            root.setLevel(level)
            handler.close()
    return rc, dict(fed.exit_codes)


def memory_federation(
    clients: int = 3,
    rounds: int = 1,
    out: str | Path | None = None,
    *,
    faults: Faults | None = None,
    trainers: Mapping[str, Any] | None = None,
    insecure: bool = False,
    clock: ManualClock | None = None,
    tamper=None,
    record: bool = False,
    **kwargs: Any,
) -> MemoryFederation:
    """A provisioned federation over the in-memory transport, not started yet: tests and benchmarks
    drive it with :meth:`MemoryFederation.run_until` and look at its engine and client daemons.
    ``kwargs`` are :func:`fedcore.simulation.prepare`'s (aggregation, workload, settings, tables)."""
    from fedcore.simulation import MEMORY_ADDRESS, prepare

    prep = prepare(clients, rounds, out, **kwargs)
    prep.write_client_configs(MEMORY_ADDRESS)
    cfg = load_coordinator_config(prep.prov.coordinator_config, insecure=insecure or None)
    configs = [load_client_config(prep.prov.client_configs[c], insecure=insecure or None) for c in prep.ids]
    return MemoryFederation(cfg, configs, faults=faults, clock=clock, trainers=trainers, tamper=tamper, record=record)
