"""Message plumbing both SecAgg+ sides share: body unpacking, id lists, share envelopes.

Nothing here touches a secret except :func:`seal_share` / :func:`open_share`, which go through the
recipes layer (:mod:`fedcore.crypto.recipes`): X25519 + HKDF under :data:`CHANNEL_LABEL`, then a
versioned AES-256-GCM envelope whose associated data binds federation, round, attempt, sender and
receiver, so a share cannot be replayed into another round, attempt or pair.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from fedcore.common.stages import Stage
from fedcore.crypto.recipes import ENVELOPE_VERSION, agree, open_sealed, seal
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import shamir
from fedcore.secagg.state import SecAggStage

CHANNEL_LABEL = b"fedpsyau/secagg/v1/channel"
SHARE_AD_LABEL = b"fedpsyau/secagg/v1/share"
KEY_BYTES = 32
#: bounds on a sealed share envelope: version + nonce + tag around two 70-byte shares and two ids.
MIN_SEALED_BYTES = 1 + 12 + 16 + 2 * shamir.SHARE_BYTES
MAX_SEALED_BYTES = 4096

TASK_TYPES: dict[SecAggStage, type[Message]] = {
    SecAggStage.ADVERTISE_KEYS: spb.SecAggAdvertiseKeysTask,
    SecAggStage.SHARE_KEYS: spb.SecAggShareKeysTask,
    SecAggStage.MASKED_INPUT: spb.SecAggMaskedInputTask,
    SecAggStage.UNMASK: spb.SecAggUnmaskTask,
}
REPLY_TYPES: dict[SecAggStage, type[Message]] = {
    SecAggStage.ADVERTISE_KEYS: spb.SecAggAdvertiseKeys,
    SecAggStage.SHARE_KEYS: spb.SecAggShareKeys,
    SecAggStage.MASKED_INPUT: spb.SecAggMaskedInput,
    SecAggStage.UNMASK: spb.SecAggUnmask,
}


def unpack(body: object, cls: type[Message], error: type[Exception], what: str) -> Message:
    """``body`` as a ``cls`` message: either already one, or a google.protobuf.Any holding exactly
    that type. Anything else raises ``error`` naming what was expected and what came."""
    if isinstance(body, cls):
        return body
    if isinstance(body, Message) and body.DESCRIPTOR.full_name == cls.DESCRIPTOR.full_name:
        return cls.FromString(body.SerializeToString())  # the same message type from another pool
    if isinstance(body, any_pb2.Any):
        if not body.Is(cls.DESCRIPTOR):
            raise error(f"{what}: expected a {cls.DESCRIPTOR.full_name} body (got Any of {body.type_url!r})")
        msg = cls()
        try:
            body.Unpack(msg)
        except DecodeError:
            raise error(f"{what}: the {cls.DESCRIPTOR.full_name} body does not parse") from None
        return msg
    raise error(f"{what}: expected a {cls.DESCRIPTOR.full_name} body (got {type(body).__name__})")


def stage_name(stage: Stage | int) -> str:
    try:
        return Stage(stage).name
    except ValueError:
        return repr(stage)


def check_ids(ids: Sequence[str], what: str, error: type[Exception], *, sorted_: bool = False) -> tuple[str, ...]:
    """Distinct, non-empty ids (and in sorted order when ``sorted_``)."""
    out = tuple(ids)
    if any(not cid for cid in out):
        raise error(f"{what}: empty client id")
    if len(set(out)) != len(out):
        dup = sorted({c for c in out if out.count(c) > 1})
        raise error(f"{what}: duplicate client ids {dup}")
    if sorted_ and list(out) != sorted(out):
        raise error(f"{what}: ids must be sorted")
    return out


def _field(value: str | int) -> bytes:
    raw = value.encode() if isinstance(value, str) else struct.pack(">Q", value)
    return struct.pack(">I", len(raw)) + raw


def share_ad(federation_id: str, round_: int, attempt: int, sender: str, receiver: str) -> bytes:
    """Associated data of the share envelope from ``sender`` to ``receiver``."""
    return SHARE_AD_LABEL + b"".join(_field(v) for v in (federation_id, round_, attempt, sender, receiver))


def channel_key(sk: X25519PrivateKey, peer_public: bytes, context: bytes, a: str, b: str) -> bytes:
    """The 32-byte symmetric key between clients ``a`` and ``b`` (the same from either side)."""
    lo, hi = sorted((a, b))
    return agree(sk, peer_public, CHANNEL_LABEL + context + _field(lo) + _field(hi))


def seal_share(key: bytes, ad: bytes, sender: str, receiver: str, self_mask_share: bytes, key_share: bytes) -> bytes:
    plain = spb.SecAggSharePlaintext(
        sender=sender, receiver=receiver, self_mask_share=self_mask_share, key_share=key_share
    )
    return seal(key, plain.SerializeToString(), ad)


def open_share(key: bytes, ad: bytes, token: bytes) -> spb.SecAggSharePlaintext:
    """Open and parse a share envelope; raises recipes.InvalidToken or DecodeError."""
    return spb.SecAggSharePlaintext.FromString(open_sealed(key, token, ad))


def envelope_plausible(token: bytes) -> bool:
    """What the relaying server can check of an envelope it cannot open: version and size."""
    return MIN_SEALED_BYTES <= len(token) <= MAX_SEALED_BYTES and token[0] == ENVELOPE_VERSION


def sorted_by(order: dict[str, int], ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=order.__getitem__)
