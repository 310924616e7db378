"""``coordinator --config coordinator.toml``: build the engine, serve, drive rounds, exit.

Start-up: take the run folder (``run_dir/coordinator.pid`` under a lock: a second coordinator on
the same folder is refused before it touches anything), validate the config, log a summary, load
the workload, the aggregation mode and the strategy, resume from the newest checkpoint in
``run_dir/checkpoints`` if there is one, bind the server (writing the bound address to
``run_dir/coordinator.address``), start the status board (``run_dir/status.json``) and, with
``[status] address``, the status page, then the driver thread.

Endings and exit codes (:class:`fedcore.exitcodes.ExitCode`):

- every round done: 0 (OK); aborted: 4 (ABORTED), after giving the live clients up to the
  heartbeat timeout to learn that it is over (they exit 0 / 4 too; one still busy after that
  finds the coordinator gone and exits 5 after its ``reconnect_timeout``);
- ``stop`` (``run_dir/stop.request``): the round in flight completes, the clients are told the
  federation is over, summary.json says "stopped": 7 (STOPPED). Restart to resume;
- SIGTERM or SIGINT: the driver finishes the step it is in, the newest checkpoint is written
  again with the registry's privacy records, summary.json says "interrupted", the server closes:
  130 (INTERRUPTED). The round in flight is re-run as a new attempt after a restart. The clients
  are not told to leave: they keep retrying (backing off) for their ``reconnect_timeout`` and
  rejoin the restarted coordinator -- they wait. A second signal skips the waiting.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time

from fedcore.common.aggregation import server_mode
from fedcore.common.workload import load_workload
from fedcore.config.coordinator import CoordinatorConfig, log_summary
from fedcore.coordinator import control, phases
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.coordinator.engine import RoundEngine
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.exitcodes import ExitCode
from fedcore.transport.server import BoundServer, serve
from fedcore.transport.tls import TlsMaterial

log = logging.getLogger("fedcore.coordinator")


def build_engine(cfg: CoordinatorConfig, **kwargs) -> RoundEngine:
    """The round engine for ``cfg`` (workload, mode, strategy and checkpoint store from the config)."""
    from fedcore.strategy import make_strategy

    workload = load_workload(cfg.federation.workload)
    cfg = with_statistics_dp(cfg, workload)
    mode = server_mode(cfg.federation.aggregation)(cfg.federation.id, cfg.mode_settings)
    strategy = make_strategy(cfg.strategy.name, **cfg.strategy.options)
    store = CheckpointStore(cfg.server.run_dir / "checkpoints")
    return RoundEngine(cfg, workload, mode, strategy, store, **kwargs)


def with_statistics_dp(cfg: CoordinatorConfig, workload) -> CoordinatorConfig:
    """``cfg`` with SecAgg+'s round-0 noise turned on when the federation has DP.

    With DP on (the ``[privacy]`` defaults or ``[central_dp]``), the statistics sum gets the
    distributed discrete Gaussian (:mod:`fedcore.secagg.stats_noise`; ``federation_dp = true``)
    scaled for the workload's stated sensitivity (``stats_sensitivity``), unless the ``[secagg]``
    table sets either itself. Plain and CKKS clients add their own noise (:mod:`fedcore.client.privacy`).
    """
    from dataclasses import replace

    from fedcore.common.workload import statistics_sensitivity

    dp_on = bool(cfg.privacy) and cfg.privacy.get("enabled", True) is not False
    if cfg.federation.aggregation != "secagg" or not (dp_on or cfg.central_dp.enabled):
        return cfg
    table = dict(cfg.secagg)
    table.setdefault("federation_dp", True)
    if "stats_sensitivity" not in table:
        sens = statistics_sensitivity(workload, cfg.workload)
        if sens is not None:
            table["stats_sensitivity"] = sens
    return replace(cfg, secagg=table)


def start_server(cfg: CoordinatorConfig, engine: RoundEngine) -> BoundServer:
    tls = None if cfg.tls.insecure else TlsMaterial.from_files(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
    servicer = FederationServicer(
        engine,
        insecure=cfg.tls.insecure,
        max_payload_bytes=cfg.limits.max_payload_bytes,
        max_concurrent_streams=cfg.limits.max_concurrent_streams,
        max_client_bytes_per_round=cfg.limits.max_client_bytes_per_round,
    )
    bound = serve(
        servicer,
        cfg.server.address,
        tls,
        insecure=cfg.tls.insecure,
        max_workers=max(16, 2 * cfg.limits.max_concurrent_streams),
        max_concurrent_streams=cfg.limits.max_concurrent_streams,
    )
    host = cfg.server.address.rpartition(":")[0]
    host = "127.0.0.1" if _unspecified(host) else host
    engine.records.write_address(f"{host}:{bound.port}")
    return bound


def _unspecified(host: str) -> bool:
    """True for a listen host that means "every interface" ("", 0.0.0.0, ::, [::])."""
    bare = host.strip("[]")
    try:
        return not bare or ipaddress.ip_address(bare).is_unspecified
    except ValueError:
        return False


def run_coordinator(cfg: CoordinatorConfig, stop: threading.Event | None = None, linger: float = 5.0) -> int:
    """Run a federation to its end; return the process exit code."""
    stop = stop or threading.Event()
    with control.RunLock(cfg.server.run_dir):  # before anything reads or writes the run folder
        return _run(cfg, stop, linger)


def _run(cfg: CoordinatorConfig, stop: threading.Event, linger: float) -> int:
    from fedcore.status.board import StatusBoard

    log_summary(cfg, log)
    if cfg.federation.aggregation == "plain":
        log.warning(
            "aggregation 'plain': the coordinator sees every client's update in the clear (baselines only, NOT private)"
        )
    if not cfg.tls.insecure:  # certificate problems before any work (start_server loads them again)
        TlsMaterial.from_files(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
    run_dir = cfg.server.run_dir
    stale = control.read_stop(run_dir)
    if stale is not None:
        control.clear_stop(run_dir)
        log.info("dropped a stop request from before this start (%s)", stale.get("reason", "?"))
    engine = build_engine(cfg)
    signals = _install_signals(stop)
    bound = start_server(cfg, engine)
    board = page = None
    try:
        board = StatusBoard(engine, run_dir).start()
        if cfg.status.enabled:
            from fedcore.status.server import StatusServer

            page = StatusServer(board, cfg.status, cert=cfg.tls.cert, key=cfg.tls.key, run_dir=run_dir).start()
            board.page = page.url
            log.info("status page %s (Prometheus: %smetrics)", page.url, page.url)
        log.info("serving federation %r on port %d", cfg.federation.id, bound.port)
        driver = threading.Thread(target=_drive, args=(engine, stop), name="round-driver", daemon=True)
        driver.start()
        while driver.is_alive() and not stop.is_set():
            driver.join(timeout=0.2)
            _poll_stop_request(engine, board, run_dir)
        if engine.finished:
            _linger(engine, max(linger, cfg.deadlines.heartbeat_timeout), signals)
        elif stop.is_set():
            _interrupted(engine, driver, signals)
    finally:
        bound.stop(grace=1.0)
        if page is not None:
            page.close()
        if board is not None:
            board.close()
        control.clear_stop(run_dir)
    return _exit_code(engine, driver, stop)


def _linger(engine: RoundEngine, most: float, signals: _Signals) -> None:
    """After the end: keep serving until every live client has been told (a client busy training
    when the federation aborted learns it when it next asks), at most ``most`` seconds; a client
    silent for the heartbeat timeout counts as gone."""
    end = time.monotonic() + most
    while time.monotonic() < end and not signals.second.is_set():
        with engine.lock:
            engine.registry.expire(engine.clock())
        if engine.all_told_done():
            return
        time.sleep(0.05)


def _exit_code(engine: RoundEngine, driver: threading.Thread, stop: threading.Event) -> int:
    if engine.state.phase == Phase.DONE:
        return ExitCode.STOPPED if engine.state.outcome.startswith("stopped on request") else ExitCode.OK
    if engine.state.phase == Phase.ABORTED:
        return ExitCode.ABORTED
    if not driver.is_alive() and not stop.is_set():
        log.error("the round driver stopped unexpectedly")
        return ExitCode.INTERNAL
    return ExitCode.INTERRUPTED


def _poll_stop_request(engine: RoundEngine, board, run_dir) -> None:
    """Hand a new ``stop.request`` to the engine (it ends after the work in flight)."""
    if phases.stop_requested(engine):
        return
    req = control.read_stop(run_dir)
    if req is None:
        return
    reason = str(req.get("reason") or "fedcore stop")
    with engine.changed:
        phases.request_stop(engine, reason)
        engine.changed.notify_all()
    board.stop_request = reason


def _interrupted(engine: RoundEngine, driver: threading.Thread, signals: _Signals) -> None:
    """After SIGTERM/SIGINT: let the driver finish its step, checkpoint, record, say how to resume."""
    end = time.monotonic() + 30.0
    while driver.is_alive() and time.monotonic() < end and not signals.second.is_set():
        driver.join(timeout=0.2)
    if driver.is_alive() or not engine.lock.acquire(timeout=5.0):
        log.warning(
            "interrupted while the round driver is still busy: exiting without a new checkpoint (the "
            "newest one on disk stands; restart with the same config to resume)"
        )
        return
    try:
        st = engine.state
        if engine.finished:
            return
        held = phases.checkpoint_now(engine)
        saved = (
            "no round has completed yet: a restart begins from the start"
            if held is None
            else f"checkpoint of round {held} written"
        )
        where = f"round {st.round} ({st.stage.stage.name if st.stage else st.phase.value}, attempt {st.attempt})"
        reason = (
            f"interrupted by {signals.name} at {where}; {saved}; restart with the same config to resume "
            f"(the round in flight is re-run)"
        )
        clients = engine.state.clients_ever(engine.registry.ever)
        from fedcore.coordinator.records import summarize

        engine.records.write_summary(
            {
                **summarize(
                    engine.state.history,
                    federation=engine.cfg.federation.id,
                    aggregation=engine.cfg.federation.aggregation,
                    strategy=engine.cfg.strategy.name,
                    rounds_planned=engine.cfg.federation.rounds,
                    status="interrupted",
                    reason=reason,
                    clients=clients,
                    round0=engine.state.round0,
                    privacy=engine.state.privacy,
                ),
                **engine.client_dp.summary(),
            }
        )
        log.warning("%s", reason)
    finally:
        engine.lock.release()


def _drive(engine: RoundEngine, stop: threading.Event) -> None:
    try:
        engine.run(stop)
    except Exception:
        log.exception("the round driver failed")


class _Signals:
    """Which signal stopped the coordinator; ``second`` is set by a second one (exit without waiting)."""

    def __init__(self) -> None:
        self.name = "a signal"
        self.second = threading.Event()


def _install_signals(stop: threading.Event) -> _Signals:
    state = _Signals()
    if threading.current_thread() is not threading.main_thread():
        return state

    def handler(signum, frame) -> None:
        if stop.is_set():
            state.second.set()
            return
        state.name = signal.Signals(signum).name
        log.warning("%s received: finishing the current step, then exiting (a second signal: at once)", state.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return state
