"""The coordinator's part of the CKKS key exchange: it relays, checks shapes, and learns no secret.

One :class:`KeyRelay` lives in :class:`fedcore.he.server.CkksServer`. Per set-up attempt it picks
the key holder, hands out the advertisements and envelopes, and at the end of
``CKKS_KEY_RECEIVE`` yields a :class:`KeyRecord`: the key id and the clients that hold the key.
It never verifies signatures or opens anything (the clients do); it checks sizes and that every
envelope is for an advertised peer, so a bad body is an InvalidPayload and not a crash later.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from fedcore.common.aggregation import AggregationContext
from fedcore.common.errors import AggregationAborted, InvalidPayload
from fedcore.common.stages import Stage
from fedcore.he.context import PublicContext
from fedcore.he.keys import MAX_CERT_BYTES, MAX_SIGNATURE_BYTES
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

log = logging.getLogger(__name__)

SETUP_STAGES = (Stage.CKKS_KEY_ADVERTISE, Stage.CKKS_KEY_DISTRIBUTE, Stage.CKKS_KEY_RECEIVE)


@dataclass(frozen=True)
class KeyRecord:
    key_id: bytes
    holders: frozenset[str]  # clients that hold the secret key


@dataclass
class _Attempt:
    ctx: AggregationContext
    header: ckpb.CkksSetupHeader
    adverts: dict[str, ckpb.CkksKeyAdvertisement] = field(default_factory=dict)
    distribution: ckpb.CkksKeyDistribution | None = None
    receipts: set[str] = field(default_factory=set)

    def key_distribution(self, stage: Stage) -> ckpb.CkksKeyDistribution:
        """The key holder's accepted distribution; AggregationAborted at ``stage`` while there is none."""
        if self.distribution is None:
            raise AggregationAborted(f"ckks set-up: {stage.name} before the key holder's distribution was accepted")
        return self.distribution


def choose_holder(participants: tuple[str, ...], preferred: str | None, failed: frozenset[str] = frozenset()) -> str:
    """``preferred`` when it takes part, else the first participant in sorted order.

    Clients in ``failed`` (holders of earlier set-up attempts that went missing) are passed over
    while anyone else is left.
    """
    if not participants:
        raise AggregationAborted("CKKS set-up needs at least one participant (got none)")
    candidates = sorted(set(participants) - failed) or sorted(participants)
    if preferred and preferred in candidates:
        return preferred
    if preferred:
        log.warning(
            "ckks: key_holder %r is absent or failed an earlier set-up attempt; %r generates the key",
            preferred,
            candidates[0],
        )
    return candidates[0]


class KeyRelay:
    def __init__(self, public: PublicContext, preferred_holder: str | None):
        self.public = public
        self.preferred = preferred_holder
        self.failed_holders: set[str] = set()
        self._a: _Attempt | None = None

    def begin(self, ctx: AggregationContext) -> frozenset[str]:
        """Start an attempt; returns who is expected at CKKS_KEY_ADVERTISE."""
        holder = choose_holder(ctx.participants, self.preferred, frozenset(self.failed_holders))
        header = ckpb.CkksSetupHeader(
            setup_id=os.urandom(16), key_holder=holder, params_fingerprint=self.public.params.fingerprint()
        )
        self._a = _Attempt(ctx, header)
        log.info("ckks set-up attempt %d: %d participants, key holder %s", ctx.attempt, len(ctx.participants), holder)
        return frozenset(ctx.participants)

    def _attempt(self, stage: Stage) -> _Attempt:
        if self._a is None:
            raise AggregationAborted(f"ckks: {stage.name} before begin_setup")
        return self._a

    def task(self, stage: Stage, client_id: str):
        a = self._attempt(stage)
        if stage == Stage.CKKS_KEY_ADVERTISE:
            return ckpb.CkksKeyAdvertiseTask(setup=a.header)
        if stage == Stage.CKKS_KEY_DISTRIBUTE:
            peers = [a.adverts[c] for c in sorted(a.adverts) if c != a.header.key_holder]
            return ckpb.CkksKeyDistributeTask(setup=a.header, peers=peers)
        dist = a.key_distribution(stage)
        env = {e.peer_id: e.envelope for e in dist.sealed}
        return ckpb.CkksKeyReceiveTask(
            setup=a.header,
            holder=a.adverts[a.header.key_holder],
            key_id=dist.key_id,
            public_context=dist.public_context,
            envelope=env[client_id],
        )

    def accept(self, stage: Stage, client_id: str, msg, what: str) -> None:
        a = self._attempt(stage)
        if stage == Stage.CKKS_KEY_ADVERTISE:
            self._accept_advert(a, client_id, msg, what)
        elif stage == Stage.CKKS_KEY_DISTRIBUTE:
            self._accept_distribution(a, msg, what)
        else:
            key_id = a.key_distribution(stage).key_id
            if msg.key_id != key_id:
                raise InvalidPayload(f"{what}: receipt names key {msg.key_id.hex()} (expected {key_id.hex()})")
            a.receipts.add(client_id)

    def close(self, stage: Stage, responded: frozenset[str]) -> tuple[frozenset[str], KeyRecord | None]:
        """Close a stage: (who is expected at the next set-up stage, the key once the last closed)."""
        a = self._attempt(stage)
        holder = a.header.key_holder
        if stage == Stage.CKKS_KEY_ADVERTISE:
            a.adverts = {c: adv for c, adv in a.adverts.items() if c in responded}
            if holder not in a.adverts:
                self.failed_holders.add(holder)
                raise AggregationAborted(
                    f"ckks set-up: key holder {holder} did not advertise; the next attempt picks another holder"
                )
            return frozenset({holder}), None
        if stage == Stage.CKKS_KEY_DISTRIBUTE:
            if a.distribution is None or holder not in responded:
                self.failed_holders.add(holder)
                raise AggregationAborted(
                    f"ckks set-up: key holder {holder} did not distribute the key; "
                    f"the next attempt picks another holder"
                )
            for peer, why in sorted(a.distribution.rejected.items()):
                log.warning("ckks set-up: key holder refused %s: %s", peer, why)
            return frozenset(e.peer_id for e in a.distribution.sealed), None
        key_id = bytes(a.key_distribution(stage).key_id)
        record = KeyRecord(key_id, frozenset({holder}) | (frozenset(a.receipts) & responded))
        self._a = None
        log.info("ckks set-up done: key %s held by %d clients", record.key_id.hex()[:8], len(record.holders))
        return frozenset(), record

    # ---- checks --------------------------------------------------------------------------------

    @staticmethod
    def _accept_advert(a: _Attempt, client_id: str, adv: ckpb.CkksKeyAdvertisement, what: str) -> None:
        if adv.client_id != client_id:
            raise InvalidPayload(f"{what}: advertisement names {adv.client_id!r}")
        if len(adv.x25519_public) != 32:
            raise InvalidPayload(f"{what}: X25519 key must have 32 bytes (got {len(adv.x25519_public)})")
        if not 0 < len(adv.certificate_pem) <= MAX_CERT_BYTES or not 0 < len(adv.signature) <= MAX_SIGNATURE_BYTES:
            raise InvalidPayload(
                f"{what}: certificate must have 1..{MAX_CERT_BYTES} bytes and signature "
                f"1..{MAX_SIGNATURE_BYTES} (got {len(adv.certificate_pem)}, {len(adv.signature)})"
            )
        a.adverts[client_id] = adv  # a client restarted within the stage may re-advertise

    def _accept_distribution(self, a: _Attempt, dist: ckpb.CkksKeyDistribution, what: str) -> None:
        if len(dist.key_id) != 16:
            raise InvalidPayload(f"{what}: key_id must have 16 bytes (got {len(dist.key_id)})")
        self.public.check_public_bytes(dist.public_context, what=f"{what}: public context")
        peers = set(a.adverts) - {a.header.key_holder}
        sealed = [e.peer_id for e in dist.sealed]
        if len(set(sealed)) != len(sealed) or not set(sealed) <= peers:
            raise InvalidPayload(
                f"{what}: envelopes must be for distinct advertised peers {sorted(peers)} (got {sealed})"
            )
        if set(dist.rejected) & set(sealed) or not set(dist.rejected) <= peers | {a.header.key_holder}:
            raise InvalidPayload(
                f"{what}: rejected peers {sorted(dist.rejected)} must be advertised peers without envelope"
            )
        limit = self.public.max_key_bytes + 64
        for e in dist.sealed:
            if not 0 < len(e.envelope) <= limit:
                raise InvalidPayload(f"{what}: envelope for {e.peer_id} has {len(e.envelope)} bytes (limit {limit})")
        a.distribution = dist
