"""Coordinator side of the ``ckks`` mode: relay the key exchange, add ciphertexts, check decryptions.

The coordinator never holds the CKKS secret key: it keeps a :class:`PublicContext` (encryption
parameters only) and the key id. See :mod:`fedcore.he` for the protocol and threat model.

Streaming: an encrypted input is added to the running ciphertext sum when it is accepted and
dropped; at CKKS_DECRYPT the returned decryptions are grouped by SHA-256 as they arrive (one array
per distinct decryption: honest clients all return the same one). Per client the server keeps
only digests, so an identical resubmission is ignored and a different one refused.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedcore.common.aggregation import AggregateResult, AggregationContext, ServerMode
from fedcore.common.errors import AggregationAborted, InvalidPayload, NotAuthorized
from fedcore.common.params import decode_vector
from fedcore.common.stages import Stage
from fedcore.he import pack
from fedcore.he.context import PublicContext
from fedcore.he.messages import FULL_SUM_SUFFIX, unpack_body
from fedcore.he.params import CkksParams
from fedcore.he.relay import SETUP_STAGES, KeyRecord, KeyRelay
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

if TYPE_CHECKING:
    from tenseal import sealapi

log = logging.getLogger(__name__)

ROUND_STAGES = (Stage.CKKS_ENCRYPTED_INPUT, Stage.CKKS_DECRYPT)
FULL_SUFFIX = FULL_SUM_SUFFIX
BODY_TYPES = {
    Stage.CKKS_KEY_ADVERTISE: ckpb.CkksKeyAdvertisement,
    Stage.CKKS_KEY_DISTRIBUTE: ckpb.CkksKeyDistribution,
    Stage.CKKS_KEY_RECEIVE: ckpb.CkksKeyReceipt,
    Stage.CKKS_ENCRYPTED_INPUT: ckpb.CkksEncryptedInput,
    Stage.CKKS_DECRYPT: ckpb.CkksDecryptedSum,
}


@dataclass
class _Round:
    ctx: AggregationContext
    key: KeyRecord  # a round exists only once set-up gave a key
    total: list[sealapi.Ciphertext] | None = None  # running sum of ciphertexts (upload level)
    contributors: set[str] = field(default_factory=set)
    digests: dict[str, bytes] = field(default_factory=dict)  # client -> SHA-256 of its accepted input
    input_bytes: int = 0
    blob_name: str = ""
    blob: bytes = b""  # the sum served at the download level
    blob_sha256: bytes = b""
    full_blob: bytes = b""  # the sum at the upload level, made on first request
    full_fetches: set[str] = field(default_factory=set)
    # streaming: one array per distinct decryption (all honest clients return the same one), and
    # the SHA-256 of each client's, so the decrypt stage does not hold n copies of the sum
    groups: dict[bytes, np.ndarray] = field(default_factory=dict)
    decrypted_by: dict[str, bytes] = field(default_factory=dict)
    result: AggregateResult | None = None


class CkksServer(ServerMode):
    name = "ckks"

    def __init__(self, federation_id: str, settings):
        super().__init__(federation_id, settings)
        self.params = CkksParams.from_settings(self.settings)
        self.public = PublicContext(self.params)  # parameters only: cannot decrypt
        self._min = int(self.settings.get("min_clients", 3))
        self._relay = KeyRelay(self.public, self.settings.get("key_holder"))
        self._key: KeyRecord | None = None
        self._round: _Round | None = None
        self._stage_sets: dict[Stage, frozenset[str]] = {}

    # ---- contract ------------------------------------------------------------------------------

    def setup_stages(self) -> tuple[Stage, ...]:
        return SETUP_STAGES

    def round_stages(self) -> tuple[Stage, ...]:
        return ROUND_STAGES

    def setup_done(self) -> bool:
        return self._key is not None

    def body_types(self, stage: Stage):
        return (BODY_TYPES[stage],) if stage in BODY_TYPES else ()

    def begin_setup(self, ctx: AggregationContext) -> None:
        self._stage_sets = {Stage.CKKS_KEY_ADVERTISE: self._relay.begin(ctx)}

    def begin(self, ctx: AggregationContext) -> None:
        # without a key (set-up not done) there is no round: every stage then aborts in _need_round
        self._round = _Round(ctx, self._key) if self._key is not None else None
        keyed = frozenset(ctx.participants) & (self._key.holders if self._key else frozenset())
        self._stage_sets = {Stage.CKKS_ENCRYPTED_INPUT: keyed}
        if len(keyed) < len(ctx.participants):
            log.warning(
                "ckks round %d: %d participants hold no key (joined after set-up) and sit out: %s",
                ctx.round,
                len(ctx.participants) - len(keyed),
                sorted(set(ctx.participants) - keyed),
            )

    def expected(self, stage: Stage) -> frozenset[str]:
        return self._stage_sets.get(Stage(stage), frozenset())

    def task(self, stage: Stage, client_id: str):
        stage = Stage(stage)
        if client_id not in self.expected(stage):
            raise NotAuthorized(f"{client_id} has no task at {stage.name}")
        if stage in SETUP_STAGES:
            return self._relay.task(stage, client_id)
        r = self._need_round(stage)
        L = r.ctx.vector_length
        if stage == Stage.CKKS_ENCRYPTED_INPUT:
            return ckpb.CkksInputTask(
                key_id=r.key.key_id,
                params_fingerprint=self.params.fingerprint(),
                vector_length=L,
                num_ciphertexts=self.params.ciphertexts_for(L),
                num_participants=len(self.expected(stage)),
                max_weight=float(self.settings.get("max_weight", r.ctx.max_weight)),
            )
        return ckpb.CkksDecryptTask(
            key_id=r.key.key_id,
            sum_blob=r.blob_name,
            sum_sha256=r.blob_sha256,
            vector_length=L,
            num_ciphertexts=self.params.ciphertexts_for(L),
            num_contributors=len(r.contributors),
            round_bits=self.params.round_bits,
        )

    def accept(self, stage: Stage, client_id: str, body: Any) -> None:
        stage = Stage(stage)
        what = f"{stage.name} from {client_id}"
        if client_id not in self.expected(stage):
            raise NotAuthorized(f"{client_id} is not expected to submit at {stage.name}")
        msg = unpack_body(body, BODY_TYPES[stage], what, InvalidPayload)
        if stage in SETUP_STAGES:
            self._relay.accept(stage, client_id, msg, what)
        elif stage == Stage.CKKS_ENCRYPTED_INPUT:
            self._accept_input(client_id, msg, what)
        else:
            self._accept_decryption(client_id, msg, what)

    def close_stage(self, stage: Stage, responded: frozenset[str]) -> None:
        stage = Stage(stage)
        if stage in SETUP_STAGES:
            following, key = self._relay.close(stage, responded)
            nxt = SETUP_STAGES.index(stage) + 1
            self._stage_sets = {SETUP_STAGES[nxt]: following} if nxt < len(SETUP_STAGES) else {}
            if key is not None:
                self._key = key
        elif stage == Stage.CKKS_ENCRYPTED_INPUT:
            self._close_input(responded)
        else:
            self._close_decrypt(responded)

    def result(self) -> AggregateResult:
        if self._round is None or self._round.result is None:
            raise AggregationAborted("ckks: no result yet (the decrypt stage has not closed successfully)")
        return self._round.result

    def blob(self, name: str, client_id: str) -> bytes:
        """The sum at the download level (``blob_name``) or, for a client whose bound slot says it
        does not fit there, at the upload level (``blob_name + FULL_SUFFIX``); contributors only."""
        r = self._round
        if r is None or not r.blob_name or name not in (r.blob_name, r.blob_name + FULL_SUFFIX):
            raise KeyError(name)
        if client_id not in r.contributors:
            raise NotAuthorized(f"{client_id} did not contribute to {name} and may not fetch it")
        if name == r.blob_name:
            return r.blob
        if r.total is None:  # the download level is the upload level: there is nothing fuller
            raise KeyError(name)
        if not r.full_blob:
            r.full_blob = self._sum_message(r, r.total)
        r.full_fetches.add(client_id)
        return r.full_blob

    # ---- rounds --------------------------------------------------------------------------------

    def _need_round(self, stage: Stage) -> _Round:
        if self._round is None:
            raise AggregationAborted(f"ckks: {stage.name} without a CKKS key (set-up has not completed)")
        return self._round

    def _accept_input(self, client_id: str, msg: ckpb.CkksEncryptedInput, what: str) -> None:
        r = self._need_round(Stage.CKKS_ENCRYPTED_INPUT)
        digest = _input_digest(msg)
        if client_id in r.contributors:
            if r.digests.get(client_id) == digest:
                return  # an identical resubmission changes nothing
            raise InvalidPayload(f"{what}: this client's input is already in the sum; a different one is refused")
        if msg.key_id != r.key.key_id:
            raise InvalidPayload(
                f"{what}: encrypted under key {msg.key_id.hex()[:8]} (expected {r.key.key_id.hex()[:8]})"
            )
        cts = self.public.load_ciphertexts(
            list(msg.ciphertexts),
            count=self.params.ciphertexts_for(r.ctx.vector_length),
            max_bytes=self.public.max_input_bytes,
            what=what,
        )
        r.total = self.public.add_into(r.total, cts)  # streaming: the input is dropped once added
        r.contributors.add(client_id)
        r.digests[client_id] = digest
        r.input_bytes += sum(len(c) for c in msg.ciphertexts)

    def _close_input(self, responded: frozenset[str]) -> None:
        r = self._need_round(Stage.CKKS_ENCRYPTED_INPUT)
        if not r.contributors <= responded:  # an accepted input counts even if its client died since
            log.info(
                "ckks round %d: inputs of %s were accepted before they dropped",
                r.ctx.round,
                sorted(r.contributors - responded),
            )
        if len(r.contributors) < self._min:
            raise AggregationAborted(
                f"ckks round {r.ctx.round}: {len(r.contributors)} encrypted inputs, "
                f"at least {self._min} needed (min_clients)"
            )
        if r.total is None:
            raise AggregationAborted(f"ckks round {r.ctx.round}: no encrypted input in the running sum")
        r.blob_name = f"ckks/sum/{r.ctx.round}/{r.ctx.attempt}"
        down = self.params.download_level
        if down < self.params.level_primes:
            # served at the download level (one prime by default); the upload-level sum is kept
            # for clients whose bound slot says the sum does not fit there (blob() makes it)
            r.blob = self._sum_message(r, self.public.switch_down(r.total, down))
        else:
            r.blob, r.total = self._sum_message(r, r.total), None
        r.blob_sha256 = hashlib.sha256(r.blob).digest()
        self._stage_sets = {Stage.CKKS_DECRYPT: frozenset(r.contributors)}

    def _sum_message(self, r: _Round, cts: list[sealapi.Ciphertext]) -> bytes:
        return ckpb.CkksEncryptedSum(
            key_id=r.key.key_id,
            round=r.ctx.round,
            attempt=r.ctx.attempt,
            num_contributors=len(r.contributors),
            ciphertexts=self.public.dump_ciphertexts(cts),
        ).SerializeToString()

    def _accept_decryption(self, client_id: str, msg: ckpb.CkksDecryptedSum, what: str) -> None:
        r = self._need_round(Stage.CKKS_DECRYPT)
        if msg.key_id != r.key.key_id or msg.round_bits != self.params.round_bits:
            raise InvalidPayload(
                f"{what}: expected key {r.key.key_id.hex()[:8]} and round_bits "
                f"{self.params.round_bits} (got {msg.key_id.hex()[:8]}, {msg.round_bits})"
            )
        units = decode_vector(msg.units, dtype="int64", length=r.ctx.vector_length + 2, what=what)
        digest = hashlib.sha256(units.tobytes()).digest()
        if client_id in r.decrypted_by:
            if r.decrypted_by[client_id] == digest:
                return  # an identical resubmission changes nothing
            raise InvalidPayload(f"{what}: this client already returned a different decryption; refused")
        r.groups.setdefault(digest, units)
        r.decrypted_by[client_id] = digest

    def _close_decrypt(self, responded: frozenset[str]) -> None:
        r = self._need_round(Stage.CKKS_DECRYPT)
        got = {c: h for c, h in r.decrypted_by.items() if c in responded}
        if not got:
            raise AggregationAborted(f"ckks round {r.ctx.round}: no client returned the decrypted sum")
        units, agree, disagree = agreed_groups(got, r.groups)
        values = pack.from_grid(units, self.params.round_bits)
        wsum, weight, count = pack.unframe(values)
        n = len(r.contributors)
        if abs(count - n) > 0.25 or not weight > 0 or not math.isfinite(weight):
            raise AggregationAborted(
                f"ckks round {r.ctx.round}: decrypted count slot {count:.3f} and weight "
                f"{weight:g} do not fit {n} contributors"
            )
        L = max(r.ctx.vector_length, 1)
        r.result = AggregateResult(
            wsum.copy(),
            weight,
            n,
            {
                "mode": "ckks",
                "private": True,
                "key_id": r.key.key_id.hex()[:16],
                "dropped": sorted(set(r.ctx.participants) - r.contributors),
                "decryptors": sorted(agree),
                "disagreeing": sorted(disagree),
                "round_bits": self.params.round_bits,
                "level_primes": self.params.level_primes,
                "download_primes": self.params.download_level,
                "input_bytes_per_param": r.input_bytes / (n * L),
                "sum_bytes_per_param": len(r.blob) / L,
                "full_sum_fetches": sorted(r.full_fetches),
                "full_sum_bytes_per_param": len(r.full_blob) / L if r.full_blob else None,
            },
        )
        r.total, r.full_blob, r.groups = None, b"", {}
        self._stage_sets = {}


def _input_digest(msg: ckpb.CkksEncryptedInput) -> bytes:
    """SHA-256 over the key id and the length-prefixed ciphertexts (no copy of the message)."""
    h = hashlib.sha256(len(msg.key_id).to_bytes(4, "big") + msg.key_id)
    for ct in msg.ciphertexts:
        h.update(len(ct).to_bytes(8, "big"))
        h.update(ct)
    return h.digest()


def agreed_units(decryptions: dict[str, np.ndarray], tolerance: int = 1) -> tuple[np.ndarray, list[str], list[str]]:
    """The decryption a strict majority agrees on within ``tolerance`` grid units, element-wise.

    Identical results (the normal case: decryption is deterministic) are grouped by hash first, so
    50 clients x 1e6 values cost 50 hashes, not 2500 comparisons. Returns (units, agreeing ids,
    disagreeing ids); raises :class:`AggregationAborted` without a strict majority.
    """
    groups: dict[bytes, np.ndarray] = {}
    by: dict[str, bytes] = {}
    for cid in sorted(decryptions):
        h = hashlib.sha256(decryptions[cid].tobytes()).digest()
        groups.setdefault(h, decryptions[cid])
        by[cid] = h
    return agreed_groups(by, groups, tolerance)


def agreed_groups(
    by_client: dict[str, bytes], groups: dict[bytes, np.ndarray], tolerance: int = 1
) -> tuple[np.ndarray, list[str], list[str]]:
    """:func:`agreed_units` on decryptions already grouped: ``by_client`` maps each client to the
    SHA-256 of its decryption, ``groups`` each SHA-256 to the decryption (one array per group)."""
    members: dict[bytes, list[str]] = {}
    for cid in sorted(by_client):
        members.setdefault(by_client[cid], []).append(cid)
    reps = [(groups[h], ids) for h, ids in members.items()]
    best: np.ndarray | None = None
    support: list[str] = []
    for u, _ in reps:
        near = [c for v, ids in reps if np.abs(v - u).max(initial=0) <= tolerance for c in ids]
        if len(near) > len(support):
            best, support = u, near
    if best is None or 2 * len(support) <= len(by_client):
        raise AggregationAborted(
            f"ckks: decryptions disagree; largest agreeing group {sorted(support)} "
            f"of {len(by_client)} responses is no majority"
        )
    return best, sorted(support), sorted(set(by_client) - set(support))
