"""Client side of SecAgg+: one function per stage, guarded by the stage machine of :mod:`.state`.

Before it touches a secret, every call checks (and otherwise raises :class:`ProtocolAbort`, which
also ends the client's part in this (round, attempt)):

- the stage change is legal (:data:`~fedcore.secagg.state.CLIENT_TRANSITIONS`); a new (round,
  attempt) may only start at advertise-keys, never go backwards, and never re-key;
- the task body is exactly the expected message, for this round and attempt, with well-formed
  fields (sorted distinct ids, 32-byte keys, sane thresholds, an overflow-free quantisation);
- peers lie inside the neighbourhood the client recomputes from the public graph seed;
- at unmask: it holds a share of every id asked for, the survivors are enough, and no peer's self-
  mask share and key share are ever both revealed, across any number of unmask requests.

Weighting (documented contract): the weight is rounded to an integer and clipped to
``[1, max_weight]`` (:func:`~fedcore.secagg.quantize.quantize_weight`); the client submits
``q(x) * w | w | clipped`` so that the weight and the clip count are summed under the masks too.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf.message import DecodeError

from fedcore.common.aggregation import ClientIdentity, ClientJob, ClientMode
from fedcore.common.errors import ProtocolAbort
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.crypto.recipes import InvalidToken, new_keypair, private_bytes
from fedcore.dp.secagg_dp import DistributedDP, update_noise_sigma
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import auth, shamir, wire
from fedcore.secagg import noise as noise_mod
from fedcore.secagg import quantize as qz
from fedcore.secagg.graph import masking_graph
from fedcore.secagg.prg import apply_masks, pair_mask_key, round_context, self_mask_key
from fedcore.secagg.state import (
    CLIENT_TRANSITIONS,
    SecAggSettings,
    SecAggStage,
    graph_plan,
    resolve_threshold,
)
from fedcore.secagg.stats_noise import stats_noise

log = logging.getLogger(__name__)
_LOCAL = threading.local()


@dataclass
class ClientState:
    """Everything a client keeps for one (round, attempt); discarded when the next one starts."""

    round: int
    attempt: int
    context: bytes
    stage: SecAggStage = SecAggStage.IDLE
    roster: tuple[str, ...] = ()
    index: dict[str, int] = field(default_factory=dict)  # id -> Shamir x (1-based roster position)
    channel_sk: X25519PrivateKey | None = None
    mask_sk: X25519PrivateKey | None = None
    own_keys: tuple[bytes, bytes] = (b"", b"")
    self_seed: bytes = b""
    share_threshold: int = 0
    min_survivors: int = 0
    peers: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # neighbour -> (c_pk, s_pk)
    channel_keys: dict[str, bytes] = field(default_factory=dict)
    held: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # owner -> (b share, s_sk share)
    masked_with: frozenset[str] = frozenset()
    revealed_self: set[str] = field(default_factory=set)
    revealed_key: set[str] = field(default_factory=set)

    def secret_keys(self) -> tuple[X25519PrivateKey, X25519PrivateKey]:
        """(channel_sk, mask_sk); ProtocolAbort when advertise-keys has not generated them."""
        if self.channel_sk is None or self.mask_sk is None:
            raise ProtocolAbort(
                f"round {self.round} attempt {self.attempt}: no key pairs yet (stage {self.stage}); "
                f"they are generated at {SecAggStage.ADVERTISE_KEYS}"
            )
        return self.channel_sk, self.mask_sk


class SecAggClient(ClientMode):
    name = "secagg"

    def __init__(
        self,
        identity: ClientIdentity,
        federation_id: str,
        settings: Mapping[str, Any],
        noise_sampler: noise_mod.Sampler | None = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(identity, federation_id, settings)
        self.config = SecAggSettings.from_mapping(self.settings)
        self.noise_sampler = noise_sampler
        self.rng = rng  # None: stochastic rounding from a CSPRNG (tests may pass a seeded Generator)
        self.state: ClientState | None = None
        #: round 0 with statistics noise: {sigma_total, sensitivity, delta, epsilon} of what this client
        #: added (counts), for its privacy ledger; None when the statistics went without noise
        self.last_stats_dp: dict[str, float] | None = None
        self._warned_unsigned = False
        self._handlers: dict[SecAggStage, Callable[[Any, ClientJob], Any]] = {
            SecAggStage.ADVERTISE_KEYS: self._advertise_keys,
            SecAggStage.SHARE_KEYS: self._share_keys,
            SecAggStage.MASKED_INPUT: self._masked_input,
            SecAggStage.UNMASK: self._unmask,
        }

    def seed_randomness(self, rng: np.random.Generator) -> None:
        """Seeded runs: stochastic rounding and the distributed noise from ``rng`` (not secure)."""
        from fedcore.dp.discrete import sample_discrete_gaussian

        self.rng = rng
        self.noise_sampler = lambda sigma, size: sample_discrete_gaussian(sigma, size, rng)

    def statistics_noise(self, length: int) -> dict[str, float] | None:
        """Round 0's discrete Gaussian (:mod:`fedcore.secagg.stats_noise`) when these settings turn it on.

        sigma is the std left in a sum of the fewest survivors a round can complete with; with a fixed
        per-client ``stats_noise_sigma`` it is taken at this client's ``min_clients`` (the smallest
        threshold, so the charge is never less than the real one)."""
        stats = stats_noise(self.config, length, max(1, int(self.config.min_clients)))
        return (
            None
            if stats is None
            else {"sigma": stats.sigma_total, "sensitivity": stats.sensitivity, "delta": stats.delta}
        )

    def statistics_cover(self) -> int:
        return max(1, int(self.config.min_clients))

    @property
    def me(self) -> str:
        return self.identity.client_id

    def _round_state(self) -> ClientState:
        """The current (round, attempt); ProtocolAbort when none was entered (a round starts at
        advertise-keys)."""
        if self.state is None:
            raise ProtocolAbort(f"secagg client: no round in progress; a round starts at {SecAggStage.ADVERTISE_KEYS}")
        return self.state

    def _sampler(self) -> noise_mod.Sampler:
        """The discrete noise sampler (``noise_sampler=``, else :func:`fedcore.secagg.noise.default_sampler`);
        ProtocolAbort when there is none."""
        sampler = self.noise_sampler or noise_mod.default_sampler()
        if sampler is None:
            raise ProtocolAbort(
                "noise_sigma > 0 but no discrete noise sampler is available (inject one with "
                "noise_sampler= or fedcore.secagg.noise.NOISE_SAMPLER)"
            )
        return sampler

    # ---- entry point and stage machine ----------------------------------------------------------

    def handle(self, stage: Stage, body: Any, job: ClientJob | None, fetch_blob: Callable[[str], bytes]):
        try:
            new = SecAggStage.from_wire(stage)
        except ValueError as exc:
            raise ProtocolAbort(f"secagg client: {exc}") from None
        if job is None:
            raise ProtocolAbort(f"secagg stage {new} needs a ClientJob (got None)")
        st = self._enter(new, int(job.round), int(job.attempt))
        try:
            task = wire.unpack(body, wire.TASK_TYPES[new], ProtocolAbort, f"{new} task")
            if task.round != st.round or task.attempt != st.attempt:
                raise ProtocolAbort(
                    f"{new} task is for round {task.round} attempt {task.attempt}, "
                    f"expected round {st.round} attempt {st.attempt}"
                )
            reply = self._handlers[new](task, job)
        except ProtocolAbort:
            st.stage = SecAggStage.ABORTED
            raise
        except (ValueError, InvalidToken, DecodeError) as exc:  # defensive: a primitive refused input
            st.stage = SecAggStage.ABORTED
            raise ProtocolAbort(f"{new}: {type(exc).__name__}: {exc}") from None
        st.stage = new
        return reply

    def _enter(self, new: SecAggStage, round_: int, attempt: int) -> ClientState:
        st = self.state
        if st is None or (round_, attempt) != (st.round, st.attempt):
            if st is not None and (round_, attempt) < (st.round, st.attempt):
                raise ProtocolAbort(
                    f"stale task: round {round_} attempt {attempt} after round {st.round} attempt {st.attempt}"
                )
            if new != SecAggStage.ADVERTISE_KEYS:
                raise ProtocolAbort(
                    f"illegal stage change: round {round_} attempt {attempt} must start at "
                    f"{SecAggStage.ADVERTISE_KEYS} (got {new})"
                )
            self.state = st = ClientState(round_, attempt, round_context(self.federation_id, round_, attempt))
        elif (st.stage, new) not in CLIENT_TRANSITIONS:
            current, st.stage = st.stage, SecAggStage.ABORTED
            raise ProtocolAbort(f"illegal stage change {current} -> {new} in round {round_} attempt {attempt}")
        return st

    # ---- stages ---------------------------------------------------------------------------------

    def _advertise_keys(self, task: spb.SecAggAdvertiseKeysTask, job: ClientJob) -> spb.SecAggAdvertiseKeys:
        st = self._round_state()
        roster = wire.check_ids(task.participants, "advertise-keys participants", ProtocolAbort, sorted_=True)
        if self.me not in roster:
            raise ProtocolAbort(f"advertise-keys participants do not include this client {self.me!r}")
        if len(roster) < self.config.min_clients:
            raise ProtocolAbort(
                f"refusing a round of {len(roster)} participants (min_clients {self.config.min_clients})"
            )
        st.roster, st.index = roster, {cid: i + 1 for i, cid in enumerate(roster)}
        st.channel_sk, c_pk = new_keypair()
        st.mask_sk, s_pk = new_keypair()
        st.own_keys, st.self_seed = (c_pk, s_pk), os.urandom(32)
        reply = spb.SecAggAdvertiseKeys(channel_public_key=c_pk, mask_public_key=s_pk)
        if auth.WIRE_SUPPORT and auth.can_sign(self.identity):  # signed with the certificate key
            reply.signature = auth.sign_keys(self.identity, self.federation_id, st.round, st.attempt, c_pk, s_pk)
            reply.certificate_pem = self.identity.cert_pem
        return reply

    def _check_peer_signature(self, peer: spb.SecAggPeerKeys) -> None:
        """PeerKeyRefused unless the neighbour's certificate (federation CA) signed exactly these keys."""
        if not auth.WIRE_SUPPORT or not self.identity.ca_pem:
            if not self._warned_unsigned:
                why = (
                    "this build's secagg.proto carries no key signatures"
                    if not auth.WIRE_SUPPORT
                    else "this client has no federation CA (insecure mode)"
                )
                log.warning(
                    "secagg: neighbours' advertised keys are NOT authenticated: %s; a coordinator could "
                    "substitute them",
                    why,
                )
                self._warned_unsigned = True
            return
        st = self._round_state()
        auth.verify_peer_keys(
            peer.client_id,
            peer.channel_public_key,
            peer.mask_public_key,
            peer.signature,
            peer.certificate_pem,
            ca_pem=self.identity.ca_pem,
            federation_id=self.federation_id,
            round_=st.round,
            attempt=st.attempt,
        )

    def _share_keys(self, task: spb.SecAggShareKeysTask, job: ClientJob) -> spb.SecAggShareKeys:
        st = self._round_state()
        n = len(st.roster)
        if tuple(task.participants) != st.roster:
            raise ProtocolAbort("share-keys participants differ from the advertise-keys roster")
        floor_t = resolve_threshold(self.config.threshold, n, self.config.min_clients)
        if not floor_t <= task.min_survivors <= n:
            raise ProtocolAbort(
                f"min_survivors must be in [{floor_t}, {n}] for {n} participants (got {task.min_survivors})"
            )
        if self.config.k == "all" and task.degree != n - 1:
            raise ProtocolAbort(
                f"this client requires the complete graph (k='all', degree {n - 1}); "
                f"the server asked for degree {task.degree}"
            )
        try:  # the share threshold for the server's degree, from this client's own gamma and delta
            gp = graph_plan(self.config, n, int(task.min_survivors), k=int(task.degree))
        except ValueError as exc:
            raise ProtocolAbort(f"refusing masking graph degree {task.degree} for n={n}: {exc}") from None
        if gp.k != task.degree:
            raise ProtocolAbort(
                f"masking graph degree {task.degree} is not a valid degree for n={n} "
                f"(expected an even number below {n - 1}, or {n - 1})"
            )
        graph = masking_graph(st.roster, task.degree, task.graph_seed)  # ValueError -> abort
        mine = graph[self.me]
        ids = wire.check_ids([p.client_id for p in task.neighbours], "share-keys neighbours", ProtocolAbort)
        for peer in task.neighbours:
            if peer.client_id not in mine:
                raise ProtocolAbort(f"refusing peer {peer.client_id!r}: outside this client's neighbourhood")
            keys = (peer.channel_public_key, peer.mask_public_key)
            if any(len(k) != wire.KEY_BYTES for k in keys) or keys[0] == keys[1] or set(keys) & set(st.own_keys):
                raise ProtocolAbort(
                    f"peer {peer.client_id!r}: expected two distinct 32-byte public keys unlike this client's own"
                )
            self._check_peer_signature(peer)  # before any key is derived from them
            st.peers[peer.client_id] = keys
        st.min_survivors = int(task.min_survivors)
        st.share_threshold = gp.t
        holders = wire.sorted_by(st.index, [*ids, self.me])
        if len(holders) < st.share_threshold:
            raise ProtocolAbort(
                f"only {len(holders)} share holders (with this client) for a threshold of {st.share_threshold}"
            )
        xs = [st.index[h] for h in holders]
        b_shares = shamir.split(st.self_seed, xs, st.share_threshold)
        channel_sk, mask_sk = st.secret_keys()
        k_shares = shamir.split(private_bytes(mask_sk), xs, st.share_threshold)
        out = spb.SecAggShareKeys()
        for holder, b_share, k_share in zip(holders, b_shares, k_shares):
            if holder == self.me:
                st.held[self.me] = (b_share, k_share)
                continue
            key = wire.channel_key(channel_sk, st.peers[holder][0], st.context, self.me, holder)
            st.channel_keys[holder] = key
            ad = wire.share_ad(self.federation_id, st.round, st.attempt, self.me, holder)
            out.shares.add(
                sender=self.me, receiver=holder, sealed=wire.seal_share(key, ad, self.me, holder, b_share, k_share)
            )
        return out

    def _masked_input(self, task: spb.SecAggMaskedInputTask, job: ClientJob) -> spb.SecAggMaskedInput:
        st = self._round_state()
        vec = np.asarray(job.vector)
        if vec.ndim != 1 or vec.dtype.kind not in "fiu" or not np.isfinite(vec).all():
            raise ProtocolAbort(f"the job vector must be 1-D, numeric and finite (got {vec.dtype} {vec.shape})")
        qp = self._check_quantization(task, vec.shape[0])
        vec = self._private_input(vec, qp, job)
        senders = self._open_shares(task.shares)
        weight = qz.quantize_weight(float(job.weight), qp.max_weight)
        length = vec.shape[0]
        work, y = self._buffers(length, qp.bits)
        q, clipped = qz.quantize(vec, qp.clip, qp.frac_bits, self.rng, work)
        if clipped:
            log.warning("secagg round %d: clipped %d of %d values to +-%g", st.round, clipped, length, qp.clip)
        q *= weight
        if qp.noise_sigma > 0:
            q += noise_mod.draw_noise(self._sampler(), qp.noise_sigma, length, qp.noise_bound)[0]
        np.copyto(y[:length], q, casting="unsafe")  # two's complement, modulo 2^bits
        # a noisy (DP) round sends no clip count: it would be a data-dependent value summed without
        # noise; under distributed DP the quantiser's bound is clip_norm, so nothing is clipped anyway
        y[length], y[length + 1] = weight, (clipped if qp.noise_sigma == 0 else 0)
        masks = [(self_mask_key(st.self_seed, st.context, self.me), +1)]
        _, mask_sk = st.secret_keys()
        for peer in wire.sorted_by(st.index, senders):
            key = pair_mask_key(mask_sk, st.peers[peer][1], st.context, self.me, peer)
            masks.append((key, +1 if self.me < peer else -1))
        apply_masks(y, masks)  # in place, block by block: no per-neighbour buffer
        st.masked_with = frozenset(senders)
        return spb.SecAggMaskedInput(masked=encode_vector(y, y.dtype.name))

    @staticmethod
    def _buffers(length: int, bits: int) -> tuple[qz.Workspace, np.ndarray]:
        """Work buffers for vectors of this length, reused across rounds and shared by the clients of
        one thread (a daemon has one; the in-process driver many): nothing large is allocated per
        round, and the result is copied out (encoded) before the buffers are used again."""
        key = (length, bits)
        if getattr(_LOCAL, "key", None) != key:
            ring = qz.RING_DTYPES[bits]
            _LOCAL.work = (qz.Workspace.for_length(length), np.empty(length + 2, ring))
            _LOCAL.key = key
        return _LOCAL.work

    def _check_quantization(self, task: spb.SecAggMaskedInputTask, length: int) -> qz.QuantParams:
        if not task.HasField("quantization"):
            raise ProtocolAbort("masked-input task has no quantization parameters")
        m, roster = task.quantization, self._round_state().roster
        if m.num_clients != len(roster):
            raise ProtocolAbort(f"quantization is for {m.num_clients} clients, the roster has {len(roster)}")
        qp = qz.QuantParams(int(m.bits), int(m.frac_bits), float(m.clip), int(m.max_weight), float(m.noise_sigma))
        try:
            qz.check_params(qp, m.num_clients, length)
        except ValueError as exc:
            raise ProtocolAbort(f"refusing quantization: {exc}") from None
        if not math.isfinite(qp.noise_sigma) or qp.noise_sigma < self.config.noise_sigma:
            raise ProtocolAbort(f"noise_sigma {qp.noise_sigma} is below this client's floor {self.config.noise_sigma}")
        if qp.noise_sigma > 0:
            self._sampler()  # refuse now, before any share is opened, when there is none
        return qp

    def _private_input(self, vec: np.ndarray, qp: qz.QuantParams, job: ClientJob) -> np.ndarray:
        """Distributed DP: check the server's noise scale against what the task's settings and this
        mode's own floor (``distributed_dp`` in its settings, when a client sets one) require (never
        less noise, weights capped at 1), and that the update arrived clipped to L2 clip_norm (the
        handler clips it, :func:`fedcore.client.handlers.client_update`; this mode only checks)."""
        round_, length, min_survivors = int(job.round), vec.shape[0], self._round_state().min_survivors
        task = job.distributed_dp
        wanted = [
            d for d in (self.config.dp, task and DistributedDP(task.noise_multiplier, task.clip_norm, task.delta)) if d
        ]
        if round_ == 0:
            stats = stats_noise(self.config, length, min_survivors)
            need = stats.client_sigma(min_survivors) * 2.0**qp.frac_bits if stats else 0.0
        elif wanted:
            need = max(update_noise_sigma(d, qp.frac_bits, min_survivors, length) for d in wanted)
        else:
            return vec
        if qp.noise_sigma < need * (1 - 1e-9):
            raise ProtocolAbort(
                f"noise_sigma {qp.noise_sigma:.6g} is below the {need:.6g} this client's "
                f"{'statistics noise' if round_ == 0 else 'distributed_dp'} settings require"
            )
        if round_ == 0:
            self.last_stats_dp = stats.task_config() if stats else None
            return vec
        if qp.max_weight != 1:
            raise ProtocolAbort(f"distributed DP needs weight 1 per client (the server allows {qp.max_weight})")
        clip = min(d.clip_norm for d in wanted)
        norm = float(np.linalg.norm(np.asarray(vec, np.float64)))
        if not norm <= clip * (1 + 1e-9):
            raise ProtocolAbort(f"the update has L2 norm {norm:.6g}, above distributed DP's clip_norm {clip}")
        return vec

    def _open_shares(self, shares) -> list[str]:
        st = self._round_state()
        senders = wire.check_ids([s.sender for s in shares], "masked-input share senders", ProtocolAbort)
        for env in shares:
            if env.sender not in st.peers:
                raise ProtocolAbort(f"refusing a share from {env.sender!r}: outside this client's neighbourhood")
            if env.receiver != self.me:
                raise ProtocolAbort(f"a share addressed to {env.receiver!r} was delivered to {self.me!r}")
            key = st.channel_keys[env.sender]
            ad = wire.share_ad(self.federation_id, st.round, st.attempt, env.sender, self.me)
            try:
                plain = wire.open_share(key, ad, env.sealed)
            except (InvalidToken, DecodeError):
                raise ProtocolAbort(f"the share from {env.sender!r} does not open (tampered or misaddressed)") from None
            if plain.sender != env.sender or plain.receiver != self.me:
                raise ProtocolAbort(f"the share from {env.sender!r} names {plain.sender!r} -> {plain.receiver!r}")
            for share in (plain.self_mask_share, plain.key_share):
                try:
                    x = shamir.share_index(share)
                except ValueError as exc:
                    raise ProtocolAbort(f"the share from {env.sender!r} is malformed: {exc}") from None
                if x != st.index[self.me]:
                    raise ProtocolAbort(f"the share from {env.sender!r} is for holder {x}, not {st.index[self.me]}")
            st.held[env.sender] = (plain.self_mask_share, plain.key_share)
        if len(senders) + 1 < st.share_threshold:
            raise ProtocolAbort(
                f"only {len(senders)} neighbours shared keys; a share threshold of "
                f"{st.share_threshold} needs at least {st.share_threshold - 1}"
            )
        return list(senders)

    def _unmask(self, task: spb.SecAggUnmaskTask, job: ClientJob) -> spb.SecAggUnmask:
        st = self._round_state()
        survivors = wire.check_ids(task.survivors, "unmask survivors", ProtocolAbort)
        dropped = wire.check_ids(task.dropped, "unmask dropped", ProtocolAbort)
        both = set(survivors) & set(dropped)
        if both:
            raise ProtocolAbort(f"refusing to reveal both shares of {sorted(both)} (listed as survivor and dropped)")
        if self.me not in survivors or self.me in dropped:
            raise ProtocolAbort("unmask must list this client among the survivors, never as dropped")
        for cid in (*survivors, *dropped):
            if cid != self.me and cid not in st.masked_with:
                where = "outside this client's neighbourhood" if cid not in st.peers else "whose share it does not hold"
                raise ProtocolAbort(f"refusing to reveal a share of {cid!r}: {where}")
        again = (set(survivors) & st.revealed_key) | (set(dropped) & st.revealed_self)
        if again:
            raise ProtocolAbort(
                f"refusing to reveal both shares of {sorted(again)} (the other kind was revealed before)"
            )
        if task.num_survivors < st.min_survivors:
            raise ProtocolAbort(f"only {task.num_survivors} survivors, fewer than the threshold {st.min_survivors}")
        if len(survivors) < st.share_threshold:
            raise ProtocolAbort(
                f"only {len(survivors)} of this client's neighbourhood survived; "
                f"the share threshold is {st.share_threshold}"
            )
        st.revealed_self.update(survivors)
        st.revealed_key.update(dropped)
        return spb.SecAggUnmask(
            self_mask_shares=[spb.SecAggRevealedShare(owner=c, share=st.held[c][0]) for c in survivors],
            key_shares=[spb.SecAggRevealedShare(owner=c, share=st.held[c][1]) for c in dropped],
        )
