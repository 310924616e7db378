"""A client's configuration (``client.toml``).

Relative paths in ``[tls]``, ``[client] workdir`` and ``[privacy] ledger`` are taken relative to
the config file's folder. ``[privacy] ledger`` names a privacy ledger shared by every federation
that trains on this client's data (one budget for the data, not one per federation); without it
the ledger is ``WORKDIR/privacy_ledger.json``. The workload's ``settings`` are passed to the workload verbatim -- fedcore does not guess
which strings are paths -- plus ``config_dir`` (the absolute folder of this file) when the table
does not set it, so that a workload can resolve its own relative data paths explicitly.
Absolute data paths anywhere on the machine are fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedcore.common.errors import ConfigError
from fedcore.config._load import check_tables, positive, read_toml, resolve, section
from fedcore.transport.options import DEFAULT_MAX_PAYLOAD


@dataclass(frozen=True)
class ClientSection:
    id: str  # must equal the common name of this client's certificate
    federation: str = "fedpsyau"  # federation id (the coordinator's [federation] id)
    coordinator: str = "localhost:50051"  # HOST:PORT of the coordinator
    workdir: Path = Path("work")  # update cache and workload scratch space
    device: str = "auto"  # auto | cpu | cuda (auto = cuda when available)
    reconnect_timeout: float = 600.0  # give up (exit 5) after this long without the coordinator
    backoff_max: float = 10.0  # cap of the exponential reconnect backoff, seconds
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD  # largest download accepted, checked before allocating
    seed: int | None = None  # seeded runs (benchmarks, tests): every random draw that
    # shapes this client's contributions (training seeds,
    # rounding, client-side noise) comes from this seed; with
    # DP, DP-SGD noise follows only with privacy.secure_rng =
    # false. Unset (the default): fresh CSPRNG draws


@dataclass(frozen=True)
class ClientTls:
    ca: Path = Path("ca.pem")  # federation CA: the only issuer trusted for the server
    cert: Path = Path("cert.pem")  # this client's certificate (CN = client id)
    key: Path = Path("key.pem")  # its private key (mode 0600)
    server_name: str = ""  # expected server certificate name when it differs from the host
    insecure: bool = False  # no TLS at all: local debugging only, warns loudly


@dataclass(frozen=True)
class WorkloadSection:
    path: str = "fedcore.examples.softmax:workload"  # import path "module:attribute"
    settings: dict[str, Any] = field(default_factory=dict)  # [workload.settings]: data folder, index, ...


@dataclass(frozen=True)
class ClientConfig:
    client: ClientSection
    tls: ClientTls = field(default_factory=ClientTls)
    workload: WorkloadSection = field(default_factory=WorkloadSection)
    privacy: dict[str, Any] = field(default_factory=dict)  # overrides the coordinator's defaults
    source: Path | None = None


SECTIONS = ("client", "tls", "workload", "privacy")
DEVICES = ("auto", "cpu", "cuda")
#: a ``[workload.settings]`` value starting with this was left by ``fedpsyau provision`` for the
#: institution to fill in (its data folder, its format): a client refuses to start with it
PLACEHOLDER = "REQUIRED: "


def placeholder_keys(settings: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of ``settings`` (nested tables too) still holding a :data:`PLACEHOLDER` value."""
    found = []
    for key, value in settings.items():
        if isinstance(value, dict):
            found += placeholder_keys(value, f"{prefix}{key}.")
        elif isinstance(value, str) and value.startswith(PLACEHOLDER):
            found.append(f'{prefix}{key} = "{value}"')
    return found


def parse_client(
    data: dict[str, Any],
    base: Path,
    *,
    insecure: bool | None = None,
    source: Path | None = None,
    check_files: bool = True,
) -> ClientConfig:
    problems: list[str] = []
    check_tables(data, SECTIONS, problems)
    client = section(ClientSection, data.get("client"), "client", problems)
    tls = section(ClientTls, data.get("tls"), "tls", problems)
    workload = section(WorkloadSection, data.get("workload"), "workload", problems)
    privacy = data.get("privacy", {})
    if not isinstance(privacy, dict):
        problems.append(f"[privacy] must be a table (got {type(privacy).__name__})")
        privacy = {}
    if "ledger" in privacy:
        if isinstance(privacy["ledger"], str) and privacy["ledger"].strip():
            privacy = {**privacy, "ledger": str(resolve(base, Path(privacy["ledger"]).expanduser()))}
        else:
            problems.append(f"[privacy] ledger must be a file path (got {privacy['ledger']!r})")
    if insecure is not None:
        tls = replace(tls, insecure=insecure)
    tls = replace(tls, ca=resolve(base, tls.ca), cert=resolve(base, tls.cert), key=resolve(base, tls.key))
    client = replace(client, workdir=resolve(base, client.workdir))
    settings = dict(workload.settings)
    problems += [
        f"[workload.settings] {k} is a placeholder: set it to this institution's value before starting "
        f"the client (README, 'Across institutions')"
        for k in placeholder_keys(settings)
    ]
    settings.setdefault("config_dir", str(base.resolve()))
    workload = replace(workload, settings=settings)

    if data.get("client", {}).get("id", None) == "" or (isinstance(client.id, str) and client.id.strip() != client.id):
        problems.append(f"[client] id must be a non-empty name without surrounding spaces (got {client.id!r})")
    host, sep, port = client.coordinator.rpartition(":")
    if not (host and sep and port.isdigit() and 0 < int(port) < 65536):
        problems.append(f"[client] coordinator must look like HOST:PORT (got {client.coordinator!r})")
    if client.device not in DEVICES and not client.device.startswith("cuda:"):
        problems.append(f"[client] device must be one of {', '.join(DEVICES)} or cuda:N (got {client.device!r})")
    positive(problems, "[client] reconnect_timeout", client.reconnect_timeout)
    positive(problems, "[client] backoff_max", client.backoff_max)
    positive(problems, "[client] max_payload_bytes", client.max_payload_bytes)
    module, sep, attr = workload.path.partition(":")
    if not (module and sep and attr):
        problems.append(f"[workload] path must look like 'package.module:attribute' (got {workload.path!r})")
    if check_files and not tls.insecure:
        for key in ("ca", "cert", "key"):
            path = getattr(tls, key)
            if not path.is_file():
                problems.append(f"[tls] {key}: file not found: {path}")
    if problems:
        raise ConfigError(problems, source=str(source or "client config"))
    return ClientConfig(client, tls, workload, privacy, source=source)


def load_client_config(path: str | Path, *, insecure: bool | None = None, check_files: bool = True) -> ClientConfig:
    """Load and validate ``client.toml``; raises one ConfigError listing every problem."""
    path = Path(path).resolve()
    return parse_client(read_toml(path), path.parent, insecure=insecure, source=path, check_files=check_files)
