"""TLS material for both ends and the caller's identity.

mTLS is the default: the server requires a client certificate issued by the federation CA, and
the caller's identity is the certificate's common name (``x509_common_name`` in gRPC's auth
context). ``insecure`` exists only for local debugging: no encryption, no authentication, and
the identity is whatever the client claims in ``Header.client_id`` -- the daemons log a loud
warning when it is on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from fedcore.common.errors import NotAuthorized

log = logging.getLogger(__name__)

INSECURE_WARNING = (
    "*** INSECURE MODE: no TLS, no client certificates; any process that reaches "
    "this port can claim any client id. Use only for local debugging. ***"
)


class TlsError(Exception):
    """A certificate or key file is missing, unreadable or not PEM (CLI exit code 3)."""


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes: the federation CA, this party's certificate and private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, ca: Path, cert: Path, key: Path) -> TlsMaterial:
        pems = []
        for what, path in (("CA certificate", ca), ("certificate", cert), ("private key", key)):
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise TlsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
            if b"-----BEGIN " not in data:
                raise TlsError(f"the {what} {path} is not PEM (no '-----BEGIN' line)")
            pems.append(data)
        return cls(*pems)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that REQUIRE a client certificate signed by the CA."""
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )


def peer_identity(context: grpc.ServicerContext, claimed: str, insecure: bool) -> str:
    """The caller's identity: its certificate CN, which must equal ``claimed`` (Header.client_id).

    Raises :class:`NotAuthorized` (PERMISSION_DENIED) when the names differ or when a secure
    server sees no certificate name. In insecure mode the claim is taken as is.
    """
    if insecure:
        if not claimed:
            raise NotAuthorized("Header.client_id is empty (insecure mode takes the identity from it)")
        return claimed
    names = context.auth_context().get("x509_common_name") or []
    if len(names) != 1:
        raise NotAuthorized(f"expected exactly one certificate common name (got {len(names)})")
    cn = names[0].decode("utf-8", "replace")
    if not cn:
        raise NotAuthorized("the certificate's common name is empty")
    if claimed != cn:
        raise NotAuthorized(f"Header.client_id {claimed!r} differs from the certificate's name {cn!r}")
    return cn
