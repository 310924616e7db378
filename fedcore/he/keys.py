"""Key exchange for the shared CKKS secret key: signed X25519 advertisements and sealed envelopes.

Each client advertises a fresh X25519 public key, signed with its certificate's private key over a
transcript that names the federation, the set-up, the CKKS parameters and the client. The key
holder verifies every peer's advertisement (signature, certificate chain to the federation CA,
common name = claimed id, a client certificate) and seals the serialized secret key to each with
:func:`fedcore.crypto.recipes.seal` under a key from :func:`fedcore.crypto.recipes.agree` with the
domain label :data:`ENVELOPE_LABEL`. The associated data binds holder, peer, federation, set-up,
key id and parameters, so the coordinator cannot move an envelope to another peer, set-up or key.

Signatures: ECDSA with SHA-256 (the federation's P-256 certificates), Ed25519, or RSA-PSS with
SHA-256; other key types raise :class:`ConfigError` (own key) or are refused (a peer's).
Every verification failure raises :class:`KeyExchangeRefused`, never returns a bool.
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
from fedcore.crypto import recipes
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

ADVERTISE_LABEL = b"fedpsyau/ckks/v1/advertise"
ENVELOPE_LABEL = b"fedpsyau/ckks/v1/key"
MAX_CERT_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 1024


class KeyExchangeRefused(ProtocolAbort):
    """An advertisement, certificate or envelope failed verification (the message says which)."""


def transcript(*parts: bytes | str) -> bytes:
    """Unambiguous concatenation: each part as a 4-byte big-endian length then its bytes."""
    out = bytearray()
    for p in parts:
        b = p.encode() if isinstance(p, str) else bytes(p)
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


def advertisement_transcript(federation_id: str, setup: ckpb.CkksSetupHeader, client_id: str,
                             x25519_public: bytes) -> bytes:
    return transcript(ADVERTISE_LABEL, federation_id, setup.setup_id, setup.params_fingerprint,
                      client_id, x25519_public)


def envelope_ad(federation_id: str, setup: ckpb.CkksSetupHeader, holder: str, peer: str, key_id: bytes) -> bytes:
    return transcript(ENVELOPE_LABEL, federation_id, setup.setup_id, setup.params_fingerprint, holder, peer, key_id)


# ---- signatures ---------------------------------------------------------------------------------

def sign(identity: ClientIdentity, data: bytes) -> bytes:
    """Sign with the client's certificate key; checks that the key belongs to the certificate."""
    try:
        key = serialization.load_pem_private_key(identity.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(identity.cert_pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"client {identity.client_id}: cannot read its certificate or private key PEM ({exc})",
                          source="ckks key exchange") from None
    own = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, own)
            != cert.public_key().public_bytes(serialization.Encoding.DER, own)):
        raise ConfigError(f"client {identity.client_id}: private key does not match its certificate",
                          source="ckks key exchange")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, _pss(), hashes.SHA256())
    raise ConfigError(f"client {identity.client_id}: certificate key type {type(key).__name__} cannot sign; "
                      f"use ECDSA (P-256), Ed25519 or RSA", source="ckks key exchange")


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _verify(public_key, signature: bytes, data: bytes) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, _pss(), hashes.SHA256())
    else:
        raise InvalidSignature(f"unsupported key type {type(public_key).__name__}")


# ---- certificates -------------------------------------------------------------------------------

def verify_certificate(cert_pem: bytes, ca_pem: bytes, client_id: str,
                       now: dt.datetime | None = None) -> x509.Certificate:
    """The certificate of ``client_id``: issued by the CA, valid now, CN = client id, a client cert."""
    who = f"certificate of {client_id!r}"
    if not cert_pem or len(cert_pem) > MAX_CERT_BYTES:
        raise KeyExchangeRefused(f"{who}: expected 1..{MAX_CERT_BYTES} bytes of PEM (got {len(cert_pem)})")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise KeyExchangeRefused(f"{who}: not a PEM certificate ({exc})") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise KeyExchangeRefused(f"{who}: not issued by the federation CA") from None
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise KeyExchangeRefused(f"{who}: not valid now (valid {cert.not_valid_before_utc} .. {cert.not_valid_after_utc})")
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [client_id]:
        raise KeyExchangeRefused(f"{who}: common name {names} does not match the claimed id {client_id!r}")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise KeyExchangeRefused(f"{who}: is a CA certificate, not a client certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise KeyExchangeRefused(f"{who}: extended key usage lacks clientAuth")
    except x509.ExtensionNotFound:
        pass
    return cert


# ---- advertisements -----------------------------------------------------------------------------

def make_advertisement(identity: ClientIdentity, federation_id: str, setup: ckpb.CkksSetupHeader,
                       x25519_public: bytes) -> ckpb.CkksKeyAdvertisement:
    msg = advertisement_transcript(federation_id, setup, identity.client_id, x25519_public)
    return ckpb.CkksKeyAdvertisement(client_id=identity.client_id, x25519_public=x25519_public,
                                     certificate_pem=identity.cert_pem, signature=sign(identity, msg))


def verify_advertisement(adv: ckpb.CkksKeyAdvertisement, *, ca_pem: bytes, federation_id: str,
                         setup: ckpb.CkksSetupHeader, expected_id: str | None = None) -> bytes:
    """Check an advertisement end to end; return its X25519 public key."""
    who = f"advertisement of {adv.client_id!r}"
    if expected_id is not None and adv.client_id != expected_id:
        raise KeyExchangeRefused(f"{who}: expected the advertisement of {expected_id!r}")
    if len(adv.x25519_public) != 32 or not 0 < len(adv.signature) <= MAX_SIGNATURE_BYTES:
        raise KeyExchangeRefused(f"{who}: expected a 32-byte X25519 key and a signature "
                                 f"(got {len(adv.x25519_public)} and {len(adv.signature)} bytes)")
    cert = verify_certificate(adv.certificate_pem, ca_pem, adv.client_id)
    try:
        _verify(cert.public_key(), adv.signature,
                advertisement_transcript(federation_id, setup, adv.client_id, adv.x25519_public))
    except InvalidSignature:
        raise KeyExchangeRefused(f"{who}: signature does not verify for this federation, set-up and key") from None
    return bytes(adv.x25519_public)


# ---- envelopes ----------------------------------------------------------------------------------

def seal_secret(own: recipes.X25519PrivateKey, peer_public: bytes, secret: bytes, ad: bytes) -> bytes:
    return recipes.seal(recipes.agree(own, peer_public, ENVELOPE_LABEL), secret, ad)


def open_secret(own: recipes.X25519PrivateKey, holder_public: bytes, envelope: bytes, ad: bytes, holder: str) -> bytes:
    try:
        return recipes.open_sealed(recipes.agree(own, holder_public, ENVELOPE_LABEL), envelope, ad)
    except (recipes.InvalidToken, ValueError):
        raise KeyExchangeRefused(f"the sealed key from {holder!r} does not open: tampered, relayed to the "
                                 f"wrong client, or from another set-up") from None
