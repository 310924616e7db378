"""Chunked payload streams: one :class:`StreamHeader` chunk, then data chunks of at most 4 MiB.

Sender: :func:`send_chunks` yields the header (total size and SHA-256 of the whole payload) and
the data. Receiver: :func:`receive_chunks` checks, in this order and before keeping any data,

1. the first chunk is a StreamHeader (else :class:`InvalidPayload`);
2. ``total_size`` is within the receiver's limit (else :class:`PayloadTooLarge`, which maps to
   RESOURCE_EXHAUSTED); nothing is allocated from the declared size: the buffer grows with the
   bytes that actually arrive, so a peer that announces a large payload and sends little costs
   only what it sent;
3. every data chunk is at most :data:`CHUNK_SIZE` bytes and the running total never passes
   ``total_size`` (else :class:`InvalidPayload`);
4. at the end, the byte count equals ``total_size`` and the SHA-256 matches (else
   :class:`InvalidPayload`).

Violations other than the size limit map to INVALID_ARGUMENT; the payload is discarded.

Copies: each chunk's bytes are read once from the message, hashed and appended to one buffer;
:func:`receive_buffer` hands that buffer back as it is (the coordinator parses it in place), so
a received payload costs its size once, not twice; :func:`receive_data` (the clients) returns
``bytes``. Bounding how many payloads are held at once is the caller's job (the coordinator's
upload budget, :class:`~fedcore.coordinator.servicer.FederationServicer`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fedcore.common.errors import InvalidPayload
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.options import CHUNK_SIZE


class PayloadTooLarge(InvalidPayload):
    """A stream announced more bytes than the receiver accepts (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class Received:
    header: pb.StreamHeader
    payload: bytes

    @property
    def sha256(self) -> bytes:
        return self.header.sha256


def sha256(payload: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(payload).digest()


def send_chunks(
    header: pb.Header, payload: bytes, blob: str = "", chunk_size: int = CHUNK_SIZE, digest: bytes | None = None
) -> Iterator[pb.Chunk]:
    """The chunks of ``payload``: a StreamHeader, then slices of at most ``chunk_size`` bytes.

    ``digest`` may pass a precomputed SHA-256 (the coordinator hashes each model blob once).
    """
    if not 0 < chunk_size <= CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in (0, {CHUNK_SIZE}] (got {chunk_size})")
    view = memoryview(payload)
    yield pb.Chunk(
        header=pb.StreamHeader(
            header=header, blob=blob, total_size=len(view), sha256=digest if digest is not None else sha256(view)
        )
    )
    for start in range(0, len(view), chunk_size):
        yield pb.Chunk(data=bytes(view[start : start + chunk_size]))


def first_header(chunks: Iterator[pb.Chunk]) -> pb.StreamHeader:
    """Read and check the opening StreamHeader of a stream."""
    try:
        first = next(chunks)
    except StopIteration:
        raise InvalidPayload("empty stream: expected a StreamHeader chunk first") from None
    if first.WhichOneof("kind") != "header":
        raise InvalidPayload(
            f"expected a StreamHeader as the first chunk (got {first.WhichOneof('kind') or 'nothing'})"
        )
    head = first.header
    if len(head.sha256) != 32:
        raise InvalidPayload(f"StreamHeader.sha256 must be 32 bytes (got {len(head.sha256)})")
    return head


def receive_buffer(head: pb.StreamHeader, chunks: Iterable[pb.Chunk], limit: int) -> bytearray:
    """Read the data chunks announced by ``head`` into one buffer, returned without a copy (see
    the module docstring for the checks)."""
    total = int(head.total_size)
    if total > limit:
        raise PayloadTooLarge(f"payload of {total} bytes exceeds the limit of {limit} bytes")
    buf = bytearray()  # grows with what arrives (never sized from the peer's declaration)
    hasher = hashlib.sha256()
    for index, chunk in enumerate(chunks, start=1):
        if chunk.WhichOneof("kind") != "data":
            raise InvalidPayload(f"chunk {index}: expected data (got {chunk.WhichOneof('kind') or 'nothing'})")
        data = chunk.data  # read once: each read of a bytes field is a fresh copy
        n = len(data)
        if n > CHUNK_SIZE:
            raise InvalidPayload(f"chunk {index}: {n} bytes exceeds the chunk limit of {CHUNK_SIZE} bytes")
        if len(buf) + n > total:
            raise InvalidPayload(f"chunk {index}: stream exceeds its announced total_size of {total} bytes")
        buf += data
        hasher.update(data)
        del data
    if len(buf) != total:
        raise InvalidPayload(f"stream ended after {len(buf)} of its announced {total} bytes")
    if hasher.digest() != head.sha256:
        raise InvalidPayload("SHA-256 of the received payload does not match the StreamHeader")
    return buf


def receive_data(head: pb.StreamHeader, chunks: Iterable[pb.Chunk], limit: int) -> bytes:
    """Like :func:`receive_buffer`, as ``bytes`` (one copy more: for payloads that are kept)."""
    return bytes(receive_buffer(head, chunks, limit))


def receive_chunks(chunks: Iterable[pb.Chunk], limit: int) -> Received:
    """Read a whole stream: its header, then its data, with every check of the module docstring."""
    it = iter(chunks)
    head = first_header(it)
    return Received(head, receive_data(head, it, limit))
