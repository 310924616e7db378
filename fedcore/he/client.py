"""Client side of the ``ckks`` mode: key exchange, encrypt the weighted update, decrypt the sum.

The client checks every request before it touches a secret: the stage must follow a legal
predecessor (advertise before distribute/receive, input before decrypt, decryptions of one sum
only per round attempt; a retry of the same sum gives the same answer), the task must name this
federation's parameters and the key it holds, the sum must hold at least this client's own
``min_clients`` inputs (announced, and read from the count slot inside the ciphertexts), and
whatever it decrypts is bounded and rounded to the 2^-round_bits grid before it leaves (see
:mod:`fedcore.he` for why). It raises :class:`ProtocolAbort` to refuse.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf.message import DecodeError

from fedcore.common.aggregation import AggregateResult, ClientJob, ClientMode
from fedcore.common.errors import ConfigError, InvalidPayload, ProtocolAbort
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.crypto import recipes
from fedcore.he import keys, pack
from fedcore.he.context import SecretContext
from fedcore.he.context import key_id as key_id_of
from fedcore.he.messages import FULL_SUM_SUFFIX, unpack_body
from fedcore.he.params import CkksParams
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

log = logging.getLogger(__name__)

TASK_TYPES = {
    Stage.CKKS_KEY_ADVERTISE: ckpb.CkksKeyAdvertiseTask,
    Stage.CKKS_KEY_DISTRIBUTE: ckpb.CkksKeyDistributeTask,
    Stage.CKKS_KEY_RECEIVE: ckpb.CkksKeyReceiveTask,
    Stage.CKKS_ENCRYPTED_INPUT: ckpb.CkksInputTask,
    Stage.CKKS_DECRYPT: ckpb.CkksDecryptTask,
}
KEEP_KEYS = 2  # the newest key and the one before (a set-up may fail after the holder made a key)
DEFAULT_MIN_CLIENTS = 3
FLOOR_MIN_CLIENTS = 2  # with one contributor the sum is that client's update


def min_clients_of(settings) -> int:
    """This client's ``min_clients`` (default 3), never below 2; ConfigError for a non-integer."""
    v = settings.get("min_clients", DEFAULT_MIN_CLIENTS)
    if isinstance(v, float) and v.is_integer():  # numbers that crossed a google.protobuf.Struct
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < FLOOR_MIN_CLIENTS:
        raise ConfigError(
            f"ckks min_clients must be an integer >= {FLOOR_MIN_CLIENTS} (got {v!r})", source="ckks client settings"
        )
    return v


@dataclass
class _PendingSetup:
    header: ckpb.CkksSetupHeader
    x25519: X25519PrivateKey


class CkksClient(ClientMode):
    name = "ckks"

    def __init__(self, identity, federation_id: str, settings):
        super().__init__(identity, federation_id, settings)
        self.params = CkksParams.from_settings(self.settings)
        self.min_clients = min_clients_of(self.settings)
        self._pending: _PendingSetup | None = None
        self._keys: dict[bytes, SecretContext] = {}  # key id -> context, newest last
        self._submitted: dict[tuple[int, int], bytes] = {}  # (round, attempt) -> key id used
        self._decrypted: dict[tuple[int, int], bytes] = {}  # (round, attempt) -> SHA-256 of the sum decrypted

    def statistics_cover(self) -> int:
        """This client decrypts no sum of fewer than its ``min_clients`` contributors."""
        return self.min_clients

    @property
    def key_ids(self) -> list[bytes]:
        return list(self._keys)

    def handle(self, stage, body, job: ClientJob | None, fetch_blob) -> Any:
        try:
            stage = Stage(stage)
        except ValueError:
            raise ProtocolAbort(f"ckks mode has no stage {stage!r}") from None
        if stage not in TASK_TYPES:
            raise ProtocolAbort(f"ckks mode has no stage {stage.name}")
        task = unpack_body(body, TASK_TYPES[stage], f"{stage.name} task", ProtocolAbort)
        if stage == Stage.CKKS_KEY_ADVERTISE:
            return self._advertise(task)
        if stage == Stage.CKKS_KEY_DISTRIBUTE:
            return self._distribute(task)
        if stage == Stage.CKKS_KEY_RECEIVE:
            return self._receive(task)
        if job is None:
            raise ProtocolAbort(f"{stage.name} needs this round's job (got none)")
        if stage == Stage.CKKS_ENCRYPTED_INPUT:
            return self._encrypt(task, job)
        return self._decrypt(task, job, fetch_blob)

    # ---- set-up --------------------------------------------------------------------------------

    def _check_setup(self, header: ckpb.CkksSetupHeader, stage: Stage) -> _PendingSetup:
        p = self._pending
        if p is None or p.header.setup_id != header.setup_id or p.header.key_holder != header.key_holder:
            raise ProtocolAbort(f"{stage.name} for a set-up this client did not advertise in")
        return p

    def _advertise(self, task: ckpb.CkksKeyAdvertiseTask) -> ckpb.CkksKeyAdvertisement:
        h = task.setup
        if h.params_fingerprint != self.params.fingerprint():
            raise ProtocolAbort(f"set-up is for other CKKS parameters than this client's {self.params}")
        if len(h.setup_id) != 16 or not h.key_holder:
            raise ProtocolAbort("set-up task needs a 16-byte setup id and a key holder")
        sk, pk = recipes.new_keypair()
        self._pending = _PendingSetup(ckpb.CkksSetupHeader(), sk)
        self._pending.header.CopyFrom(h)
        return keys.make_advertisement(self.identity, self.federation_id, h, pk)

    def _distribute(self, task: ckpb.CkksKeyDistributeTask) -> ckpb.CkksKeyDistribution:
        p = self._check_setup(task.setup, Stage.CKKS_KEY_DISTRIBUTE)
        me = self.identity.client_id
        if p.header.key_holder != me:
            raise ProtocolAbort(f"asked to distribute the key, but the key holder is {p.header.key_holder!r}")
        members = set(self.settings["members"]) if "members" in self.settings else None
        secret = SecretContext(self.params)
        out = ckpb.CkksKeyDistribution(key_id=secret.key_id, public_context=secret.public_bytes())
        seen: set[str] = set()
        for adv in task.peers:
            peer = adv.client_id
            if peer in seen:
                log.warning("ckks set-up: ignoring a second advertisement of %s", peer)
                continue
            seen.add(peer)
            if peer == me:
                out.rejected[peer] = "the key holder itself"
                continue
            if members is not None and peer not in members:
                out.rejected[peer] = "not in the federation's members list"
                continue
            try:
                peer_pk = keys.verify_advertisement(
                    adv, ca_pem=self.identity.ca_pem, federation_id=self.federation_id, setup=p.header
                )
            except keys.KeyExchangeRefused as exc:
                out.rejected[peer] = str(exc)
                log.warning("ckks set-up: refusing to share the key with %s: %s", peer, exc)
                continue
            ad = keys.envelope_ad(self.federation_id, p.header, me, peer, secret.key_id)
            out.sealed.add(peer_id=peer, envelope=keys.seal_secret(p.x25519, peer_pk, secret.secret_bytes(), ad))
        self._install(secret)
        self._pending = None
        return out

    def _receive(self, task: ckpb.CkksKeyReceiveTask) -> ckpb.CkksKeyReceipt:
        p = self._check_setup(task.setup, Stage.CKKS_KEY_RECEIVE)
        holder = p.header.key_holder
        if holder == self.identity.client_id:
            raise ProtocolAbort("the key holder does not receive its own key")
        holder_pk = keys.verify_advertisement(
            task.holder,
            ca_pem=self.identity.ca_pem,
            federation_id=self.federation_id,
            setup=p.header,
            expected_id=holder,
        )
        ad = keys.envelope_ad(self.federation_id, p.header, holder, self.identity.client_id, task.key_id)
        secret_bytes = keys.open_secret(p.x25519, holder_pk, task.envelope, ad, holder)
        if key_id_of(secret_bytes) != task.key_id:
            raise keys.KeyExchangeRefused(f"the key from {holder!r} does not match the announced key id")
        try:
            secret = SecretContext(self.params, secret_bytes)
            secret.check_public_bytes(task.public_context)
        except InvalidPayload as exc:
            raise ProtocolAbort(f"the key from {holder!r} is unusable: {exc}") from None
        self._install(secret)
        self._pending = None
        return ckpb.CkksKeyReceipt(key_id=secret.key_id)

    def _install(self, secret: SecretContext) -> None:
        self._keys[secret.key_id] = secret
        while len(self._keys) > KEEP_KEYS:
            self._keys.pop(next(iter(self._keys)))

    # ---- rounds --------------------------------------------------------------------------------

    def _key_for(self, key_id: bytes, stage: Stage) -> SecretContext:
        if key_id not in self._keys:
            raise ProtocolAbort(
                f"{stage.name} names key {key_id.hex()[:8]}, which this client does not hold (did it miss the set-up?)"
            )
        return self._keys[key_id]

    def _encrypt(self, task: ckpb.CkksInputTask, job: ClientJob) -> ckpb.CkksEncryptedInput:
        secret = self._key_for(task.key_id, Stage.CKKS_ENCRYPTED_INPUT)
        if task.params_fingerprint != self.params.fingerprint():
            raise ProtocolAbort("input task is for other CKKS parameters than this client's")
        x = np.asarray(job.vector, dtype=np.float64).ravel()
        L = x.size
        if task.vector_length != L or task.num_ciphertexts != self.params.ciphertexts_for(L):
            raise ProtocolAbort(
                f"input task expects {task.vector_length} values in {task.num_ciphertexts} ciphertexts; "
                f"this client has {L} values ({self.params.ciphertexts_for(L)} ciphertexts)"
            )
        if not np.isfinite(x).all():
            raise ProtocolAbort(f"update has {int((~np.isfinite(x)).sum())} NaN/Inf values; refusing to encrypt it")
        limits = [float(job.weight), float(task.max_weight) if task.max_weight > 0 else math.inf]
        if "max_weight" in self.settings:
            limits.append(float(self.settings["max_weight"]))
        w = min(limits)
        if not (math.isfinite(w) and w > 0):
            raise ProtocolAbort(f"weight must be positive and finite (got {job.weight})")
        values = pack.frame(x, w, self.params.bound_shift_bits)
        n = max(int(task.num_participants), 1)
        peak = float(np.abs(values[:-1]).max())  # the bound slot is peak / 2^shift <= peak
        if peak * n > self.params.max_abs:
            raise ProtocolAbort(
                f"|w*x| up to {peak:g} times {n} participants exceeds max_abs "
                f"{self.params.max_abs:g}: the encrypted sum could wrap around; raise the ckks "
                f"setting max_abs (<= 2^{self.params.capacity_bits} at this level)"
            )
        self._submitted[(job.round, job.attempt)] = secret.key_id
        return ckpb.CkksEncryptedInput(key_id=secret.key_id, ciphertexts=secret.encrypt(values))

    def _decrypt(self, task: ckpb.CkksDecryptTask, job: ClientJob, fetch_blob) -> ckpb.CkksDecryptedSum:
        rid = (job.round, job.attempt)
        if self._submitted.get(rid) != task.key_id:
            raise ProtocolAbort(
                f"asked to decrypt round {job.round} attempt {job.attempt}, for which this client "
                f"sent no input under key {task.key_id.hex()[:8]}"
            )
        if rid in self._decrypted and self._decrypted[rid] != task.sum_sha256:
            raise ProtocolAbort(
                f"already decrypted another sum for round {job.round} attempt {job.attempt}; "
                f"refusing a second, different decryption"
            )
        if task.round_bits != self.params.round_bits:
            raise ProtocolAbort(
                f"decrypt task asks for round_bits {task.round_bits} (this client uses {self.params.round_bits})"
            )
        secret = self._keys[task.key_id]
        L = int(task.vector_length)
        count = self.params.ciphertexts_for(L)
        if L != np.asarray(job.vector).size or task.num_ciphertexts != count:
            raise ProtocolAbort(
                f"decrypt task does not match this round ({L} values, {task.num_ciphertexts} ciphertexts)"
            )
        if task.num_contributors < self.min_clients:
            raise ProtocolAbort(
                f"refusing to decrypt a sum of {task.num_contributors} contributors: fewer than this "
                f"client's min_clients {self.min_clients}"
            )
        blob = fetch_blob(task.sum_blob)
        if hashlib.sha256(blob).digest() != task.sum_sha256:
            raise ProtocolAbort(f"encrypted sum {task.sum_blob} does not match the SHA-256 in its task")
        down = self.params.download_level
        summed, cts = self._load_sum(secret, task, blob, task.sum_blob, down)
        self._decrypted[rid] = bytes(task.sum_sha256)  # from here on, only this sum for this attempt
        if not self._fits(secret, cts[-1], L, down):
            if down == self.params.level_primes:
                raise ProtocolAbort(
                    f"the bound slot of encrypted sum {task.sum_blob} exceeds the capacity of its "
                    f"level (2^{self.params.capacity_bits_at(down)}); refusing to return it"
                )
            cts = self._full_sum(secret, task, summed, fetch_blob)
        values = secret.decrypt(cts, self.params.frame_length(L))
        head, _bound = pack.split_bound(values, self.params.bound_shift_bits)
        units = self._bounded_units(head, int(task.num_contributors))
        rounded = pack.from_grid(units, self.params.round_bits)
        wsum, weight, n = pack.unframe(rounded)
        job.result = AggregateResult(
            wsum.copy(),
            weight,
            round(n),
            {"mode": "ckks", "round_bits": self.params.round_bits, "sum_primes": cts[0].coeff_modulus_size()},
        )
        return ckpb.CkksDecryptedSum(
            key_id=task.key_id, round_bits=self.params.round_bits, units=encode_vector(units, "int64")
        )

    def _load_sum(
        self, secret: SecretContext, task: ckpb.CkksDecryptTask, blob: bytes, name: str, primes: int
    ) -> tuple[ckpb.CkksEncryptedSum, list]:
        """Parse an encrypted sum and load its ciphertexts, which must all be at ``primes`` primes
        (the level this client expects for that blob) under this federation's parameters."""
        summed = ckpb.CkksEncryptedSum()
        try:
            summed.ParseFromString(blob)
            if summed.key_id != task.key_id or summed.num_contributors != task.num_contributors:
                raise InvalidPayload("the sum names another key or contributor count than its task")
            cts = secret.load_ciphertexts(
                list(summed.ciphertexts),
                count=self.params.ciphertexts_for(task.vector_length),
                max_bytes=secret.sum_bytes_limit(primes),
                what=f"encrypted sum {name}",
                primes=primes,
            )
        except (InvalidPayload, DecodeError) as exc:
            raise ProtocolAbort(f"encrypted sum {name} is unusable: {exc}") from None
        return summed, cts

    def _fits(self, secret: SecretContext, last, L: int, primes: int) -> bool:
        """Whether the decrypted bound slot (the sum of every contributor's peak, in the last
        ciphertext) says that no slot of the sum exceeds the capacity of ``primes`` primes."""
        R = self.params.reals_per_ciphertext
        tail = secret.decrypt([last], R)
        bound = float(tail[self.params.frame_length(L) - 1 - (self.params.ciphertexts_for(L) - 1) * R])
        bound *= 2.0**self.params.bound_shift_bits
        return math.isfinite(bound) and bound + self.params.bound_slack <= 2.0 ** self.params.capacity_bits_at(primes)

    def _full_sum(
        self, secret: SecretContext, task: ckpb.CkksDecryptTask, summed: ckpb.CkksEncryptedSum, fetch_blob
    ) -> list:
        """The sum at the upload level, checked to be the served sum before it was switched down."""
        name = task.sum_blob + FULL_SUM_SUFFIX
        full, cts = self._load_sum(secret, task, fetch_blob(name), name, self.params.level_primes)
        if (full.round, full.attempt) != (summed.round, summed.attempt) or secret.dump_ciphertexts(
            secret.switch_down(cts, self.params.download_level)
        ) != list(summed.ciphertexts):
            raise ProtocolAbort(
                f"encrypted sum {name} is not the sum of {task.sum_blob} at a higher level; refusing to decrypt it"
            )
        log.info(
            "ckks round %d: the sum does not fit %d prime(s); decrypting it at the upload level",
            summed.round,
            self.params.download_level,
        )
        return cts

    def _bounded_units(self, values: np.ndarray, contributors: int) -> np.ndarray:
        """Round to the grid, after checking the decryption looks like a sum of valid frames.

        A value outside max_abs, a count slot that is not the announced number of contributors, a
        count slot below this client's ``min_clients``, or a non-positive total weight means the
        ciphertext is not an honest sum of enough inputs; nothing is sent. The count slot is the
        sum of the 1 every contributor encrypted beside its update (:func:`pack.frame`), so it is
        bound to the ciphertexts actually decrypted, not to what the coordinator claims; the rounded
        values are computed only after these checks pass.
        """
        count, weight = values[-1], values[-2]
        peak = float(np.abs(values).max())
        if not np.isfinite(values).all() or peak > self.params.max_abs:
            raise ProtocolAbort(
                f"decrypted sum has values up to {peak:g}, beyond max_abs {self.params.max_abs:g}; "
                f"refusing to return it"
            )
        if abs(count - contributors) > 0.25 or not weight > 0:
            raise ProtocolAbort(
                f"decrypted count slot {count:.3f} / weight {weight:g} do not fit "
                f"{contributors} contributors; refusing to return the sum"
            )
        if count < self.min_clients - 0.25:
            raise ProtocolAbort(
                f"decrypted count slot {count:.3f} is below this client's min_clients "
                f"{self.min_clients}; refusing to return the sum"
            )
        return pack.to_grid(values, self.params.round_bits)
