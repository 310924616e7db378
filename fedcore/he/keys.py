"""Key exchange for the shared CKKS secret key: signed X25519 advertisements and sealed envelopes.

Each client advertises a fresh X25519 public key, signed with its certificate's private key over a
transcript that names the federation, the set-up, the CKKS parameters and the client. The key
holder verifies every peer's advertisement (signature, certificate chain to the federation CA,
common name = claimed id, a client certificate) and seals the serialized secret key to each with
:func:`fedcore.crypto.recipes.seal` under a key from :func:`fedcore.crypto.recipes.agree` with the
domain label :data:`ENVELOPE_LABEL`. The associated data binds holder, peer, federation, set-up,
key id and parameters, so the coordinator cannot move an envelope to another peer, set-up or key.

Signing and verification are the shared recipe of :mod:`fedcore.crypto.signing` (SecAgg+ signs
its advertised keys the same way): ECDSA with SHA-256, Ed25519 or RSA-PSS; every verification
failure raises :class:`KeyExchangeRefused`, never returns a bool.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from fedcore.common.aggregation import ClientIdentity
from fedcore.crypto import recipes, signing
from fedcore.crypto.signing import MAX_CERT_BYTES, MAX_SIGNATURE_BYTES, transcript
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

__all__ = [
    "ADVERTISE_LABEL",
    "ENVELOPE_LABEL",
    "MAX_CERT_BYTES",
    "MAX_SIGNATURE_BYTES",
    "KeyExchangeRefused",
    "advertisement_transcript",
    "envelope_ad",
    "make_advertisement",
    "open_secret",
    "seal_secret",
    "sign",
    "transcript",
    "verify_advertisement",
    "verify_certificate",
]

ADVERTISE_LABEL = b"fedpsyau/ckks/v1/advertise"
ENVELOPE_LABEL = b"fedpsyau/ckks/v1/key"


class KeyExchangeRefused(signing.IdentityRefused):
    """An advertisement, certificate or envelope failed verification (the message says which)."""


def advertisement_transcript(
    federation_id: str, setup: ckpb.CkksSetupHeader, client_id: str, x25519_public: bytes
) -> bytes:
    return transcript(
        ADVERTISE_LABEL, federation_id, setup.setup_id, setup.params_fingerprint, client_id, x25519_public
    )


def envelope_ad(federation_id: str, setup: ckpb.CkksSetupHeader, holder: str, peer: str, key_id: bytes) -> bytes:
    return transcript(ENVELOPE_LABEL, federation_id, setup.setup_id, setup.params_fingerprint, holder, peer, key_id)


def sign(identity: ClientIdentity, data: bytes) -> bytes:
    """Sign with the client's certificate key (:func:`fedcore.crypto.signing.sign`)."""
    return signing.sign(identity, data, source="ckks key exchange")


def verify_certificate(
    cert_pem: bytes, ca_pem: bytes, client_id: str, now: dt.datetime | None = None
) -> x509.Certificate:
    """The certificate of ``client_id`` (:func:`fedcore.crypto.signing.verify_certificate`)."""
    return signing.verify_certificate(cert_pem, ca_pem, client_id, now, error=KeyExchangeRefused)


# ---- advertisements -----------------------------------------------------------------------------


def make_advertisement(
    identity: ClientIdentity, federation_id: str, setup: ckpb.CkksSetupHeader, x25519_public: bytes
) -> ckpb.CkksKeyAdvertisement:
    msg = advertisement_transcript(federation_id, setup, identity.client_id, x25519_public)
    return ckpb.CkksKeyAdvertisement(
        client_id=identity.client_id,
        x25519_public=x25519_public,
        certificate_pem=identity.cert_pem,
        signature=sign(identity, msg),
    )


def verify_advertisement(
    adv: ckpb.CkksKeyAdvertisement,
    *,
    ca_pem: bytes,
    federation_id: str,
    setup: ckpb.CkksSetupHeader,
    expected_id: str | None = None,
) -> bytes:
    """Check an advertisement end to end; return its X25519 public key."""
    who = f"advertisement of {adv.client_id!r}"
    if expected_id is not None and adv.client_id != expected_id:
        raise KeyExchangeRefused(f"{who}: expected the advertisement of {expected_id!r}")
    if len(adv.x25519_public) != 32 or not 0 < len(adv.signature) <= MAX_SIGNATURE_BYTES:
        raise KeyExchangeRefused(
            f"{who}: expected a 32-byte X25519 key and a signature "
            f"(got {len(adv.x25519_public)} and {len(adv.signature)} bytes)"
        )
    signing.verify_signed(
        advertisement_transcript(federation_id, setup, adv.client_id, adv.x25519_public),
        adv.signature,
        adv.certificate_pem,
        ca_pem=ca_pem,
        client_id=adv.client_id,
        what=f"{who} (for this federation, set-up and key)",
        error=KeyExchangeRefused,
    )
    return bytes(adv.x25519_public)


# ---- envelopes ----------------------------------------------------------------------------------


def seal_secret(own: recipes.X25519PrivateKey, peer_public: bytes, secret: bytes, ad: bytes) -> bytes:
    return recipes.seal(recipes.agree(own, peer_public, ENVELOPE_LABEL), secret, ad)


def open_secret(own: recipes.X25519PrivateKey, holder_public: bytes, envelope: bytes, ad: bytes, holder: str) -> bytes:
    try:
        return recipes.open_sealed(recipes.agree(own, holder_public, ENVELOPE_LABEL), envelope, ad)
    except (recipes.InvalidToken, ValueError):
        raise KeyExchangeRefused(
            f"the sealed key from {holder!r} does not open: tampered, relayed to the "
            f"wrong client, or from another set-up"
        ) from None
