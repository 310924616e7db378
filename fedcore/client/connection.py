"""The client's link to the coordinator: RPCs with reconnect backoff and chunked transfers.

Transient failures (UNAVAILABLE -- including a coordinator that is restarting --,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with capped exponential backoff and jitter
until ``reconnect_timeout`` passes without one success; then :class:`CoordinatorUnreachable`.
A refusal that names a wait (the coordinator's upload budget: trailing metadata
:data:`~fedcore.transport.status.RETRY_AFTER_KEY`) is retried no sooner than that wait.
Refusals become domain errors: FAILED_PRECONDITION -> :class:`WrongStage`, INVALID_ARGUMENT ->
:class:`InvalidPayload`, PERMISSION_DENIED/UNAUTHENTICATED -> :class:`NotAuthorized`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from fedcore.common.errors import FedError, InvalidPayload
from fedcore.common.stages import wire
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.channel import federation_stub, open_channel
from fedcore.transport.chunks import receive_chunks, send_chunks
from fedcore.transport.status import CLIENT_ERRORS, RETRYABLE, retry_hint
from fedcore.transport.tls import TlsMaterial

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY = RETRYABLE
_ERRORS = CLIENT_ERRORS


class CoordinatorUnreachable(FedError):
    """No RPC succeeded for ``reconnect_timeout`` seconds (CLI exit code 5)."""


def backoff_delays(cap: float, base: float = 0.2, rng: random.Random | None = None):
    """Capped exponential delays with +-25 % jitter: 0.2, 0.4, 0.8, ... <= cap."""
    rng = rng or random.SystemRandom()
    n = 0
    while True:
        yield min(cap, base * 2**n) * rng.uniform(0.75, 1.25)
        n = min(n + 1, 30)


class Connection:
    def __init__(
        self,
        address: str,
        tls: TlsMaterial | None,
        *,
        client_id: str,
        federation_id: str,
        insecure: bool = False,
        server_name: str | None = None,
        reconnect_timeout: float = 600.0,
        backoff_max: float = 10.0,
        max_payload_bytes: int = 1 << 30,
        rpc_timeout: float = 30.0,
    ):
        self.channel = open_channel(address, tls, insecure=insecure, server_name=server_name or None)
        self.stub = federation_stub(self.channel)
        self.address = address
        self.client_id = client_id
        self.federation_id = federation_id
        self.reconnect_timeout = reconnect_timeout
        self.backoff_max = backoff_max
        self.max_payload = max_payload_bytes
        self.rpc_timeout = rpc_timeout
        self.reconnected = False  # set when a call succeeded after transient failures
        self.bytes_up = 0
        self.bytes_down = 0

    def close(self) -> None:
        self.channel.close()

    def header(self, round_: int = 0, stage: int = 0, attempt: int = 0) -> pb.Header:
        return pb.Header(
            federation_id=self.federation_id, round=round_, stage=wire(stage), attempt=attempt, client_id=self.client_id
        )

    def call(self, what: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        """Run ``fn`` with retries on transient errors; map refusals to domain errors."""
        delays = backoff_delays(self.backoff_max)
        give_up = time.monotonic() + self.reconnect_timeout
        failures = 0
        while True:
            try:
                result = fn()
                if failures:
                    self.reconnected = True
                    log.info("%s succeeded after %d failed tries", what, failures)
                return result
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                detail = exc.details() if hasattr(exc, "details") else str(exc)
                if code in _ERRORS:
                    raise _ERRORS[code](f"{what}: {detail}") from None
                if code not in _RETRY or not retry:
                    raise
                failures += 1
                if time.monotonic() >= give_up:
                    raise CoordinatorUnreachable(
                        f"{what}: coordinator {self.address} unreachable for "
                        f"{self.reconnect_timeout:.0f} s (last: {code.name}: {detail})"
                    ) from None
                delay = next(delays)
                hint = retry_hint(exc)
                if hint is not None:  # the coordinator says when: at least that, jittered, capped
                    delay = min(self.backoff_max, max(delay, hint * random.uniform(1.0, 1.25)))  # noqa: S311
                (log.warning if failures in (1, 10) or failures % 50 == 0 else log.debug)(
                    "%s failed (%s: %s); retrying in %.1f s", what, code.name, detail, delay
                )
                time.sleep(delay)

    # -- RPCs ---------------------------------------------------------------------------------
    def join(self, version: str) -> pb.JoinReply:
        req = pb.JoinRequest(header=self.header(), client_version=version)
        return self.call("Join", lambda: self.stub.Join(req, timeout=self.rpc_timeout))

    def get_task(self, last: pb.Header, wait: float = 0.0, stop: threading.Event | None = None) -> pb.Task | None:
        """The next task. ``wait`` > 0 asks for a long poll: the coordinator holds the call up to
        ``wait`` seconds until it has a task for this client (the call's deadline is ``wait`` more
        than ``rpc_timeout``). ``stop`` being set cancels a held call; it then returns None."""
        req = pb.TaskRequest(header=self.header(last.round, last.stage, last.attempt), wait_up_to=max(0.0, wait))
        timeout = self.rpc_timeout + max(0.0, wait)
        if wait <= 0 or stop is None:
            return self.call("GetTask", lambda: self.stub.GetTask(req, timeout=timeout))
        return self.call("GetTask", lambda: _unless_stopped(self.stub.GetTask.future(req, timeout=timeout), stop))

    def heartbeat(self, timeout: float | None = None) -> pb.HeartbeatReply:
        """One heartbeat, no retries (the next one comes soon anyway)."""
        return self.stub.Heartbeat(pb.HeartbeatRequest(header=self.header()), timeout=timeout or self.rpc_timeout)

    def download(self, header: pb.Header, blob: str, expected_sha256: bytes | None = None) -> bytes:
        """Pull ``blob`` for the task ``header``; checks size limit, chunking, SHA-256 (and that it
        equals ``expected_sha256`` when given)."""
        req = pb.DownloadRequest(header=header, blob=blob)

        def pull() -> bytes:
            got = receive_chunks(self.stub.Download(req, timeout=max(self.rpc_timeout, 600.0)), self.max_payload)
            if got.header.blob != blob:
                raise InvalidPayload(f"asked for blob {blob!r}, the stream announced {got.header.blob!r}")
            return got.payload

        payload = self.call(f"Download {blob}", pull)
        if expected_sha256 is not None and _sha(payload) != expected_sha256:
            raise InvalidPayload(f"blob {blob!r}: SHA-256 differs from the one in the task")
        self.bytes_down += len(payload)
        return payload

    def submit(self, header: pb.Header, payload: bytes) -> pb.SubmitReply:
        reply = self.call(
            "Submit", lambda: self.stub.Submit(send_chunks(header, payload), timeout=max(self.rpc_timeout, 600.0))
        )
        self.bytes_up += len(payload)
        return reply


def _unless_stopped(call: grpc.Future, stop: threading.Event, check_every: float = 0.25):
    """``call``'s result, or None after cancelling it once ``stop`` is set. The reply wakes this
    at once (a done-callback); ``check_every`` only bounds how late a stop is noticed."""
    done = threading.Event()
    call.add_done_callback(lambda _: done.set())
    while not done.wait(check_every):
        if stop.is_set():
            call.cancel()
            return None
    return call.result()


def _sha(payload: bytes) -> bytes:
    from fedcore.transport.chunks import sha256

    return sha256(payload)
