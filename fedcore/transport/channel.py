"""Client channels to the coordinator: mTLS by default, insecure only when asked (with a warning)."""

from __future__ import annotations

import logging

import grpc

from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.options import channel_options
from fedcore.transport.tls import INSECURE_WARNING, TlsMaterial

log = logging.getLogger(__name__)


def open_channel(
    address: str, tls: TlsMaterial | None, *, insecure: bool = False, server_name: str | None = None
) -> grpc.Channel:
    """A channel to ``address``; presents this party's certificate and trusts only the CA."""
    if insecure:
        log.warning(INSECURE_WARNING)
        return grpc.insecure_channel(address, options=channel_options())
    if tls is None:
        raise ValueError("TLS material is required unless insecure=True")
    return grpc.secure_channel(address, tls.channel_credentials(), options=channel_options(server_name))


def federation_stub(channel: grpc.Channel) -> pb_grpc.FederationStub:
    return pb_grpc.FederationStub(channel)
