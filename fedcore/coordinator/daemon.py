"""``coordinator --config coordinator.toml``: build the engine, serve, drive rounds, exit.

Start-up: validate the config, log a summary, load the workload, the aggregation mode and the
strategy, resume from the newest checkpoint in ``run_dir/checkpoints`` if there is one, bind the
server (writing the bound address to ``run_dir/coordinator.address``) and start the driver thread.
The process exits when the federation is done (0), aborted (4) or interrupted (130), after giving
the live clients a few seconds to learn that it is over.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time

from fedcore.common.workload import load_workload
from fedcore.common.aggregation import server_mode
from fedcore.config.coordinator import CoordinatorConfig, log_summary
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
    servicer = FederationServicer(engine, insecure=cfg.tls.insecure, max_payload_bytes=cfg.limits.max_payload_bytes,
                                  max_concurrent_streams=cfg.limits.max_concurrent_streams,
                                  max_client_bytes_per_round=cfg.limits.max_client_bytes_per_round)
    bound = serve(servicer, cfg.server.address, tls, insecure=cfg.tls.insecure,
                  max_workers=max(16, 2 * cfg.limits.max_concurrent_streams),
                  max_concurrent_streams=cfg.limits.max_concurrent_streams)
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
    log_summary(cfg, log)
    if cfg.federation.aggregation == "plain":
        log.warning("aggregation 'plain': the coordinator sees every client's update in the clear "
                    "(baselines only, NOT private)")
    engine = build_engine(cfg)
    bound = start_server(cfg, engine)
    log.info("serving federation %r on port %d", cfg.federation.id, bound.port)
    _install_signals(stop)
    driver = threading.Thread(target=_drive, args=(engine, stop), name="round-driver", daemon=True)
    driver.start()
    try:
        while driver.is_alive() and not stop.is_set():
            driver.join(timeout=0.2)
        if engine.finished:
            end = time.monotonic() + linger
            while time.monotonic() < end and not engine.all_told_done() and not stop.is_set():
                time.sleep(0.05)
    finally:
        bound.stop(grace=1.0)
    if engine.state.phase == Phase.DONE:
        return ExitCode.OK
    if engine.state.phase == Phase.ABORTED:
        return ExitCode.ABORTED
    if not driver.is_alive() and not stop.is_set():
        log.error("the round driver stopped unexpectedly")
        return ExitCode.INTERNAL
    log.warning("interrupted at round %d (%s); restart with the same config to resume",
                engine.state.round, engine.state.phase.value)
    return ExitCode.INTERRUPTED


def _drive(engine: RoundEngine, stop: threading.Event) -> None:
    try:
        engine.run(stop)
    except Exception:
        log.exception("the round driver failed")


def _install_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
