"""Signed SecAgg+ key advertisements: the coordinator relays them but cannot substitute a key.

Each client signs its two advertised X25519 keys (c_pk seals shares, s_pk agrees masks) with its
certificate key over the transcript

    (label ``fedpsyau/secagg/v1/advertise``, federation, round, attempt, client id, c_pk, s_pk)

and sends the signature with its certificate (:mod:`fedcore.crypto.signing`, the recipe the CKKS
key exchange uses too). The coordinator relays both with each neighbour's keys; every receiving
client rebuilds the transcript and checks the certificate against the federation CA it was
provisioned with (CN = the neighbour's id) and the signature, before it derives any key from them.
A coordinator that swaps in keys of its own (to open the share envelopes or compute the pairwise
masks) would need a certificate from the federation CA for that neighbour's id.

Wire fields (``secagg.proto``): ``SecAggAdvertiseKeys.signature`` / ``.certificate_pem`` and the
same two on ``SecAggPeerKeys``. :data:`WIRE_SUPPORT` says whether this build's generated code has
them; a client without a federation CA (``--insecure``) cannot verify and says so in the log.
"""

from __future__ import annotations

import logging

from fedcore.common.aggregation import ClientIdentity
from fedcore.crypto import signing
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb

log = logging.getLogger(__name__)

ADVERTISE_LABEL = b"fedpsyau/secagg/v1/advertise"
MAX_CERT_BYTES = signing.MAX_CERT_BYTES
MAX_SIGNATURE_BYTES = signing.MAX_SIGNATURE_BYTES

#: whether the generated messages carry signature and certificate (both messages, both fields)
WIRE_SUPPORT = all(
    {"signature", "certificate_pem"} <= set(m.DESCRIPTOR.fields_by_name)
    for m in (spb.SecAggAdvertiseKeys, spb.SecAggPeerKeys)
)


class PeerKeyRefused(signing.IdentityRefused):
    """A neighbour's advertised keys are not signed by that neighbour's federation certificate."""


def keys_transcript(
    federation_id: str, round_: int, attempt: int, client_id: str, channel_public: bytes, mask_public: bytes
) -> bytes:
    return signing.transcript(
        ADVERTISE_LABEL, federation_id, int(round_), int(attempt), client_id, channel_public, mask_public
    )


def can_sign(identity: ClientIdentity) -> bool:
    return bool(identity.cert_pem and identity.key_pem)


def sign_keys(
    identity: ClientIdentity, federation_id: str, round_: int, attempt: int, channel_public: bytes, mask_public: bytes
) -> bytes:
    """The signature a client sends with its advertised keys (ConfigError if its key cannot sign)."""
    data = keys_transcript(federation_id, round_, attempt, identity.client_id, channel_public, mask_public)
    return signing.sign(identity, data, source="secagg key advertisement")


def verify_peer_keys(
    peer_id: str,
    channel_public: bytes,
    mask_public: bytes,
    signature: bytes,
    certificate_pem: bytes,
    *,
    ca_pem: bytes,
    federation_id: str,
    round_: int,
    attempt: int,
) -> None:
    """Raise :class:`PeerKeyRefused` unless ``peer_id`` signed exactly these keys for this round."""
    if not signature or not certificate_pem:
        raise PeerKeyRefused(f"the keys of {peer_id!r} come without a signature and certificate; refusing them")
    data = keys_transcript(federation_id, round_, attempt, peer_id, channel_public, mask_public)
    signing.verify_signed(
        data,
        signature,
        certificate_pem,
        ca_pem=ca_pem,
        client_id=peer_id,
        what=f"the advertised keys of {peer_id!r} (round {round_} attempt {attempt})",
        error=PeerKeyRefused,
    )
