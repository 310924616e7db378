"""Starting a client, and telling the coordinator when its workload cannot start.

A client whose configuration or data is broken (the workload's ``make_trainer`` fails: a data
folder that does not exist, a format that does not parse, a settings key out of range) cannot
train, and every attempt of every round would fail the same way. Exiting quietly would leave
the coordinator waiting for it; instead :func:`run_client_or_report` joins with the client's
certificate, answers the first TRAIN or STATS task with ``ready = false`` and
``refusal = "cannot take part: <the error>"`` (:data:`fedcore.common.errors.STARTUP_PREFIX`),
which makes the coordinator abort the federation at once with that message (exit 4), and then
exits 2 itself (1 when the error is not a configuration, value or file error: a bug).

Before that, :func:`certificate_problem` makes one TLS handshake with the coordinator (if it is
up): a coordinator certificate not issued by this client's ``[tls] ca``, or a client certificate
the coordinator refuses (another federation's), is a TLS error at once (exit 3) -- retrying for
the whole ``reconnect_timeout`` would not change a certificate. An unreachable coordinator is
left to the daemon, which waits for it.

It waits for such a task at most the client's ``reconnect_timeout`` (the federation may still
be gathering clients). In ``ckks`` mode the key set-up comes first and this client does not take
part in it; the coordinator then goes on without it after the stage deadline (it is never asked
to train), so the message stays in this client's log only.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time

from google.protobuf import any_pb2

from fedcore.common.errors import ConfigError, InvalidPayload, NotAuthorized, WrongStage
from fedcore.common.stages import Stage
from fedcore.config.client import ClientConfig
from fedcore.exitcodes import ExitCode
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

log = logging.getLogger("fedcore.client")

#: how long after the refusal to wait for the coordinator's verdict (DONE), seconds
VERDICT_WAIT = 30.0


def run_client_or_report(cfg: ClientConfig) -> int:
    """Run the client daemon; if its workload cannot start, report that to the coordinator."""
    from fedcore.client.daemon import ClientDaemon
    from fedcore.common.errors import STARTUP_PREFIX
    from fedcore.transport.certs import CertificateError
    from fedcore.transport.tls import TlsError

    problem = None if cfg.tls.insecure else certificate_problem(cfg)
    if problem:
        raise TlsError(problem)
    try:
        daemon = ClientDaemon(cfg)
    except (TlsError, CertificateError):
        raise
    except Exception as exc:
        detail = "; ".join(exc.problems) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        log.debug("the workload failed to start", exc_info=True)
        log.error("client %s cannot start its workload %s: %s", cfg.client.id, cfg.workload.path, detail)
        report_refusal(cfg, (STARTUP_PREFIX + f"client {cfg.client.id}: {detail}")[:500])
        return ExitCode.CONFIG if isinstance(exc, (ValueError, OSError, ImportError)) else ExitCode.INTERNAL
    return daemon.run()


#: an HTTP/2 client preface: after it a gRPC server answers with its SETTINGS frame
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def certificate_problem(cfg: ClientConfig, timeout: float = 5.0) -> str | None:
    """One mutual-TLS handshake with the coordinator: why the certificates do not fit, or None
    (they fit, or the coordinator cannot be reached now -- the daemon then waits for it)."""
    host, _, port = cfg.client.coordinator.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=str(cfg.tls.ca))
        ctx.load_cert_chain(str(cfg.tls.cert), str(cfg.tls.key))
    except (OSError, ssl.SSLError):
        return None  # unreadable files: TlsMaterial.from_files says exactly what is wrong
    ctx.set_alpn_protocols(["h2"])
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except (OSError, ValueError):
        return None
    where = f"the coordinator at {cfg.client.coordinator}"
    try:
        with ctx.wrap_socket(sock, server_hostname=cfg.tls.server_name or host) as tls:
            tls.sendall(_H2_PREFACE)
            answer = tls.recv(1)  # the server's SETTINGS; an alert or a hang-up when it refuses our certificate
        if not answer:
            raise ssl.SSLError("the coordinator closed the connection after the handshake")
    except ssl.SSLCertVerificationError as exc:
        return (
            f"{where} presents a certificate this client does not accept ({exc.verify_message}): it is not "
            f"issued by [tls] ca {cfg.tls.ca}, or not for the name {cfg.tls.server_name or host!r} "
            f"(set [tls] server_name if the coordinator's certificate names another host)"
        )
    except ssl.SSLError as exc:
        why = getattr(exc, "reason", None) or exc.args[0]
        return (
            f"{where} refused this client's certificate {cfg.tls.cert} ({why}): it is not issued "
            f"by this federation's CA, or was revoked; ask the operator for a certificate "
            f"(enroll + provision sign)"
        )
    except OSError:
        return None  # reset or timed out: not a certificate verdict
    finally:
        sock.close()
    return None


def report_refusal(cfg: ClientConfig, refusal: str) -> bool:
    """Join, answer the first TRAIN/STATS task with ``refusal``; True when the coordinator took it."""
    from fedcore.client.connection import Connection, CoordinatorUnreachable
    from fedcore.client.daemon import VERSION
    from fedcore.transport.tls import TlsMaterial

    c = cfg.client
    tls = None if cfg.tls.insecure else TlsMaterial.from_files(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
    conn = Connection(
        c.coordinator,
        tls,
        client_id=c.id,
        federation_id=c.federation,
        insecure=cfg.tls.insecure,
        server_name=cfg.tls.server_name,
        reconnect_timeout=c.reconnect_timeout,
        backoff_max=c.backoff_max,
        max_payload_bytes=c.max_payload_bytes,
    )
    give_up = time.monotonic() + c.reconnect_timeout
    sent = False
    try:
        conn.join(VERSION)
        log.info("waiting for the federation's first task to report this to the coordinator")
        last = pb.Header()
        while time.monotonic() < give_up:
            task = conn.get_task(last)
            if task is None:  # a held call that was stopped
                continue
            stage = Stage(task.header.stage)
            if stage == Stage.DONE:
                done = pb.DoneTask()
                task.body.Unpack(done)
                log.info("federation over (%s): %s", "completed" if done.success else "ABORTED", done.reason)
                return sent
            if stage in (Stage.TRAIN, Stage.STATS) and not sent:
                report = (pb.TrainReport if stage == Stage.TRAIN else pb.StatsReport)(ready=False, refusal=refusal)
                body = any_pb2.Any()
                body.Pack(report)
                try:
                    conn.submit(task.header, body.SerializeToString())
                except (WrongStage, InvalidPayload) as exc:  # the stage moved on meanwhile: wait for the next
                    log.info("refusal not taken (%s); waiting for the next task", exc)
                    continue
                sent = True
                give_up = min(give_up, time.monotonic() + VERDICT_WAIT)
                log.info("told the coordinator (round %d %s): %s", task.header.round, stage.name, refusal)
            last = task.header if stage != Stage.WAIT else last
            time.sleep(task.retry_after or 0.5)
        if not sent:
            log.error("no TRAIN or STATS task came within %.0f s: the coordinator was not told", c.reconnect_timeout)
        return sent
    except (CoordinatorUnreachable, NotAuthorized) as exc:
        log.error("could not tell the coordinator: %s", exc)
        return sent
    finally:
        conn.close()
