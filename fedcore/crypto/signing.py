"""Signed statements from federation clients: sign with the certificate key, verify against the CA.

The recipe both key exchanges use (CKKS's X25519 advertisement, :mod:`fedcore.he.keys`; SecAgg+'s
two advertised keys, :mod:`fedcore.secagg.auth`): a client signs an unambiguous *transcript* (a
domain label, then every field the statement binds, each length-prefixed) with the private key
of its federation certificate, and sends the signature with its certificate. A receiving client
checks, before it uses anything in the statement, that

- the certificate was issued directly by the federation CA it was provisioned with, is valid now,
  names the claimed client id as its only common name, and is a client certificate (not a CA; with
  an extended key usage, one that includes clientAuth);
- the signature verifies under the certificate's key over the transcript it rebuilds itself.

A coordinator relaying the statement cannot alter a field, move it to another client, round or
purpose, or substitute its own key without a certificate from the federation CA.

Signatures: ECDSA with SHA-256 (the federation's P-256 certificates), Ed25519, or RSA-PSS with
SHA-256; other key types raise :class:`ConfigError` (own key) or are refused (a peer's). Every
verification failure raises (an :class:`IdentityRefused`, or the subclass the caller names); none
returns a bool.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcore.common.aggregation import ClientIdentity
from fedcore.common.errors import ConfigError, ProtocolAbort

MAX_CERT_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 1024


class IdentityRefused(ProtocolAbort):
    """A certificate or signature failed verification (the message says which)."""


def transcript(*parts: bytes | str | int) -> bytes:
    """Unambiguous concatenation: each part as a 4-byte big-endian length then its bytes (an int as
    8 bytes big-endian, a str as UTF-8)."""
    out = bytearray()
    for p in parts:
        if isinstance(p, int) and not isinstance(p, bool):
            b = p.to_bytes(8, "big")
        else:
            b = p.encode() if isinstance(p, str) else bytes(p)
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


def sign(identity: ClientIdentity, data: bytes, source: str = "signing") -> bytes:
    """Sign ``data`` with the client's certificate key; checks that the key belongs to the certificate."""
    try:
        key = serialization.load_pem_private_key(identity.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(identity.cert_pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"client {identity.client_id}: cannot read its certificate or private key PEM ({exc})", source=source
        ) from None
    own = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, own) != cert.public_key().public_bytes(
        serialization.Encoding.DER, own
    ):
        raise ConfigError(f"client {identity.client_id}: private key does not match its certificate", source=source)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, _pss(), hashes.SHA256())
    raise ConfigError(
        f"client {identity.client_id}: certificate key type {type(key).__name__} cannot sign; "
        f"use ECDSA (P-256), Ed25519 or RSA",
        source=source,
    )


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def verify_signature(public_key, signature: bytes, data: bytes) -> None:
    """Raw check; raises cryptography's InvalidSignature (also for an unsupported key type)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, _pss(), hashes.SHA256())
    else:
        raise InvalidSignature(f"unsupported key type {type(public_key).__name__}")


def verify_certificate(
    cert_pem: bytes,
    ca_pem: bytes,
    client_id: str,
    now: dt.datetime | None = None,
    error: type[IdentityRefused] = IdentityRefused,
) -> x509.Certificate:
    """The certificate of ``client_id``: issued by the CA, valid now, CN = client id, a client cert."""
    who = f"certificate of {client_id!r}"
    if not cert_pem or len(cert_pem) > MAX_CERT_BYTES:
        raise error(f"{who}: expected 1..{MAX_CERT_BYTES} bytes of PEM (got {len(cert_pem)})")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise error(f"{who}: not a PEM certificate ({exc})") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise error(f"{who}: not issued by the federation CA") from None
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise error(f"{who}: not valid now (valid {cert.not_valid_before_utc} .. {cert.not_valid_after_utc})")
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [client_id]:
        raise error(f"{who}: common name {names} does not match the claimed id {client_id!r}")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise error(f"{who}: is a CA certificate, not a client certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise error(f"{who}: extended key usage lacks clientAuth")
    except x509.ExtensionNotFound:
        pass
    return cert


def verify_signed(
    data: bytes,
    signature: bytes,
    cert_pem: bytes,
    *,
    ca_pem: bytes,
    client_id: str,
    what: str,
    error: type[IdentityRefused] = IdentityRefused,
) -> x509.Certificate:
    """Check ``client_id``'s signature over ``data`` (the transcript the verifier rebuilt) under its
    certificate from the federation CA; returns the certificate, raises ``error`` otherwise."""
    if not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        raise error(f"{what}: expected a signature of 1..{MAX_SIGNATURE_BYTES} bytes (got {len(signature)})")
    cert = verify_certificate(cert_pem, ca_pem, client_id, error=error)
    try:
        verify_signature(cert.public_key(), signature, data)
    except InvalidSignature:
        raise error(f"{what}: signature does not verify under {client_id!r}'s certificate") from None
    return cert
