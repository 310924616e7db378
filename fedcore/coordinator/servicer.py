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


class FederationServicer(pb_grpc.FederationServicer):
    def __init__(self, engine: RoundEngine, *, insecure: bool = False, max_payload_bytes: int = 1 << 30,
                 max_concurrent_streams: int = 32, max_client_bytes_per_round: int = 0):
        self.engine = engine
        self.insecure = insecure
        self.max_payload = max_payload_bytes
        self.max_client_bytes = max_client_bytes_per_round or 4 * max_payload_bytes
        self._streams = threading.BoundedSemaphore(max_concurrent_streams)
        self._limit = max_concurrent_streams
        self._uploads = threading.Lock()
        self._uploading: set[str] = set()           # clients with a Submit stream in flight
        self._charged: dict[str, int] = {}          # announced upload bytes per client this round
        self._charged_round = -1

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
                raise Busy(f"client {cid!r} announced {used + announced} upload bytes in round "
                           f"{self._charged_round}, over the per-client limit of {self.max_client_bytes}")
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
        return self.engine.task(cid, request.header)

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
            header = pb.Header(federation_id=request.header.federation_id, round=request.header.round,
                               stage=request.header.stage, attempt=request.header.attempt, client_id=cid)
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
