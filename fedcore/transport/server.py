"""The coordinator's gRPC server: TLS with required client certificates, health service, limits."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedcore.common.errors import ConfigError
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.options import server_options
from fedcore.transport.tls import INSECURE_WARNING, TlsMaterial

log = logging.getLogger(__name__)

SERVICE_NAME = "fedpsyau.v1.Federation"


class AddressInUse(ConfigError):
    """The listen address cannot be bound (in use by another process, or not an address of this host)."""

    def __init__(self, address: str, what: str = "[server] address"):
        self.address = address
        super().__init__(
            f"cannot listen on {address}: the address is in use (another coordinator?) or not "
            f"an address of this machine; choose another {what} or stop the other process",
            what,
        )


class BoundServer:
    """A started gRPC server with its bound port and health servicer."""

    def __init__(self, server: grpc.Server, port: int, health_servicer: health.HealthServicer):
        self.server = server
        self.port = port
        self.health = health_servicer

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def stop(self, grace: float | None = 1.0) -> None:
        self.set_serving(False)
        self.server.stop(grace).wait()


def serve(
    servicer: pb_grpc.FederationServicer,
    address: str,
    tls: TlsMaterial | None,
    *,
    insecure: bool = False,
    max_workers: int = 32,
    max_concurrent_streams: int = 64,
) -> BoundServer:
    """Start a server for ``servicer`` on ``address`` ("host:port", port 0 = any free port).

    ``tls`` is required unless ``insecure``; the server then asks every client for a certificate
    signed by the federation CA and refuses the handshake without one.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=server_options(max_concurrent_streams),
    )
    pb_grpc.add_FederationServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if insecure:
            log.warning(INSECURE_WARNING)
            port = server.add_insecure_port(address)
        else:
            if tls is None:
                raise ValueError("TLS material is required unless insecure=True")
            port = server.add_secure_port(address, tls.server_credentials())
    except RuntimeError:  # grpc: "Failed to bind to address ..."
        raise AddressInUse(address) from None
    if port == 0:
        raise AddressInUse(address)
    server.start()
    bound = BoundServer(server, port, health_servicer)
    bound.set_serving(True)
    return bound
