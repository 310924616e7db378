"""``provision``: a federation CA, server and client certificates, and ready-to-run configs.

Layout written under ``out``::

    ca.pem  ca.key (0600)              the federation CA (keep ca.key offline in real use)
    client-template.toml               the client config that ``provision sign`` fills in per client
    server.pem  server.key (0600)      the coordinator's certificate (SANs: localhost, 127.0.0.1,
                                       the --server-name hosts and the host of --address)
    coordinator.toml                   paths relative to this folder
    clients/<id>/ca.pem cert.pem key.pem (0600) client.toml
                                       one self-contained folder per client (CN = <id>)

Each client folder can be copied to its machine as a whole: every path in ``client.toml`` is
relative to the file itself. That one-machine layout is for simulations and tests: whoever runs
it holds every client's private key, so can join as any client and receive the CKKS secret key.

Enrolment, for a real federation (each key stays where it was made)::

    operator      provision(out, [])                -> ca.pem ca.key server.pem server.key coordinator.toml
    institution   enroll("alice", dir)              -> dir/alice.key (0600, never leaves) dir/alice.csr
    operator      sign(alice.csr, ca_dir=out, out=reply)
                                                    -> reply/alice.pem reply/ca.pem reply/client.toml
                                                       and the record out/issued/alice.pem
    institution   copies reply/* into dir; runs ``fedpsyau client --config dir/client.toml``

:func:`sign` refuses what :func:`fedcore.transport.certs.sign_csr` refuses, with "already issued"
judged from ``out/issued/*.pem`` and ``out/clients/*/cert.pem`` and the server names from
``out/server.pem``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcore.common.errors import ConfigError
from fedcore.config._write import dumps, field_comments
from fedcore.config.client import PLACEHOLDER, ClientSection, ClientTls
from fedcore.config.coordinator import Deadlines, Federation, Server, ServerTls
from fedcore.config.status import StatusSettings
from fedcore.transport.certs import (
    CLIENT_ID,
    CertificateError,
    Credentials,
    common_name,
    create_ca,
    issue_client,
    issue_server,
    make_csr,
    server_names,
    sign_csr,
    write_certificate,
    write_private_key,
)

log = logging.getLogger(__name__)
DEFAULT_WORKLOAD = "fedcore.examples.softmax:workload"
TEMPLATE = "client-template.toml"  # what `provision sign` fills in for each enrolled client

# -- the MER federation (what `fedpsyau provision` makes unless told otherwise) --------------------
MER_WORKLOAD = "mer.train.federated:workload"
MER_CLIENT_SETTINGS = {
    "data": PLACEHOLDER + "this institution's data folder",
    "format": PLACEHOLDER + "casme2 | samm | smic | casme3 | composite | manifest",
}
#: the coordinator's [workload] for MER: the model every party builds (num_classes = the label map's)
MER_COORDINATOR_SETTINGS = {"model": "dpk-gat", "num_classes": 5}
#: the coordinator's [privacy] defaults: sample-level DP-SGD on every client (README "Privacy budgets")
DP_DEFAULTS = {"enabled": True, "target_epsilon": 8.0, "max_grad_norm": 1.0, "secure_rng": True}


@dataclass(frozen=True)
class Provisioned:
    out: Path
    coordinator_config: Path
    client_configs: dict[str, Path]


def coordinator_toml(
    *,
    federation: Mapping[str, Any],
    server: Mapping[str, Any],
    tls: Mapping[str, Any] | None = None,
    deadlines: Mapping[str, Any] | None = None,
    strategy: Mapping[str, Any] | None = None,
    workload: Mapping[str, Any] | None = None,
    privacy: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
    secagg: Mapping[str, Any] | None = None,
    ckks: Mapping[str, Any] | None = None,
    central_dp: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
) -> str:
    data: dict[str, Any] = {
        "federation": dict(federation),
        "server": dict(server),
        "tls": dict(tls or {"ca": "ca.pem", "cert": "server.pem", "key": "server.key"}),
    }
    for name, table in (("deadlines", deadlines), ("strategy", strategy), ("limits", limits)):
        if table:
            data[name] = dict(table)
    data["workload"] = dict(workload or {})
    data["privacy"] = dict(privacy or {})
    for name, table in (("secagg", secagg), ("ckks", ckks), ("central_dp", central_dp)):
        if table:
            data[name] = dict(table)
    data["status"] = dict(status or {"address": ""})  # written (off) so that the option is seen
    comments = {
        **field_comments(Federation, "federation"),
        **field_comments(Server, "server"),
        **field_comments(ServerTls, "tls"),
        **field_comments(Deadlines, "deadlines"),
        **field_comments(StatusSettings, "status"),
    }
    header = (
        "FED-PsyAU coordinator. Relative paths are relative to this file's folder.\n"
        "[workload] is sent to clients in TrainTask/EvaluateTask.config; [privacy] holds the\n"
        'defaults sent under config["privacy"] (a client\'s own [privacy] overrides them).'
    )
    return dumps(data, header, comments)


def client_toml(
    client_id: str,
    *,
    federation: str,
    coordinator: str,
    workload: str,
    settings: Mapping[str, Any] | None = None,
    privacy: Mapping[str, Any] | None = None,
    client: Mapping[str, Any] | None = None,
    tls: Mapping[str, str] | None = None,
) -> str:
    data = {
        "client": {
            "id": client_id,
            "federation": federation,
            "coordinator": coordinator,
            "workdir": "work",
            **dict(client or {}),
        },
        "tls": dict(tls or {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}),
        "workload": {"path": workload, "settings": dict(settings or {})},
        "privacy": dict(privacy or {}),
    }
    comments = {**field_comments(ClientSection, "client"), **field_comments(ClientTls, "tls")}
    header = (
        f"FED-PsyAU client {client_id}. Relative paths are relative to this file's folder.\n"
        "[workload.settings] goes to the workload verbatim (plus config_dir = this folder)."
    )
    return dumps(data, header, comments)


def provision(
    out: str | Path,
    clients: Sequence[str],
    *,
    server_names: Sequence[str] = (),
    address: str = "localhost:50051",
    listen: str | None = None,
    aggregation: str = "secagg",
    federation_id: str = "fedpsyau",
    rounds: int = 10,
    min_clients: int | None = None,
    workload: str = DEFAULT_WORKLOAD,
    workload_settings: Mapping[str, Any] | None = None,
    client_settings: Sequence[Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    client_options: Mapping[str, Any] | None = None,
    template_settings: Mapping[str, Any] | None = None,
    **coordinator_tables: Any,
) -> Provisioned:
    """Write certificates and configs for a federation of ``clients`` (see the module docstring).

    ``address`` is what clients dial; the coordinator listens on ``listen`` (default: all
    interfaces, the port of ``address``). ``client_settings[i]`` is merged over the default
    ``{"client_index": i, "num_clients": n}`` of client i's ``[workload.settings]``;
    ``template_settings`` is the ``[workload.settings]`` of ``client-template.toml`` (enrolled clients).
    ``coordinator_tables`` pass extra tables (``deadlines``, ``strategy``, ``privacy``, ``secagg``,
    ``ckks``, ``central_dp``, ``limits``, ``server``) into ``coordinator.toml``. With no
    ``clients`` only the CA, the server and ``coordinator.toml`` are written: clients then enrol
    (:func:`enroll`, :func:`sign`).
    """
    out = Path(out)
    clients = list(clients)
    problems = []
    if len(set(clients)) != len(clients):
        problems.append(f"client ids must be unique (got {clients})")
    if client_settings is not None and len(client_settings) != len(clients):
        problems.append(f"client_settings has {len(client_settings)} entries for {len(clients)} clients")
    if clients and aggregation != "plain" and len(clients) < 3 and min_clients is None:
        problems.append(
            f"{aggregation} needs at least 3 clients: with two, each learns the other's update "
            f"(got {len(clients)}; add clients, or --aggregation plain for a non-private baseline)"
        )
    bad = [c for c in clients if not isinstance(c, str) or not CLIENT_ID.fullmatch(c)]
    if bad:
        problems.append(f"client ids must be 1-64 characters of [A-Za-z0-9_.-] (got {bad})")
    host, sep, port = address.rpartition(":")
    if not (host and sep and port.isdigit()):
        problems.append(f"address must look like HOST:PORT (got {address!r})")
    if (out / "ca.pem").exists() and not overwrite:
        problems.append(f"{out} is already provisioned (ca.pem exists); pass overwrite/--force to replace it")
    if problems:
        raise ConfigError(problems, source="provision")
    out.mkdir(parents=True, exist_ok=True)
    ca = create_ca(f"FED-PsyAU CA {federation_id}")
    write_certificate(out / "ca.pem", ca.cert_pem)
    write_private_key(out / "ca.key", ca.key_pem, overwrite=overwrite)
    hosts = list(dict.fromkeys(["localhost", "127.0.0.1", *server_names, host.strip("[]")]))
    server = issue_server(ca, hosts)
    write_certificate(out / "server.pem", server.cert_pem)
    write_private_key(out / "server.key", server.key_pem, overwrite=overwrite)
    server_table = {
        "address": listen or f"0.0.0.0:{port}",
        "run_dir": "run",
        **dict(coordinator_tables.pop("server", {}) or {}),
    }
    fed: dict[str, Any] = {  # the [federation] table; coordinator_tables["federation"] may override any key
        "id": federation_id,
        "rounds": rounds,
        "aggregation": aggregation,
        "min_clients": min_clients if min_clients is not None else min(3, len(clients) or 3),
        "workload": workload,
    }
    fed.update(coordinator_tables.pop("federation", {}) or {})
    coord = out / "coordinator.toml"
    coord.write_text(
        coordinator_toml(federation=fed, server=server_table, workload=workload_settings, **coordinator_tables)
    )
    (out / TEMPLATE).write_text(
        client_toml(
            "CLIENT_ID",
            federation=fed["id"],
            coordinator=address,
            workload=fed["workload"],
            client=client_options,
            settings=template_settings,
            tls={"ca": "ca.pem", "cert": "CLIENT_ID.pem", "key": "CLIENT_ID.key"},
        )
    )
    paths = {}
    for i, cid in enumerate(clients):
        creds = issue_client(ca, cid)
        folder = out / "clients" / cid
        folder.mkdir(parents=True, exist_ok=True)
        write_certificate(folder / "ca.pem", ca.cert_pem)
        write_certificate(folder / "cert.pem", creds.cert_pem)
        write_private_key(folder / "key.pem", creds.key_pem, overwrite=overwrite)
        settings = {
            "client_index": i,
            "num_clients": len(clients),
            **dict(client_settings[i] if client_settings else {}),
        }
        paths[cid] = folder / "client.toml"
        paths[cid].write_text(
            client_toml(
                cid,
                federation=federation_id,
                coordinator=address,
                workload=workload,
                settings=settings,
                client=client_options,
            )
        )
    log.info("provisioned %d clients under %s", len(clients), out)
    return Provisioned(out, coord, paths)


# -- enrolment ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrolled:
    key: Path  # <name>.key, 0600: stays on this machine
    csr: Path  # <name>.csr: goes to the federation operator


def enroll(name: str, out: str | Path) -> Enrolled:
    """Make ``name``'s private key and CSR in ``out`` (on the institution's own machine).

    Refuses to replace an existing key: a new key would need a new certificate.
    """
    out = Path(out)
    key_path, csr_path = out / f"{name}.key", out / f"{name}.csr"
    if key_path.exists():
        raise ConfigError(
            f"{key_path} exists: enrolment never replaces a key (remove it to start over)", source="enroll"
        )
    creds = make_csr(name)
    out.mkdir(parents=True, exist_ok=True)
    write_private_key(key_path, creds.key_pem)
    write_certificate(csr_path, creds.cert_pem)
    log.info(
        "wrote %s (private, mode 0600: it never leaves this machine) and %s (send it to the operator)",
        key_path,
        csr_path,
    )
    return Enrolled(key_path, csr_path)


def issued_names(ca_dir: Path) -> set[str]:
    """Client ids that already hold a certificate from the CA in ``ca_dir``."""
    names = set()
    for cert in [*sorted((ca_dir / "issued").glob("*.pem")), *sorted((ca_dir / "clients").glob("*/cert.pem"))]:
        try:
            names.add(common_name(cert.read_bytes()))
        except CertificateError:
            names.add(cert.stem if cert.parent.name == "issued" else cert.parent.name)
    return names


@dataclass(frozen=True)
class Signed:
    client_id: str
    cert: Path  # <out>/<id>.pem
    ca: Path  # <out>/ca.pem
    config: Path  # <out>/client.toml (expects <id>.key beside it)
    record: Path  # <ca_dir>/issued/<id>.pem


def sign(
    csr: str | Path,
    ca_dir: str | Path,
    out: str | Path,
    *,
    coordinator: str | None = None,
    federation: str | None = None,
    workload: str | None = None,
    days: int = 825,
) -> Signed:
    """Sign one client's CSR with the CA in ``ca_dir`` (``ca.pem``, ``ca.key``) and write what
    goes back to the institution into ``out``: its certificate, the CA certificate and a
    ``client.toml`` for it. Federation id, coordinator address, workload and client options
    default to ``ca_dir/client-template.toml``'s (written by :func:`provision`)."""
    ca_dir, out = Path(ca_dir), Path(out)
    problems = [f"{p} is missing" for p in (ca_dir / "ca.pem", ca_dir / "ca.key") if not p.exists()]
    if not Path(csr).exists():
        problems.append(f"the CSR {csr} is missing")
    if problems:
        raise ConfigError(problems, source="provision sign")
    ca = Credentials((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca.key").read_bytes())
    servers = server_names((ca_dir / "server.pem").read_bytes()) if (ca_dir / "server.pem").exists() else set()
    cert_pem = sign_csr(ca, Path(csr).read_bytes(), issued=issued_names(ca_dir), server_names=servers, days=days)
    cid = common_name(cert_pem)
    template = _template(ca_dir)
    (ca_dir / "issued").mkdir(exist_ok=True)
    record = ca_dir / "issued" / f"{cid}.pem"
    write_certificate(record, cert_pem)
    out.mkdir(parents=True, exist_ok=True)
    write_certificate(out / f"{cid}.pem", cert_pem)
    write_certificate(out / "ca.pem", ca.cert_pem)
    config = out / "client.toml"
    client = {k: v for k, v in template.get("client", {}).items() if k not in ("id", "federation", "coordinator")}
    config.write_text(
        client_toml(
            cid,
            federation=federation or template.get("client", {}).get("federation", "fedpsyau"),
            coordinator=coordinator or template.get("client", {}).get("coordinator", "localhost:50051"),
            workload=workload or template.get("workload", {}).get("path", DEFAULT_WORKLOAD),
            settings=template.get("workload", {}).get("settings"),
            privacy=template.get("privacy"),
            client=client,
            tls={"ca": "ca.pem", "cert": f"{cid}.pem", "key": f"{cid}.key"},
        )
    )
    log.info(
        "issued a client certificate for %s (clientAuth only); send %s, %s and %s back",
        cid,
        out / f"{cid}.pem",
        out / "ca.pem",
        config,
    )
    return Signed(cid, out / f"{cid}.pem", out / "ca.pem", config, record)


def _template(ca_dir: Path) -> dict[str, Any]:
    """``ca_dir/client-template.toml`` as a dict ({} when absent)."""
    import tomllib

    path = ca_dir / TEMPLATE
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable TOML ({exc})", source="provision sign") from None


def federation_preset(workload: str, rounds: int, n_clients: int, *, dp: bool = True) -> dict[str, Any]:
    """Keyword arguments for :func:`provision` behind ``fedpsyau provision --workload W [--no-dp]``.

    ``workload`` ``mer`` (the default) is the MER federation: :data:`MER_WORKLOAD`, the model in the
    coordinator's ``[workload]``, and each client's ``data`` / ``format`` left as placeholders the
    institution must fill in; ``example`` is fedcore's softmax example; anything else is an
    import path. ``dp`` puts :data:`DP_DEFAULTS` into the coordinator's ``[privacy]``.
    """
    out: dict[str, Any] = {"privacy": dict(DP_DEFAULTS) if dp else {"enabled": False}}
    if workload == "mer":
        out.update(
            workload=MER_WORKLOAD,
            workload_settings=dict(MER_COORDINATOR_SETTINGS),
            client_settings=[dict(MER_CLIENT_SETTINGS) for _ in range(n_clients)],
            template_settings=dict(MER_CLIENT_SETTINGS),
        )
    else:
        out["workload"] = DEFAULT_WORKLOAD if workload == "example" else workload
    return out
