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

Upload budget (admission control): the announced sizes of the Submit streams in flight -- from
their header until the engine has folded or refused the payload -- add up to at most
``max_upload_bytes_in_flight`` (default :data:`UPLOAD_BUDGET`, 48 MiB: four 1e6-parameter float64
updates). A stream that would pass it is refused at once, before any data is read, with
RESOURCE_EXHAUSTED and a ``retry_after`` hint (:data:`~fedcore.transport.status.RETRY_AFTER_KEY`);
the client daemon retries it (nothing is lost: the engine has seen nothing of it). One stream is
always admitted when none is in flight, so a payload larger than the budget (up to
``max_payload_bytes``) still gets through, alone. The payload is received into one buffer and
handed to the engine without a copy (:func:`~fedcore.transport.chunks.receive_buffer`). So the
uploads' memory is bounded by the budget whatever the number of clients: at 1e6 parameters a
coordinator's peak stays flat from 10 to 100 clients (``benchmarks/coordinator_memory.py``).

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
from fedcore.transport.chunks import first_header, receive_buffer, send_chunks
from fedcore.transport.status import Busy, maps_errors, streams_errors
from fedcore.transport.tls import peer_identity

log = logging.getLogger(__name__)

#: the longest a GetTask is held, whatever the client asks (seconds)
MAX_HOLD = 20.0
#: a held GetTask returns this long before the call's own deadline (seconds)
_DEADLINE_MARGIN = 0.5
#: default bound on the announced bytes of the Submit streams in flight at once
UPLOAD_BUDGET = 48 << 20
#: the wait a client refused by the upload budget is asked to keep before its retry (seconds)
UPLOAD_RETRY_AFTER = 0.2


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
        max_upload_bytes_in_flight: int = UPLOAD_BUDGET,
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
        self.upload_budget = max_upload_bytes_in_flight
        self.in_flight = 0  # announced bytes of the Submit streams admitted and not yet done
        self.refused_busy = 0  # Submit streams told to retry by the budget (tests, benchmarks)
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
        """Claim this client's one upload slot, admit ``announced`` bytes under the upload budget
        and charge them to the client's round budget."""
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
            if self.in_flight and self.in_flight + announced > self.upload_budget:
                self.refused_busy += 1
                raise Busy(
                    f"upload budget: {self.in_flight} bytes of uploads in flight + {announced} announced "
                    f"would pass max_upload_bytes_in_flight = {self.upload_budget}; retry in "
                    f"{UPLOAD_RETRY_AFTER:g} s",
                    retry_after=UPLOAD_RETRY_AFTER,
                )
            self.in_flight += announced
            self._charged[cid] = used + announced
            self._uploading.add(cid)

    def _end_upload(self, cid: str, announced: int) -> None:
        with self._uploads:
            self._uploading.discard(cid)
            self.in_flight -= announced

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
            receive_buffer(head, (), self.max_payload)  # raises PayloadTooLarge before anything is charged
        announced = int(head.total_size)
        self._begin_upload(cid, announced)
        try:
            self._slot()
            try:
                payload = receive_buffer(head, chunks, self.max_payload)
            finally:
                self._streams.release()
            # the budget is held until the engine has folded (or refused) the payload
            return self.engine.submit(cid, head.header, payload, head.sha256)
        finally:
            self._end_upload(cid, announced)
