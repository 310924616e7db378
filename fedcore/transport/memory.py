"""The in-memory transport: a client's link to a round engine in the same process.

:class:`MemoryConnection` has the methods of :class:`fedcore.client.connection.Connection`
(``join``, ``get_task``, ``heartbeat``, ``download``, ``submit``) and calls the engine's RPC
methods directly, so the coordinator's engine and the client's stage handlers are the same code
over both transports. What stays real:

- every request and reply is serialised to bytes and parsed back, so message sizes, parsing and
  the bytes the engine counts are those of the wire;
- the caller's identity is the client id it was made with (the certificate's common name over
  gRPC), and the header must claim that id (PERMISSION_DENIED over gRPC);
- an engine refusal reaches the client as the error it gets over gRPC: the domain error is
  mapped to its status code and back to the client's error, by the tables the gRPC path uses
  (:func:`fedcore.transport.status.client_error`);
- uploads are checked against the coordinator's payload limit, downloads against the client's,
  and a download's SHA-256 against the task's.

A test can stand in the middle: ``tamper(stage, client_id, direction, data) -> data`` sees (and
may change) the bytes of every task body the client receives (``"down"``), every submission it
sends (``"up"``) and every blob it downloads (``"blob"``); ``received`` (a list) collects every
submission as the engine was handed it, so a test can check what the coordinator never saw.

What is left out: TLS, chunking, concurrency and real time. A long poll is answered at once
(the caller drives the clock; see :mod:`fedcore.simulation_memory`).

The engine side is anything with the :class:`EngineEndpoint` methods (duck-typed, so this module
imports nothing above the transport layer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from fedcore.common.errors import FedError, InvalidPayload, NotAuthorized
from fedcore.common.stages import Stage, wire
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import PayloadTooLarge, sha256
from fedcore.transport.status import client_error

M = TypeVar("M", bound=Message)
R = TypeVar("R")


class EngineEndpoint(Protocol):
    """The coordinator-side methods a memory connection calls (those of ``RoundEngine``)."""

    def join(self, client_id: str, header: pb.Header, client_version: str = "") -> pb.JoinReply: ...
    def task(
        self, client_id: str, header: pb.Header, wait: float = 0.0, active: Callable[[], bool] | None = None
    ) -> pb.Task: ...
    def heartbeat(self, client_id: str, header: pb.Header) -> pb.HeartbeatReply: ...
    def download(self, client_id: str, header: pb.Header, blob: str) -> tuple[bytes, bytes]: ...
    def count_download(self, nbytes: int) -> None: ...
    def precheck_submit(self, client_id: str, header: pb.Header) -> None: ...
    def submit(self, client_id: str, header: pb.Header, payload: bytes, digest: bytes) -> pb.SubmitReply: ...


#: tamper(stage, client_id, direction "down" | "up" | "blob", wire bytes) -> the bytes delivered
Tamper = Callable[[Stage, str, str, bytes], bytes]


def _stage(value: int) -> Stage:
    """A header's stage for the tamper hook (UNSPECIFIED for a value no stage has)."""
    try:
        return Stage(value)
    except ValueError:
        return Stage.UNSPECIFIED


def _through_bytes(msg: M) -> M:
    """``msg`` serialised and parsed back, as the wire would deliver it."""
    return type(msg).FromString(msg.SerializeToString())


class MemoryConnection:
    """A client's connection to ``engine`` in this process (module docstring)."""

    def __init__(
        self,
        engine: EngineEndpoint,
        *,
        client_id: str,
        federation_id: str,
        max_payload_bytes: int = 1 << 30,
        server_max_payload_bytes: int = 1 << 30,
        rpc_timeout: float = 30.0,
        tamper: Tamper | None = None,
        received: list[bytes] | None = None,
    ):
        self.engine = engine
        self.client_id = client_id
        self.federation_id = federation_id
        self.max_payload = max_payload_bytes
        self.server_max_payload = server_max_payload_bytes
        self.rpc_timeout = rpc_timeout
        self.address = "memory"
        self.reconnected = False
        self.bytes_up = 0
        self.bytes_down = 0
        self.engine_seconds = 0.0  # time spent inside the engine's methods (the coordinator's share)
        self.tamper = tamper
        self.received = received

    def close(self) -> None:
        """Nothing to release (a connection object ends with its client)."""

    def header(self, round_: int = 0, stage: int = 0, attempt: int = 0) -> pb.Header:
        return pb.Header(
            federation_id=self.federation_id, round=round_, stage=wire(stage), attempt=attempt, client_id=self.client_id
        )

    def _call(self, what: str, header: pb.Header, fn: Callable[[pb.Header], R], *, reply_bytes: bool = True) -> R:
        """Run one engine call as an RPC: identity check, refusal mapping, the reply through bytes
        (``reply_bytes``; a blob is bytes already)."""
        if header.client_id != self.client_id:
            raise NotAuthorized(
                f"{what}: the certificate names {self.client_id!r}, the header claims {header.client_id!r}"
            )
        started = time.perf_counter()
        try:
            reply = fn(_through_bytes(header))
        except FedError as exc:
            error = client_error(exc)
            if error is None:  # INTERNAL, or a transient limit (retried over gRPC): a bug in one process
                raise
            raise error(f"{what}: {exc}") from None
        finally:
            self.engine_seconds += time.perf_counter() - started
        return _through_bytes(reply) if reply_bytes else reply

    # -- the RPCs -----------------------------------------------------------------------------
    def join(self, version: str) -> pb.JoinReply:
        req = _through_bytes(pb.JoinRequest(header=self.header(), client_version=version))
        return self._call("Join", req.header, lambda h: self.engine.join(self.client_id, h, req.client_version))

    def get_task(self, last: pb.Header, wait: float = 0.0, stop: threading.Event | None = None) -> pb.Task:
        """The task now (a long poll is answered at once: the simulation drives the clock)."""
        req = _through_bytes(pb.TaskRequest(header=self.header(last.round, last.stage, last.attempt)))
        task = self._call("GetTask", req.header, lambda h: self.engine.task(self.client_id, h))
        if self.tamper is not None and task.header.stage not in (Stage.WAIT, Stage.DONE):
            body = self.tamper(Stage(task.header.stage), self.client_id, "down", task.body.SerializeToString())
            task.body.Clear()
            task.body.MergeFromString(body)
        return task

    def heartbeat(self, timeout: float | None = None) -> pb.HeartbeatReply:
        return self._call("Heartbeat", self.header(), lambda h: self.engine.heartbeat(self.client_id, h))

    def download(self, header: pb.Header, blob: str, expected_sha256: bytes | None = None) -> bytes:
        req = _through_bytes(pb.DownloadRequest(header=header, blob=blob))
        payload, digest = self._call(
            "Download", req.header, lambda h: self.engine.download(self.client_id, h, req.blob), reply_bytes=False
        )
        if len(payload) > self.max_payload:
            raise InvalidPayload(
                f"Download {blob}: {len(payload)} bytes, over this client's limit of {self.max_payload}"
            )
        if sha256(payload) != digest:
            raise InvalidPayload(f"Download {blob}: SHA-256 of the payload differs from the announced one")
        if expected_sha256 is not None and digest != expected_sha256:
            raise InvalidPayload(f"blob {blob!r}: SHA-256 differs from the one in the task")
        self.engine.count_download(len(payload))
        self.bytes_down += len(payload)
        if self.tamper is not None:
            payload = self.tamper(_stage(header.stage), self.client_id, "blob", bytes(payload))
        return bytes(payload)

    def submit(self, header: pb.Header, payload: bytes) -> pb.SubmitReply:
        if self.tamper is not None:
            payload = self.tamper(_stage(header.stage), self.client_id, "up", bytes(payload))
        if self.received is not None:
            self.received.append(bytes(payload))

        def send(h: pb.Header) -> pb.SubmitReply:
            self.engine.precheck_submit(self.client_id, h)
            if len(payload) > self.server_max_payload:
                raise PayloadTooLarge(
                    f"a submission of {len(payload)} bytes is over the limit of {self.server_max_payload}"
                )
            return self.engine.submit(self.client_id, h, bytes(payload), sha256(payload))

        reply = self._call("Submit", header, send)
        self.bytes_up += len(payload)
        return reply
