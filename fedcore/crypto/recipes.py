"""Safe, opinionated crypto helpers that protocol code uses (the "recipes" layer).

Protocol modules (SecAgg+, the CKKS key exchange) never touch raw primitives for channels: they
agree on a key with :func:`agree`, then :func:`seal` / :func:`open_sealed` messages. Output is
versioned and authenticated; every failure to open becomes one opaque :class:`InvalidToken`.

- Key agreement: X25519 (RFC 7748), the shared secret expanded with HKDF-SHA256 (RFC 5869) under
  a domain label, so keys for different purposes never coincide.
- Envelope: ``version (1 byte) || nonce (12 bytes) || AES-256-GCM(ciphertext || tag)`` with the
  caller's associated data (who, for whom, which round) bound into the tag.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENVELOPE_VERSION = 1
_NONCE = 12


class InvalidToken(Exception):
    """A sealed message could not be opened: wrong key, tampered bytes, wrong associated data or
    an unknown version. Deliberately says nothing more."""


def hkdf(secret: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869). ``info`` is the domain label, e.g. ``b"fedpsyau/secagg/v1/mask"``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def new_keypair() -> tuple[X25519PrivateKey, bytes]:
    """A fresh X25519 private key and its raw 32-byte public key."""
    sk = X25519PrivateKey.generate()
    return sk, public_bytes(sk)


def public_bytes(sk: X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_bytes(sk: X25519PrivateKey) -> bytes:
    return sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def load_private(raw: bytes) -> X25519PrivateKey:
    if len(raw) != 32:
        raise ValueError(f"an X25519 private key has 32 bytes (got {len(raw)})")
    return X25519PrivateKey.from_private_bytes(raw)


def agree(sk: X25519PrivateKey, peer_public: bytes, info: bytes, length: int = 32) -> bytes:
    """X25519 shared secret with ``peer_public``, expanded by HKDF under the domain label ``info``.

    Raises ValueError for a malformed public key (wrong length, or a low-order point that would
    give an all-zero secret).
    """
    if len(peer_public) != 32:
        raise ValueError(f"an X25519 public key has 32 bytes (got {len(peer_public)})")
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return hkdf(shared, info, length)


def seal(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    """Encrypt and authenticate ``plaintext`` under a 32-byte key (AES-256-GCM, random nonce)."""
    if len(key) != 32:
        raise ValueError(f"seal needs a 32-byte key (got {len(key)})")
    nonce = os.urandom(_NONCE)
    return bytes([ENVELOPE_VERSION]) + nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, token: bytes, associated_data: bytes = b"") -> bytes:
    """Inverse of :func:`seal`; raises :class:`InvalidToken` on any failure."""
    try:
        if len(token) < 1 + _NONCE + 16 or token[0] != ENVELOPE_VERSION:
            raise InvalidToken
        return AESGCM(key).decrypt(token[1 : 1 + _NONCE], token[1 + _NONCE :], associated_data)
    except (InvalidTag, InvalidToken, ValueError):
        raise InvalidToken from None
