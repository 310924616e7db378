"""fedcore's commands: ``provision``, ``enroll``, ``coordinator``, ``client``, ``status``, ``stop``
and ``simulate``.

Keys made where they are used (a real federation)::

    operator:     provision --out fed --address coord.example.org:50051     (CA, server, no client keys)
    institution:  enroll --name alice --out alice/                          (alice.key stays, alice.csr goes)
    operator:     provision sign alice.csr --ca fed --out reply/            (alice.pem, ca.pem, client.toml)
    institution:  client --config alice/client.toml                         (after copying reply/* in)

``provision --clients a,b,c`` still makes every key on one machine, for simulations and tests.

Watching and stopping (on the coordinator's machine)::

    status --config fed/coordinator.toml        round, stage, clients, epsilon, metrics (fedcore.status)
    stop --config fed/coordinator.toml          finish after the current round, then exit 7

Errors are one line on stderr (``--log-level DEBUG`` adds the traceback of an unexpected one).

Run them as ``python -m fedcore.cli COMMAND ...`` (fedcore alone) or through the application's
console script, which adds them with :func:`register`.

Exit codes (:class:`fedcore.exitcodes.ExitCode`):

====  ===========  ==================================================================================================
code  name         meaning
====  ===========  ==================================================================================================
0     OK           finished: every round completed (or the command succeeded)
1     INTERNAL     an unexpected error (a bug): see the log
2     CONFIG       usage or configuration error; every problem found is listed (also: a port or run_dir in use)
3     TLS          a certificate, key or CSR is missing, unreadable, not PEM, or refused
4     ABORTED      the federation aborted (too few clients after all retries, a client's broken config or data, ...)
5     UNREACHABLE  the coordinator stayed unreachable for the client's reconnect timeout (status/stop: none runs)
6     REFUSED      the coordinator refused this client (identity or federation mismatch)
7     STOPPED      stopped on request (``stop``) after a completed round (restart to resume)
130   INTERRUPTED  stopped by SIGINT/SIGTERM before finishing (restart to resume)
====  ===========  ==================================================================================================
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fedcore.common.aggregation import MODES
from fedcore.common.errors import ConfigError
from fedcore.exitcodes import ExitCode

log = logging.getLogger("fedcore")


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=getattr(logging, level.upper(), logging.INFO),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        )
    else:
        root.setLevel(getattr(logging, level.upper(), logging.INFO))


def _guard(fn):
    """Turn the failures of a command into exit codes with one clear line (no traceback unless the
    log level is DEBUG): configuration 2, TLS 3, Ctrl-C 130, anything unexpected 1."""

    def handler(args: argparse.Namespace) -> int:
        setup_logging(getattr(args, "log_level", "INFO"))
        return guarded(fn, args, debug=getattr(args, "log_level", "INFO") == "DEBUG")

    handler.__name__ = fn.__name__
    return handler


def guarded(fn, args, *, debug: bool = False, name: str = "") -> int:
    """``fn(args)`` with :func:`_guard`'s mapping of errors to exit codes (also used by the application's commands)."""
    from fedcore.transport.certs import CertificateError
    from fedcore.transport.tls import TlsError

    what = name or getattr(args, "command", "") or "command"
    try:
        return int(fn(args))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return ExitCode.CONFIG
    except (TlsError, CertificateError) as exc:
        log.error("TLS error: %s", exc)
        return ExitCode.TLS
    except KeyboardInterrupt:
        log.error("%s interrupted (Ctrl-C)", what)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        log.error(
            "internal error in %s: %s: %s%s",
            what,
            type(exc).__name__,
            exc,
            "" if debug else " (run with --log-level DEBUG for the traceback)",
            exc_info=debug,
        )
        return ExitCode.INTERNAL


@_guard
def cmd_provision(args) -> int:
    from fedcore.provision import federation_preset, provision, sign

    if args.action == "sign":
        if not args.csr or not args.ca:
            raise ConfigError(
                "provision sign needs the CSR file and --ca (the folder with ca.pem and ca.key)",
                source="provision sign",
            )
        signed = sign(args.csr, args.ca, args.out, coordinator=args.coordinator, days=args.days)
        print(
            f"issued {signed.cert} for {signed.client_id}; send {signed.cert}, {signed.ca} and {signed.config} "
            f"back (recorded in {signed.record})"
        )
        return ExitCode.OK
    if args.action is not None or args.csr:
        raise ConfigError(
            f"provision takes no positional arguments except 'sign CSR' (got {args.action!r})", source="provision"
        )
    clients = [c.strip() for c in (args.clients or "").split(",") if c.strip()]
    preset = federation_preset(args.workload, args.rounds, len(clients), dp=not args.no_dp)
    result = provision(
        args.out,
        clients,
        server_names=args.server_name or (),
        address=args.address,
        aggregation=args.aggregation,
        federation_id=args.federation,
        rounds=args.rounds,
        overwrite=args.force,
        **preset,
    )
    print(f"wrote {result.coordinator_config}")
    for cid, path in result.client_configs.items():
        print(f"wrote {path}  ({cid})")
    if not clients:
        print(
            f"no client keys made: each institution runs `enroll --name ID --out DIR` and you sign its CSR "
            f"with `provision sign ID.csr --ca {args.out} --out REPLY_DIR`"
        )
    return ExitCode.OK


@_guard
def cmd_enroll(args) -> int:
    from fedcore.provision import enroll

    done = enroll(args.name, args.out)
    print(f"wrote {done.key} (private: never copy it anywhere) and {done.csr} (send it to the federation operator)")
    return ExitCode.OK


@_guard
def cmd_coordinator(args) -> int:
    from fedcore.config.coordinator import load_coordinator_config
    from fedcore.coordinator.daemon import run_coordinator

    cfg = load_coordinator_config(args.config, insecure=True if args.insecure else None)
    return run_coordinator(cfg)


@_guard
def cmd_client(args) -> int:
    from fedcore.client.startup import run_client_or_report
    from fedcore.config.client import load_client_config

    cfg = load_client_config(args.config, insecure=True if args.insecure else None)
    return run_client_or_report(cfg)


@_guard
def cmd_status(args) -> int:
    from fedcore.status.commands import status_command

    return status_command(args.config, as_json=args.json)


@_guard
def cmd_stop(args) -> int:
    from fedcore.status.commands import stop_command

    return stop_command(args.config, wait=args.wait)


@_guard
def cmd_simulate(args) -> int:
    from fedcore.simulation import CoordinatorFailed, simulate

    try:
        result = simulate(
            clients=args.clients,
            rounds=args.rounds,
            out=args.out,
            aggregation=args.aggregation,
            workload=args.workload,
            insecure=args.insecure,
            seed=args.seed,
            strategy={"name": args.strategy} if args.strategy else None,
            timeout=args.timeout,
            status=args.status,
            transport=args.transport,
            seeded=args.seeded,
        )
    except CoordinatorFailed as exc:
        log.error("%s", exc)
        return exc.returncode or ExitCode.INTERNAL
    if result.status_page:
        print(f"status page (while it ran): {result.status_page}")
    return result.returncode


def register(subparsers, exclude: tuple[str, ...] = ()) -> None:
    """Add fedcore's subcommands to an argparse ``subparsers`` object, except those in ``exclude``
    (an application that provides its own ``simulate`` leaves fedcore's out)."""
    from fedcore.provision import DEFAULT_WORKLOAD

    def common(p):
        p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        return p

    p = common(
        subparsers.add_parser(
            "provision",
            help="create a federation CA, certificates and configs; 'provision sign CSR' signs a client's CSR",
        )
    )
    p.add_argument("action", nargs="?", choices=["sign"], help="sign: issue a client certificate for a CSR")
    p.add_argument("csr", nargs="?", type=Path, help="with sign: the client's NAME.csr")
    p.add_argument("--out", required=True, type=Path, help="folder to write into")
    p.add_argument(
        "--clients",
        default="",
        help="comma-separated client ids whose keys are made HERE (simulations "
        "and tests only; leave out for a federation whose clients enrol)",
    )
    p.add_argument("--ca", type=Path, help="with sign: the provisioned folder holding ca.pem and ca.key")
    p.add_argument(
        "--coordinator",
        default=None,
        help="with sign: HOST:PORT for the client's config (default: the provisioned address)",
    )
    p.add_argument("--days", type=int, default=825, help="with sign: certificate lifetime (default %(default)s)")
    p.add_argument("--server-name", action="append", help="extra host name/IP for the server certificate (repeat)")
    p.add_argument("--address", default="localhost:50051", help="HOST:PORT the clients dial (default %(default)s)")
    p.add_argument("--aggregation", default="secagg", choices=list(MODES))
    p.add_argument("--federation", default="fedpsyau", help="federation id")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument(
        "--workload",
        default="mer",
        help="mer (the MER federation, default) | example (fedcore's "
        "softmax example) | an import path module:attribute",
    )
    p.add_argument(
        "--no-dp",
        action="store_true",
        help="no DP-SGD defaults in the coordinator's [privacy] (baselines only: NOT private)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing provisioned folder")
    p.set_defaults(func=cmd_provision)

    p = common(subparsers.add_parser("enroll", help="make this client's private key and a CSR for the operator"))
    p.add_argument("--name", required=True, help="this client's id (the certificate CN)")
    p.add_argument("--out", required=True, type=Path, help="folder for NAME.key (0600) and NAME.csr")
    p.set_defaults(func=cmd_enroll)

    p = common(subparsers.add_parser("coordinator", help="run the coordinator daemon"))
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--insecure", action="store_true", help="no TLS (local debugging only; warns)")
    p.set_defaults(func=cmd_coordinator)

    p = common(subparsers.add_parser("client", help="run a client daemon"))
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--insecure", action="store_true", help="no TLS (local debugging only; warns)")
    p.set_defaults(func=cmd_client)

    p = common(
        subparsers.add_parser("status", help="a running (or ended) federation: round, stage, clients, epsilon, metrics")
    )
    p.add_argument("--config", required=True, type=Path, help="the coordinator's coordinator.toml")
    p.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    p.set_defaults(func=cmd_status)

    p = common(subparsers.add_parser("stop", help="ask the running coordinator to finish after the current round"))
    p.add_argument("--config", required=True, type=Path, help="the coordinator's coordinator.toml")
    p.add_argument("--wait", action="store_true", help="wait until the coordinator has exited")
    p.set_defaults(func=cmd_stop)

    if "simulate" in exclude:
        return
    p = common(
        subparsers.add_parser(
            "simulate",
            help="a whole federation locally: coordinator + N client processes on "
            "loopback, or the same engine in one process (--transport memory)",
        )
    )
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/sim-<time>)")
    p.add_argument("--aggregation", default="secagg", choices=list(MODES))
    p.add_argument("--workload", default=DEFAULT_WORKLOAD, help="import path module:attribute")
    p.add_argument("--strategy", default=None, help="fedavg | fedprox | fedadam | fedyogi")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.add_argument("--insecure", action="store_true", help="no TLS (local debugging only; warns)")
    p.add_argument("--status", default=None, metavar="HOST:PORT", help="serve the live status page there")
    p.add_argument(
        "--transport",
        choices=("grpc", "memory"),
        default="grpc",
        help="grpc (default): processes over mTLS on loopback; memory: the same engine and clients in "
        "this process (round seconds are then simulated time)",
    )
    p.add_argument("--seeded", action="store_true", help="seed every client from --seed (reproducible runs; warns)")
    p.set_defaults(func=cmd_simulate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedcore.cli", description="fedcore: federated learning daemons")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.OK if exc.code == 0 else ExitCode.CONFIG
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
