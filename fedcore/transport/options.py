"""Limits and channel options shared by the coordinator's server and the clients' channels.

- Chunks carry at most :data:`CHUNK_SIZE` (4 MiB) of payload; the gRPC message limit is set just
  above it (:data:`MAX_MESSAGE_BYTES`), so one oversized chunk is refused by gRPC itself
  (RESOURCE_EXHAUSTED) before our own checks run.
- Keepalive: clients ping every 30 s while idle and drop a connection that does not answer a ping
  within 20 s; the server tolerates pings every 10 s, even without calls in flight, so it never
  answers a client's keepalive with GOAWAY ("too_many_pings").
"""

from __future__ import annotations

CHUNK_SIZE = 4 * 1024 * 1024
#: one chunk plus room for the protobuf framing and the StreamHeader
MAX_MESSAGE_BYTES = CHUNK_SIZE + 64 * 1024
#: default bound on one payload (download or submission) before anything is allocated
DEFAULT_MAX_PAYLOAD = 1 << 30

_COMMON = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def server_options(max_concurrent_streams: int = 64) -> list[tuple[str, int]]:
    """Options for :func:`grpc.server`."""
    return _COMMON + [
        ("grpc.max_concurrent_streams", int(max_concurrent_streams)),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


def channel_options(server_name: str | None = None) -> list[tuple[str, object]]:
    """Options for a client channel; ``server_name`` overrides the TLS name checked against the
    server certificate (when dialling an IP address that is not among the certificate's SANs)."""
    opts: list[tuple[str, object]] = [
        *_COMMON,
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
    ]
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name))
    return opts
