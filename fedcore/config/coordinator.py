"""The coordinator's configuration (``coordinator.toml``).

Every path in ``[tls]`` and ``[server] run_dir`` that is relative is taken relative to the folder
of the config file (never the working directory), so a provisioned folder can be moved as a
whole. ``[workload]``, ``[privacy]``, ``[secagg]`` and ``[ckks]`` are passed through as tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedcore.common.aggregation import MODES, server_mode
from fedcore.common.errors import ConfigError
from fedcore.config._load import check_tables, positive, read_toml, resolve, section
from fedcore.config.status import StatusSettings, status_problems


@dataclass(frozen=True)
class Federation:
    id: str = "fedpsyau"  # federation id; every client config names the same
    rounds: int = 10  # training rounds 1..rounds (round 0 = set-up, statistics)
    aggregation: str = "secagg"  # plain | secagg | ckks (plain: baselines only, not private)
    min_clients: int = 3  # fewest clients a round (and every stage) needs
    fraction: float = 1.0  # share of the eligible clients selected each round
    seed: int = 0  # initial model and client selection
    workload: str = "fedcore.examples.softmax:workload"  # import path "module:attribute"
    evaluate_every: int = 1  # evaluate every k-th round and after the last; 0 = last only
    min_available: int = 0  # before the first work, wait (up to [deadlines] join) for this many


@dataclass(frozen=True)
class Server:
    address: str = "0.0.0.0:50051"  # listen address; port 0 = any free port (written to run_dir)
    run_dir: Path = Path("run")  # checkpoints, metrics.jsonl, summary.json


@dataclass(frozen=True)
class ServerTls:
    ca: Path = Path("ca.pem")  # federation CA certificate (clients must be issued by it)
    cert: Path = Path("server.pem")  # the server certificate
    key: Path = Path("server.key")  # its private key
    insecure: bool = False  # no TLS at all: local debugging only, warns loudly


@dataclass(frozen=True)
class Deadlines:
    join: float = 300.0  # wait this long for min_clients before logging/retrying
    train: float = 600.0  # the TRAIN (and STATS) stage
    stage: float = 120.0  # each aggregation stage (plain/secagg/ckks)
    evaluate: float = 300.0  # the EVALUATE stage
    heartbeat_interval: float = 5.0  # clients send a heartbeat this often
    heartbeat_timeout: float = 30.0  # silent for this long -> dead, dropped from the stage
    max_round_retries: int = 3  # attempts after the first before the federation aborts
    poll_interval: float = 0.5  # a client with nothing to do asks again after this long


@dataclass(frozen=True)
class Strategy:
    name: str = "fedavg"  # fedavg | fedprox | fedadam | fedyogi (see fedcore.strategy)
    options: dict[str, Any] = field(default_factory=dict)  # every other key of [strategy]


@dataclass(frozen=True)
class Limits:
    max_clients: int = 1000  # joins beyond this are refused (RESOURCE_EXHAUSTED)
    max_payload_bytes: int = 1 << 30  # largest submission accepted, checked before allocating
    max_concurrent_streams: int = 32  # concurrent Download/Submit streams
    max_client_bytes_per_round: int = (
        0  # announced upload bytes one client may send per round (0 = 4 x max_payload_bytes)
    )


@dataclass(frozen=True)
class CentralDP:
    """``[central_dp]``: DP-FedAvg (client-level DP with noise added by the coordinator).

    Clients clip their update (new - global) to L2 ``clip_norm`` and send it with weight 1; the
    coordinator adds N(0, (noise_multiplier clip_norm)^2) to the sum and divides by the number of
    contributors (:class:`fedcore.dp.central.DPFedAvg`). Needs very many clients to be useful.
    """

    enabled: bool = False  # off by default
    clip_norm: float = 1.0  # S: L2 bound of each client's update
    noise_multiplier: float = 1.0  # z: noise std on the sum is z * S
    clients_total: int = 0  # N, the client population (sampling rate = selected / N); required
    delta: float = 0.0  # client-level delta; 0 = min(1e-5, 1 / (10 N))

    @property
    def resolved_delta(self) -> float:
        return self.delta if self.delta > 0 else min(1e-5, 1.0 / (10.0 * max(1, self.clients_total)))


@dataclass(frozen=True)
class CoordinatorConfig:
    federation: Federation = field(default_factory=Federation)
    server: Server = field(default_factory=Server)
    tls: ServerTls = field(default_factory=ServerTls)
    deadlines: Deadlines = field(default_factory=Deadlines)
    strategy: Strategy = field(default_factory=Strategy)
    limits: Limits = field(default_factory=Limits)
    workload: dict[str, Any] = field(default_factory=dict)  # settings sent in Train/EvaluateTask.config
    privacy: dict[str, Any] = field(default_factory=dict)  # defaults under config["privacy"]
    secagg: dict[str, Any] = field(default_factory=dict)
    ckks: dict[str, Any] = field(default_factory=dict)
    central_dp: CentralDP = field(default_factory=CentralDP)
    status: StatusSettings = field(default_factory=StatusSettings)  # the live status page (fedcore.config.status)
    source: Path | None = None

    @property
    def mode_settings(self) -> dict[str, Any]:
        """The aggregation mode's table, with the federation's min_clients as a default."""
        table = {"plain": {}, "secagg": self.secagg, "ckks": self.ckks}[self.federation.aggregation]
        return {"min_clients": self.federation.min_clients, **table}


SECTIONS = (
    "federation",
    "server",
    "tls",
    "deadlines",
    "strategy",
    "limits",
    "workload",
    "privacy",
    "secagg",
    "ckks",
    "central_dp",
    "status",
)


def parse_coordinator(
    data: dict[str, Any],
    base: Path,
    *,
    insecure: bool | None = None,
    source: Path | None = None,
    check_files: bool = True,
) -> CoordinatorConfig:
    problems: list[str] = []
    check_tables(data, SECTIONS, problems)
    fed = section(Federation, data.get("federation"), "federation", problems)
    server = section(Server, data.get("server"), "server", problems)
    tls = section(ServerTls, data.get("tls"), "tls", problems)
    dl = section(Deadlines, data.get("deadlines"), "deadlines", problems)
    strategy = section(Strategy, data.get("strategy"), "strategy", problems, rest="options")
    limits = section(Limits, data.get("limits"), "limits", problems)
    central = section(CentralDP, data.get("central_dp"), "central_dp", problems)
    _validate_central(central, fed, problems)
    status = section(StatusSettings, data.get("status"), "status", problems)
    tables = {}
    for name in ("workload", "privacy", "secagg", "ckks"):
        value = data.get(name, {})
        if not isinstance(value, dict):
            problems.append(f"[{name}] must be a table (got {type(value).__name__})")
            value = {}
        tables[name] = value
    if insecure is not None:
        tls = replace(tls, insecure=insecure)
    tls = replace(tls, ca=resolve(base, tls.ca), cert=resolve(base, tls.cert), key=resolve(base, tls.key))
    server = replace(server, run_dir=resolve(base, server.run_dir))
    _validate(fed, server, tls, dl, strategy, limits, tables, problems, check_files)
    problems += privacy_default_problems(tables["privacy"])
    problems += status_problems(status, tls.insecure)
    if problems:
        raise ConfigError(problems, source=str(source or "coordinator config"))
    return CoordinatorConfig(
        fed, server, tls, dl, strategy, limits, central_dp=central, status=status, source=source, **tables
    )


def privacy_default_problems(table: dict[str, Any]) -> list[str]:
    """Every bad value in ``[privacy]`` (the clients' defaults), checked as each client will check
    them (:meth:`fedcore.dp.config.PrivacyConfig.from_dict`), so that a federation never starts
    with defaults every client would refuse. What a client fills in itself (planned rounds, epochs,
    batch size, or its own budget) may be missing here."""
    from fedcore.dp.config import PrivacyConfig, PrivacyConfigError

    from fedcore.common.task_privacy import local_problems

    travel = local_problems(table)  # what TrainTask.privacy.local cannot carry (a ledger path, a wrong type)
    if travel:
        return travel
    probe = {"planned_rounds": 1, "local_epochs": 1, "batch_size": 1, "target_epsilon": 1.0, **table}
    if not isinstance(table.get("secure_rng", True), bool):
        return [f"[privacy] secure_rng: expected true or false (got {table['secure_rng']!r})"]
    probe["secure_rng"] = True  # checked above; a False here would warn now, not on the clients
    try:
        PrivacyConfig.from_dict(probe, source="[privacy]")
    except PrivacyConfigError as exc:
        return [f"[privacy] {p}" for p in exc.problems]
    return []


def _validate_central(c: CentralDP, fed: Federation, problems: list[str]) -> None:
    if not c.enabled:
        return
    positive(problems, "[central_dp] clip_norm", c.clip_norm)
    positive(problems, "[central_dp] noise_multiplier", c.noise_multiplier)
    if c.clients_total < max(1, fed.min_clients):
        problems.append(
            f"[central_dp] clients_total must be >= [federation] min_clients ({fed.min_clients}) "
            f"(got {c.clients_total})"
        )
    from fedcore.dp.central import clients_total_problems

    # min_available > 0: the federation waits for exactly that many clients, its real pool
    problems += clients_total_problems(c.clients_total, fed.min_available or None)
    if not 0 <= c.delta < 1 or (c.delta > 0 and c.clients_total > 0 and c.delta >= 1 / c.clients_total):
        problems.append(f"[central_dp] delta must be in (0, 1/clients_total) or 0 for the default (got {c.delta})")


def _validate(fed, server, tls, dl, strategy, limits, tables, problems, check_files) -> None:
    if not fed.id:
        problems.append("[federation] id must not be empty")
    if fed.rounds < 1:
        problems.append(f"[federation] rounds must be >= 1 (got {fed.rounds})")
    if fed.aggregation not in MODES:
        problems.append(f"[federation] aggregation must be one of {', '.join(MODES)} (got {fed.aggregation!r})")
    if fed.min_clients < 1:
        problems.append(f"[federation] min_clients must be >= 1 (got {fed.min_clients})")
    if not 0.0 < fed.fraction <= 1.0:
        problems.append(f"[federation] fraction must be in (0, 1] (got {fed.fraction})")
    if not 0 <= fed.min_available <= limits.max_clients:
        problems.append(
            f"[federation] min_available must be in [0, max_clients={limits.max_clients}] (got {fed.min_available})"
        )
    if fed.evaluate_every < 0:
        problems.append(f"[federation] evaluate_every must be >= 0 (got {fed.evaluate_every})")
    module, sep, attr = fed.workload.partition(":")
    if not (module and sep and attr):
        problems.append(f"[federation] workload must look like 'package.module:attribute' (got {fed.workload!r})")
    host, sep, port = server.address.rpartition(":")
    if not (host and sep and port.isdigit() and int(port) < 65536):
        problems.append(f"[server] address must look like HOST:PORT (got {server.address!r})")
    for key in ("join", "train", "stage", "evaluate", "heartbeat_interval", "heartbeat_timeout", "poll_interval"):
        positive(problems, f"[deadlines] {key}", getattr(dl, key))
    if dl.heartbeat_timeout <= dl.heartbeat_interval:
        problems.append(
            f"[deadlines] heartbeat_timeout ({dl.heartbeat_timeout}) must exceed "
            f"heartbeat_interval ({dl.heartbeat_interval})"
        )
    positive(problems, "[deadlines] max_round_retries", dl.max_round_retries, zero_ok=True)
    positive(problems, "[limits] max_clients", limits.max_clients)
    positive(problems, "[limits] max_payload_bytes", limits.max_payload_bytes)
    positive(problems, "[limits] max_concurrent_streams", limits.max_concurrent_streams)
    positive(problems, "[limits] max_client_bytes_per_round", limits.max_client_bytes_per_round, zero_ok=True)
    if limits.max_clients < fed.min_clients:
        problems.append(
            f"[limits] max_clients ({limits.max_clients}) is below [federation] min_clients ({fed.min_clients})"
        )
    if check_files and not tls.insecure:
        for key in ("ca", "cert", "key"):
            path = getattr(tls, key)
            if not path.is_file():
                problems.append(f"[tls] {key}: file not found: {path}")
    _validate_strategy(strategy, problems)
    if fed.aggregation in MODES:
        _validate_mode(fed, tables, problems)


def _validate_strategy(strategy: Strategy, problems: list[str]) -> None:
    try:
        from fedcore.strategy import make_strategy

        make_strategy(strategy.name, **strategy.options)
    except ImportError as exc:
        problems.append(f"[strategy] fedcore.strategy is not available: {exc}")
    except ConfigError as exc:
        problems.extend(f"[strategy] {p}" for p in exc.problems)
    except (TypeError, ValueError, KeyError) as exc:
        problems.append(f"[strategy] {exc}")


def _validate_mode(fed: Federation, tables: dict[str, dict], problems: list[str]) -> None:
    """Let the mode check its table: ``validate_settings(settings) -> list[str]`` when the mode offers
    it, else by constructing the server mode (which raises ConfigError for what it checks)."""
    try:
        cls = server_mode(fed.aggregation)
    except ImportError as exc:
        problems.append(f"[federation] aggregation {fed.aggregation!r} is not available: {exc}")
        return
    table = {"min_clients": fed.min_clients, **(tables.get(fed.aggregation, {}) if fed.aggregation != "plain" else {})}
    validate = getattr(cls, "validate_settings", None)
    try:
        # a mode without validate_settings is asked to construct itself, which checks what it reads eagerly
        found = validate(table) if validate is not None else (cls(fed.id or "check", table) and [])
    except ConfigError as exc:
        found = exc.problems
    except (TypeError, ValueError) as exc:
        found = [str(exc)]
    problems.extend(f"[{fed.aggregation}] {p}" for p in (found or []))


def load_coordinator_config(
    path: str | Path, *, insecure: bool | None = None, check_files: bool = True
) -> CoordinatorConfig:
    """Load and validate ``coordinator.toml``; raises one ConfigError listing every problem."""
    path = Path(path).resolve()
    return parse_coordinator(read_toml(path), path.parent, insecure=insecure, source=path, check_files=check_files)


def startup_summary(cfg: CoordinatorConfig) -> list[str]:
    """Human-readable lines the coordinator logs at start-up."""
    fed, dl = cfg.federation, cfg.deadlines
    mode = fed.aggregation + (
        "  (NOT PRIVATE: the coordinator sees every update)" if fed.aggregation == "plain" else ""
    )
    lines = [
        f"federation {fed.id!r}: {fed.rounds} rounds, aggregation {mode}",
        (
            f"clients: min {fed.min_clients}, fraction {fed.fraction}, max {cfg.limits.max_clients}; "
            f"workload {fed.workload}, evaluate every {fed.evaluate_every or 'last only'}"
        ),
        f"strategy {cfg.strategy.name} {cfg.strategy.options or ''}".rstrip(),
        (
            f"deadlines: join {dl.join}s, train {dl.train}s, stage {dl.stage}s, evaluate {dl.evaluate}s, "
            f"heartbeat {dl.heartbeat_interval}s/{dl.heartbeat_timeout}s, retries {dl.max_round_retries}"
        ),
        "TLS: DISABLED (--insecure)" if cfg.tls.insecure else f"TLS: mTLS, CA {cfg.tls.ca}, cert {cfg.tls.cert}",
        f"privacy defaults for clients: {cfg.privacy or 'none (each client decides)'}",
        (
            f"central DP (DP-FedAvg): clip_norm {cfg.central_dp.clip_norm}, noise_multiplier "
            f"{cfg.central_dp.noise_multiplier}, clients_total {cfg.central_dp.clients_total}, delta "
            f"{cfg.central_dp.resolved_delta:.3g}, weight 1 per client"
            if cfg.central_dp.enabled
            else "central DP: off"
        ),
        f"listen {cfg.server.address}, run_dir {cfg.server.run_dir}",
        f"status page: {cfg.status.address}" if cfg.status.enabled else "status page: off ([status] address)",
    ]
    if fed.aggregation in ("secagg", "ckks"):
        lines.append(f"{fed.aggregation} settings: {cfg.mode_settings}")
    return lines


def log_summary(cfg: CoordinatorConfig, logger: logging.Logger) -> None:
    for line in startup_summary(cfg):
        logger.info("%s", line)
