"""The gRPC face of the round engine: identity, chunked streams and status codes, nothing else.

Identity is the client certificate's common name; ``Header.client_id`` must equal it
(PERMISSION_DENIED otherwise). A header naming another federation is refused with
PERMISSION_DENIED too (the caller is not a member of this federation). Every other refusal is the
engine's domain error mapped by :mod:`fedcore.transport.status`.

Memory bounds on uploads (all RESOURCE_EXHAUSTED): at most ``max_concurrent_streams`` transfers
at once; at most one Submit stream per client at a time; a stream's announced size at most
``max_payload_bytes``; and per client and round at most ``max_client_bytes_per_round`` announced
bytes (counted before any data is read). So the coordinator holds at most one payload per client
in flight and at most ``max_concurrent_streams x max_payload_bytes`` bytes of uploads overall.

GetTask is a long poll: a request with ``wait_up_to`` > 0 is held (see
:meth:`RoundEngine.task`) until a task for the caller exists, for at most ``wait_up_to``, at most
:data:`MAX_HOLD` seconds and never past the call's own deadline. A held call occupies one of the
server's worker threads, so at most ``max_held_polls`` calls are held at once (default: half of
``max_concurrent_streams``; the coordinator's pool has twice that many threads, so transfers,
heartbeats and submissions always find one): beyond it a client gets its WAIT at once with the
poll interval as ``retry_after`` and polls as clients did before the long poll. A request without
``wait_up_to`` (an older client) is answered at once, as before.
"""

from __future__ import annotations

import logging
import threading

from fedcore.coordinator.engine import RoundEngine
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.chunks import first_header, receive_data, send_chunks
from fedcore.transport.status import Busy, maps_errors, streams_errors
from fedcore.transport.tls import peer_identity

log = logging.getLogger(__name__)

#: the longest a GetTask is held, whatever the client asks (seconds)
MAX_HOLD = 20.0
#: a held GetTask returns this long before the call's own deadline (seconds)
_DEADLINE_MARGIN = 0.5


class FederationServicer(pb_grpc.FederationServicer):
    def __init__(
        self,
        engine: RoundEngine,
        *,
        insecure: bool = False,
        max_payload_bytes: int = 1 << 30,
        max_concurrent_streams: int = 32,
        max_client_bytes_per_round: int = 0,
        max_held_polls: int | None = None,
    ):
        self.engine = engine
        self.insecure = insecure
        self.max_payload = max_payload_bytes
        self.max_client_bytes = max_client_bytes_per_round or 4 * max_payload_bytes
        self._streams = threading.BoundedSemaphore(max_concurrent_streams)
        self._limit = max_concurrent_streams
        self._uploads = threading.Lock()
        self._uploading: set[str] = set()  # clients with a Submit stream in flight
        self._charged: dict[str, int] = {}  # announced upload bytes per client this round
        self._charged_round = -1
        held = max(1, max_concurrent_streams // 2) if max_held_polls is None else max_held_polls
        self._holds = threading.BoundedSemaphore(held) if held > 0 else None
        self._held_lock = threading.Lock()
        self.held = 0  # GetTask calls holding a slot now

    def _identity(self, context, header: pb.Header) -> str:
        return peer_identity(context, header.client_id, self.insecure)

    def _slot(self) -> None:
        if not self._streams.acquire(blocking=False):
            raise Busy(f"too many concurrent transfers (limit {self._limit}); retry later")

    def _begin_upload(self, cid: str, announced: int) -> None:
        """Claim this client's one upload slot and charge ``announced`` bytes to its round budget."""
        with self._uploads:
            if self.engine.state.round != self._charged_round:
                self._charged_round, self._charged = self.engine.state.round, {}
            if cid in self._uploading:
                raise Busy(f"client {cid!r} already has a Submit stream in flight (one at a time)")
            used = self._charged.get(cid, 0)
            if used + announced > self.max_client_bytes:
                raise Busy(
                    f"client {cid!r} announced {used + announced} upload bytes in round "
                    f"{self._charged_round}, over the per-client limit of {self.max_client_bytes}"
                )
            self._charged[cid] = used + announced
            self._uploading.add(cid)

    def _end_upload(self, cid: str) -> None:
        with self._uploads:
            self._uploading.discard(cid)

    @maps_errors
    def Join(self, request: pb.JoinRequest, context) -> pb.JoinReply:
        cid = self._identity(context, request.header)
        return self.engine.join(cid, request.header, request.client_version)

    @maps_errors
    def GetTask(self, request: pb.TaskRequest, context) -> pb.Task:
        cid = self._identity(context, request.header)
        wait = self._hold_for(request.wait_up_to, context)
        if wait <= 0 or self._holds is None or not self._holds.acquire(blocking=False):
            return self.engine.task(cid, request.header)
        with self._held_lock:
            self.held += 1
        try:
            # a caller that goes away (or a server that stops) ends the hold at once
            context.add_callback(self.engine.wake_feed)
            return self.engine.task(cid, request.header, wait=wait, active=context.is_active)
        finally:
            self._holds.release()
            with self._held_lock:
                self.held -= 1

    @staticmethod
    def _hold_for(asked: float, context) -> float:
        """How long a GetTask may be held: what the client asks, capped by MAX_HOLD and the call's deadline."""
        if not asked > 0:  # also NaN
            return 0.0
        left = context.time_remaining()
        cap = MAX_HOLD if left is None else min(MAX_HOLD, left - _DEADLINE_MARGIN)
        return max(0.0, min(float(asked), cap))

    @maps_errors
    def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatReply:
        cid = self._identity(context, request.header)
        return self.engine.heartbeat(cid, request.header)

    @streams_errors
    def Download(self, request: pb.DownloadRequest, context):
        cid = self._identity(context, request.header)
        payload, digest = self.engine.download(cid, request.header, request.blob)
        self._slot()
        try:
            header = pb.Header(
                federation_id=request.header.federation_id,
                round=request.header.round,
                stage=request.header.stage,
                attempt=request.header.attempt,
                client_id=cid,
            )
            yield from send_chunks(header, payload, blob=request.blob, digest=digest)
        finally:
            self._streams.release()
        self.engine.count_download(len(payload))

    @maps_errors
    def Submit(self, request_iterator, context) -> pb.SubmitReply:
        chunks = iter(request_iterator)
        head = first_header(chunks)
        cid = self._identity(context, head.header)
        self.engine.precheck_submit(cid, head.header)
        if head.total_size > self.max_payload:
            receive_data(head, (), self.max_payload)  # raises PayloadTooLarge before anything is charged
        self._begin_upload(cid, int(head.total_size))
        try:
            self._slot()
            try:
                payload = receive_data(head, chunks, self.max_payload)
            finally:
                self._streams.release()
        finally:
            self._end_upload(cid)
        return self.engine.submit(cid, head.header, payload, head.sha256)
