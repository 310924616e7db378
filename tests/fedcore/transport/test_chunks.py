"""Chunked streams: framing, limits checked before allocation, size and hash verification."""

from __future__ import annotations

import os

import pytest

from fedcore.common.errors import InvalidPayload
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import (
    PayloadTooLarge,
    receive_chunks,
    send_chunks,
    sha256,
)
from fedcore.transport.options import CHUNK_SIZE, MAX_MESSAGE_BYTES

HDR = pb.Header(federation_id="f", round=2, stage=10, attempt=1, client_id="alice")


def test_round_trip_with_small_chunks_keeps_bytes_and_header():
    payload = os.urandom(10_001)
    chunks = list(send_chunks(HDR, payload, blob="model/1", chunk_size=1000))
    assert len(chunks) == 1 + 11 and all(len(c.data) <= 1000 for c in chunks[1:])
    got = receive_chunks(iter(chunks), limit=20_000)
    assert got.payload == payload and got.header.blob == "model/1" and got.header.header.round == 2
    assert got.sha256 == sha256(payload)


def test_default_chunks_are_at_most_4_mib_and_fit_the_message_limit():
    payload = b"\1" * (2 * CHUNK_SIZE + 5)
    chunks = list(send_chunks(HDR, payload))
    assert [len(c.data) for c in chunks[1:]] == [CHUNK_SIZE, CHUNK_SIZE, 5]
    assert max(c.ByteSize() for c in chunks) < MAX_MESSAGE_BYTES


def test_empty_payload_round_trips():
    assert receive_chunks(iter(send_chunks(HDR, b"")), limit=10).payload == b""


def test_announced_size_over_the_limit_is_refused_before_any_data():
    def stream():
        yield from list(send_chunks(HDR, b"x" * 100))[:1]
        raise AssertionError("data was read although the size was over the limit")

    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 99 bytes"):
        receive_chunks(stream(), limit=99)


def test_hash_mismatch_is_refused():
    chunks = list(send_chunks(HDR, b"hello world"))
    chunks[1] = pb.Chunk(data=b"hello WORLD")
    with pytest.raises(InvalidPayload, match="SHA-256"):
        receive_chunks(iter(chunks), limit=100)


def test_short_and_long_streams_are_refused():
    chunks = list(send_chunks(HDR, b"abcdef", chunk_size=3))
    with pytest.raises(InvalidPayload, match="ended after 3 of its announced 6"):
        receive_chunks(iter(chunks[:-1]), limit=100)
    with pytest.raises(InvalidPayload, match="exceeds its announced total_size"):
        receive_chunks(iter(chunks + [pb.Chunk(data=b"g")]), limit=100)


def test_chunk_over_4_mib_is_refused():
    big = b"\0" * (CHUNK_SIZE + 1)
    head = pb.Chunk(header=pb.StreamHeader(header=HDR, total_size=len(big), sha256=sha256(big)))
    with pytest.raises(InvalidPayload, match="exceeds the chunk limit"):
        receive_chunks(iter([head, pb.Chunk(data=big)]), limit=10 * CHUNK_SIZE)


def test_stream_must_open_with_a_header_with_a_32_byte_hash():
    with pytest.raises(InvalidPayload, match="first chunk"):
        receive_chunks(iter([pb.Chunk(data=b"x")]), limit=10)
    with pytest.raises(InvalidPayload, match="empty stream"):
        receive_chunks(iter([]), limit=10)
    with pytest.raises(InvalidPayload, match="32 bytes"):
        receive_chunks(iter([pb.Chunk(header=pb.StreamHeader(total_size=1, sha256=b"short"))]), limit=10)
    with pytest.raises(InvalidPayload, match="expected data"):
        receive_chunks(iter(list(send_chunks(HDR, b"ab")) + [pb.Chunk(header=pb.StreamHeader())]), limit=10)


def test_sender_refuses_chunks_over_4_mib():
    with pytest.raises(ValueError, match="chunk_size"):
        list(send_chunks(HDR, b"x", chunk_size=CHUNK_SIZE + 1))


def test_receive_buffer_returns_the_assembled_buffer_itself():
    """The coordinator's path: one buffer, handed over without a second whole-payload copy."""
    from fedcore.transport.chunks import first_header, receive_buffer

    payload = bytes(range(256)) * 100
    it = iter(send_chunks(HDR, payload, chunk_size=1000))
    buf = receive_buffer(first_header(it), it, limit=len(payload))
    assert isinstance(buf, bytearray) and buf == payload
