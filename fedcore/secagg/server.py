"""Server side of SecAgg+: relays keys and sealed shares, checks thresholds, unmasks the sum.

The server sees public keys, sealed envelopes it cannot open, masked vectors (uniform-looking in
Z_2^bits) and, at unmask, self-mask shares of survivors and key shares of dropped clients. From
those it learns only the sum over U3 (the clients whose masked input arrived) of
``q(x_i) * w_i | w_i | clipped_i``.

Survivor sets: U1 advertised keys, U2 shared keys, U3 sent a masked input, U4 answered unmask.
After each stage the server keeps only clients whose neighbourhood can still meet the share
threshold (a fixpoint: excluding one may thin its neighbours'); clients excluded after sending a
masked input are treated as dropped (their input is discarded and their key shares asked for,
never their self-mask shares). Fewer than T survivors at any stage raises AggregationAborted.

Streaming: a masked input is added into the running sum in Z_2^bits as soon as it is accepted
and is then dropped; per client the server keeps only the SHA-256 of its vector (an identical
resubmission is ignored, a different one refused). The one exception is an input that the prune
at the close of MASKED_INPUT could still exclude: it is held until it cannot be excluded any more,
then added, or discarded at the close if it is excluded. On the complete graph (the default up to
n = 100 with the default fractions) nothing is ever held: the prune keeps every sender or none,
and keeping none aborts the round. On a SecAgg+ graph an input is added once the clients that
have sent theirs keep it in their own prune (the prune only grows with the set it starts from,
so it stays kept). At unmask the masks are stripped from the running sum
(:func:`fedcore.secagg.unmask.strip_masks`). An accepted masked input counts in U3 even if its
client is not among ``responded`` at the close (the round engine only reports accepted clients).
``record_inputs = True`` keeps a copy of every masked input in ``r.inputs`` (tests and the privacy
audit look at what the coordinator received; never on in the daemons).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from fedcore.common.aggregation import AggregateResult, AggregationContext, NoiseRecord, ServerMode
from fedcore.common.errors import (
    AggregationAborted,
    ConfigError,
    InvalidPayload,
    WrongStage,
)
from fedcore.common.params import decode_vector
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import auth, shamir, wire
from fedcore.secagg import quantize as qz
from fedcore.secagg.bounds import GraphPlan
from fedcore.secagg.graph import SEED_BYTES, masking_graph
from fedcore.secagg.prg import round_context
from fedcore.secagg.state import (
    ROUND_STAGES,
    SERVER_TRANSITIONS,
    SecAggSettings,
    SecAggStage,
    graph_plan,
    resolve_threshold,
    validate_settings,
)
from fedcore.secagg.stats_noise import stats_noise
from fedcore.secagg.unmask import recover_mask_key, recover_secret, strip_masks

log = logging.getLogger(__name__)
S = SecAggStage


@dataclass
class ServerRound:
    """Everything the server keeps for one aggregation (one begin())."""

    ctx: AggregationContext
    config: SecAggSettings
    context: bytes
    threshold: int  # T
    degree: int  # k (n - 1 = complete)
    share_threshold: int  # t_nb
    seed: bytes
    graph: dict[str, frozenset[str]]
    index: dict[str, int]
    quant: qz.QuantParams
    stage: SecAggStage = S.IDLE
    expected: dict[SecAggStage, frozenset[str]] = field(default_factory=dict)
    bodies: dict[SecAggStage, dict[str, bytes]] = field(  # each accepted body, for duplicates
        default_factory=lambda: {s: {} for s in ROUND_STAGES}
    )
    keys: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    signed: dict[str, dict[str, bytes]] = field(default_factory=dict)  # id -> signature, certificate_pem
    outbox: dict[str, dict[str, spb.SecAggSealedShare]] = field(default_factory=dict)  # sender -> receiver
    recorded: dict[str, np.ndarray] = field(default_factory=dict)  # copies, only with record_inputs
    record: bool = False  # SecAggServer.record_inputs at begin()
    total: np.ndarray | None = None  # running sum of folded masked inputs
    folded: set[str] = field(default_factory=set)  # clients whose input is in total
    held: dict[str, np.ndarray] = field(default_factory=dict)  # accepted, not yet safe from the prune
    requests: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    reveals: dict[str, spb.SecAggUnmask] = field(default_factory=dict)
    dropouts: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    result: AggregateResult | None = None
    noise: NoiseRecord | None = None  # distributed DP of this round (for the coordinator's accounting)
    plan: GraphPlan | None = None  # the bounds.GraphPlan k and t_nb were chosen under

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """Copies of the masked inputs the server received (only with ``SecAggServer.record_inputs``)."""
        if not self.record:
            raise RuntimeError(
                "SecAggServer streams masked inputs into a running sum and keeps none; set "
                "server.record_inputs = True before begin() to keep copies (tests, privacy audit)"
            )
        return self.recorded


class _RingChoice(TypedDict):
    """The ring settings :func:`_quantization` passes to every quantisation chooser."""

    bits: int | str
    frac_bits: int | str
    min_frac_bits: int
    length: int


def _quantization(
    config: SecAggSettings, ctx: AggregationContext, n: int, t: int
) -> tuple[qz.QuantParams, NoiseRecord | None]:
    """The round's fixed-point parameters; with distributed DP (training rounds) or statistics noise
    (round 0) the per-client noise scale follows the chosen f and the overflow bound includes its tails
    (:func:`fedcore.secagg.quantize.choose_noisy_params`, :mod:`fedcore.dp.secagg_dp`)."""
    kwargs: _RingChoice = {
        "bits": config.bits,
        "frac_bits": config.frac_bits,
        "min_frac_bits": config.min_frac_bits,
        "length": ctx.vector_length,
    }
    dp, length = config.dp, ctx.vector_length
    stats = stats_noise(config, length, t) if ctx.round == 0 else None
    if stats is not None:
        floor, sigma_c = config.noise_sigma, stats.client_sigma(t)
        quant = qz.choose_noisy_params(
            n, config.clip, ctx.max_weight, **kwargs, sigma_of_f=lambda f: max(floor, sigma_c * 2.0**f)
        )
        log.info(
            "secagg round 0: statistics noise sigma_total %.4g counts (sigma_c %.4g per client for T=%d), "
            "L2 sensitivity %.4g, epsilon %.4g at delta %.3g",
            stats.sigma_total,
            sigma_c,
            t,
            stats.sensitivity,
            stats.epsilon,
            stats.delta,
        )
        return quant, NoiseRecord(
            "stats",
            sigma_c,
            stats.sensitivity,
            t,
            n,
            length,
            sigma_total=stats.sigma_total,
            delta=stats.delta,
            epsilon=stats.epsilon,
        )
    if ctx.round >= 1 and dp is not None:
        from fedcore.dp.distributed import quantised_l2_sensitivity
        from fedcore.dp.secagg_dp import update_noise_sigma

        floor = config.noise_sigma
        # the fixed clipping bound: after the L2 clip no coordinate exceeds clip_norm, so the
        # quantiser clips nothing and no clip count needs to be released (see _decode)
        quant = qz.choose_noisy_params(
            n, dp.clip_norm, 1.0, **kwargs, sigma_of_f=lambda f: max(floor, update_noise_sigma(dp, f, t, length))
        )
        sensitivity = quantised_l2_sensitivity(dp.clip_norm, 2.0**quant.frac_bits, length, beta=None)
        return quant, NoiseRecord("update", quant.noise_sigma, sensitivity, t, n, length)
    return qz.choose_params(n, config.clip, ctx.max_weight, noise_sigma=config.noise_sigma, **kwargs), None


class SecAggServer(ServerMode):
    name = "secagg"
    #: keep a copy of every accepted masked input in ``r.inputs`` (tests, privacy audit); memory grows with n
    record_inputs: bool = False
    #: every problem of a [secagg] table at once (the coordinator's config loader calls it)
    validate_settings = staticmethod(validate_settings)
    #: the current aggregation; None before the first begin() and after a begin() that refused its round
    r: ServerRound | None = None

    def round_stages(self) -> tuple[Stage, ...]:
        return tuple(s.wire for s in ROUND_STAGES)

    def body_types(self, stage: Stage):
        return (wire.REPLY_TYPES[self._stage_of(stage)],)

    def begin(self, ctx: AggregationContext) -> None:
        self.r = None  # a refused round must not leave the previous round's result reachable
        config = SecAggSettings.from_mapping({**self.settings, **dict(ctx.settings)})
        roster = wire.check_ids(ctx.participants, "participants", ConfigError, sorted_=True)
        n = len(roster)
        try:
            t = resolve_threshold(config.threshold, n, config.min_clients)
            gp = graph_plan(config, n, t)
            quant, noise = _quantization(config, ctx, n, t)
        except ValueError as exc:
            raise AggregationAborted(f"secagg round {ctx.round} attempt {ctx.attempt}: {exc}") from None
        log.info("secagg round %d attempt %d: %s", ctx.round, ctx.attempt, gp.describe())
        seed = os.urandom(SEED_BYTES)
        self.r = r = ServerRound(
            ctx,
            config,
            round_context(self.federation_id, ctx.round, ctx.attempt),
            t,
            gp.k,
            gp.t,
            seed,
            masking_graph(roster, gp.k, seed),
            {cid: i + 1 for i, cid in enumerate(roster)},
            quant,
            noise=noise,
            plan=gp,
            record=self.record_inputs,
        )
        self._move(S.ADVERTISE_KEYS)
        r.expected[S.ADVERTISE_KEYS] = frozenset(roster)
        self._probe = X25519PrivateKey.generate()

    # ---- driving --------------------------------------------------------------------------------

    def _stage_of(self, stage: Stage | int) -> SecAggStage:
        try:
            return SecAggStage.from_wire(stage)
        except ValueError as exc:
            raise WrongStage(f"secagg: {exc}") from None

    def _round(self) -> ServerRound:
        """The current aggregation; WrongStage when there is none (no begin(), or begin() refused it)."""
        if self.r is None:
            raise WrongStage("secagg: no aggregation in progress (begin() was not called or refused the round)")
        return self.r

    def _current(self, stage: Stage | int) -> tuple[SecAggStage, ServerRound]:
        """The SecAgg stage of ``stage`` and the round, which must be at that stage (else WrongStage)."""
        s = self._stage_of(stage)
        r = self.r
        if r is None or r.stage != s:
            now = r.stage if r is not None else "no round"
            raise WrongStage(f"secagg: stage {s} is not the current one ({now})")
        return s, r

    def _move(self, new: SecAggStage) -> None:
        r = self._round()
        if (r.stage, new) not in SERVER_TRANSITIONS:
            raise WrongStage(f"secagg: illegal server stage change {r.stage} -> {new}")
        r.stage = new

    def expected(self, stage: Stage) -> frozenset[str]:
        s = self._stage_of(stage)
        return self.r.expected.get(s, frozenset()) if self.r is not None else frozenset()

    def task(self, stage: Stage, client_id: str):
        s, r = self._current(stage)
        if client_id not in r.expected[s]:
            raise WrongStage(f"secagg: client {client_id!r} is not expected at stage {s}")
        head = {"round": r.ctx.round, "attempt": r.ctx.attempt}
        if s == S.ADVERTISE_KEYS:
            return spb.SecAggAdvertiseKeysTask(**head, participants=r.ctx.participants)
        if s == S.SHARE_KEYS:
            peers = wire.sorted_by(r.index, r.graph[client_id] & r.expected[S.SHARE_KEYS])
            return spb.SecAggShareKeysTask(
                **head,
                participants=r.ctx.participants,
                graph_seed=r.seed,
                degree=r.degree,
                min_survivors=r.threshold,
                neighbours=[
                    spb.SecAggPeerKeys(
                        client_id=p,
                        channel_public_key=r.keys[p][0],
                        mask_public_key=r.keys[p][1],
                        **r.signed.get(p, {}),
                    )
                    for p in peers
                ],
            )
        if s == S.MASKED_INPUT:
            q = r.quant
            senders = wire.sorted_by(r.index, r.graph[client_id] & r.expected[S.MASKED_INPUT])
            return spb.SecAggMaskedInputTask(
                **head,
                quantization=spb.SecAggQuantization(
                    bits=q.bits,
                    frac_bits=q.frac_bits,
                    clip=q.clip,
                    max_weight=q.max_weight,
                    noise_sigma=q.noise_sigma,
                    num_clients=len(r.index),
                ),
                shares=[r.outbox[j][client_id] for j in senders],
            )
        survivors, dropped = r.requests[client_id]
        return spb.SecAggUnmaskTask(
            **head, survivors=survivors, dropped=dropped, num_survivors=len(r.expected[S.UNMASK])
        )

    def accept(self, stage: Stage, client_id: str, body: Any) -> None:
        s, r = self._current(stage)
        if client_id not in r.expected[s]:
            raise WrongStage(f"secagg: client {client_id!r} is not expected at stage {s}")
        msg = wire.unpack(body, wire.REPLY_TYPES[s], InvalidPayload, f"{s} submission from {client_id!r}")
        # duplicate detection by the body's bytes (masked input: by the SHA-256 of the decoded vector)
        if s == S.MASKED_INPUT:
            vec = self._decode_input(client_id, msg)
            ident = hashlib.sha256(vec.tobytes()).digest()
        else:
            ident = msg.SerializeToString(deterministic=True)
        if client_id in r.bodies[s]:
            if r.bodies[s][client_id] == ident:
                return  # an identical resubmission changes nothing
            raise InvalidPayload(f"{s}: {client_id!r} already submitted a different body; refused")
        if s == S.MASKED_INPUT:
            self._accept_input(client_id, vec)
            r.bodies[s][client_id] = ident
            return
        {S.ADVERTISE_KEYS: self._accept_keys, S.SHARE_KEYS: self._accept_shares, S.UNMASK: self._accept_unmask}[s](
            client_id, msg
        )
        r.bodies[s][client_id] = ident

    def _accept_keys(self, cid: str, msg: spb.SecAggAdvertiseKeys) -> None:
        keys = (msg.channel_public_key, msg.mask_public_key)
        if any(len(k) != wire.KEY_BYTES for k in keys) or keys[0] == keys[1]:
            raise InvalidPayload(
                f"advertise-keys from {cid!r}: expected two distinct 32-byte X25519 public keys "
                f"(got {len(keys[0])} and {len(keys[1])} bytes)"
            )
        r = self._round()
        taken = {k for other, pair in r.keys.items() if other != cid for k in pair}
        if set(keys) & taken:
            raise InvalidPayload(f"advertise-keys from {cid!r}: a public key already advertised by another client")
        for k in keys:  # a low-order point would make every peer's key agreement fail
            try:
                self._probe.exchange(X25519PublicKey.from_public_bytes(k))
            except ValueError:
                raise InvalidPayload(f"advertise-keys from {cid!r}: not a usable X25519 public key") from None
        if auth.WIRE_SUPPORT and (msg.signature or msg.certificate_pem):  # relayed; the clients verify them
            if not (
                0 < len(msg.signature) <= auth.MAX_SIGNATURE_BYTES
                and 0 < len(msg.certificate_pem) <= auth.MAX_CERT_BYTES
            ):
                raise InvalidPayload(
                    f"advertise-keys from {cid!r}: expected a signature of 1..{auth.MAX_SIGNATURE_BYTES} "
                    f"bytes and a certificate of 1..{auth.MAX_CERT_BYTES} (got {len(msg.signature)}, "
                    f"{len(msg.certificate_pem)})"
                )
            r.signed[cid] = {"signature": msg.signature, "certificate_pem": msg.certificate_pem}
        r.keys[cid] = keys

    def _accept_shares(self, cid: str, msg: spb.SecAggShareKeys) -> None:
        r = self._round()
        want = r.graph[cid] & r.expected[S.SHARE_KEYS]
        got = [env.receiver for env in msg.shares]
        if len(got) != len(set(got)) or set(got) != want:
            raise InvalidPayload(
                f"share-keys from {cid!r}: expected one share for each of {sorted(want)} (got {sorted(got)})"
            )
        for env in msg.shares:
            if env.sender != cid or not wire.envelope_plausible(env.sealed):
                raise InvalidPayload(
                    f"share-keys from {cid!r}: the envelope for {env.receiver!r} is malformed "
                    f"(sender {env.sender!r}, {len(env.sealed)} bytes)"
                )
        r.outbox[cid] = {env.receiver: env for env in msg.shares}

    def _decode_input(self, cid: str, msg: spb.SecAggMaskedInput) -> np.ndarray:
        if not msg.HasField("masked"):
            raise InvalidPayload(f"masked input from {cid!r} has no vector")
        r = self._round()
        return decode_vector(
            msg.masked,
            dtype=qz.RING_DTYPES[r.quant.bits].name,
            length=r.ctx.vector_length + 2,
            what=f"masked input from {cid!r}",
        )

    def _accept_input(self, cid: str, vec: np.ndarray) -> None:
        r = self._round()
        if r.record:
            r.recorded[cid] = vec.copy()
        r.held[cid] = vec
        arrived = frozenset(r.held) | frozenset(r.folded)
        safe = arrived if self._complete() else self._kept(arrived)
        for c in sorted(safe & frozenset(r.held)):
            self._fold(c)

    def _complete(self) -> bool:
        """The masking graph is complete: the prune keeps every sender or none (and none aborts)."""
        r = self._round()
        return r.degree >= len(r.index) - 1

    def _kept(self, alive: frozenset[str]) -> frozenset[str]:
        r = self._round()
        return _prune(alive, lambda i, a: len(r.graph[i] & a) + 1, r.share_threshold)

    def _fold(self, cid: str) -> None:
        """Add a held masked input into the running sum (mod 2^bits: unsigned wrap-around) and drop it."""
        r = self._round()
        vec = r.held.pop(cid)
        if r.total is None:
            r.total = np.zeros(vec.shape, vec.dtype)
        np.add(r.total, vec, out=r.total)
        r.folded.add(cid)

    def _free(self) -> None:
        r = self._round()
        r.recorded, r.reveals, r.outbox, r.held, r.total = {}, {}, {}, {}, None

    def _accept_unmask(self, cid: str, msg: spb.SecAggUnmask) -> None:
        r = self._round()
        survivors, dropped = r.requests[cid]
        x = r.index[cid]
        for kind, items, want in (("self-mask", msg.self_mask_shares, survivors), ("key", msg.key_shares, dropped)):
            owners = [s.owner for s in items]
            if len(owners) != len(set(owners)) or set(owners) != set(want):
                raise InvalidPayload(
                    f"unmask from {cid!r}: expected {kind} shares of {sorted(want)} (got {sorted(owners)})"
                )
            for item in items:
                try:
                    ok = shamir.share_index(item.share) == x
                except ValueError:
                    ok = False
                if not ok:
                    raise InvalidPayload(
                        f"unmask from {cid!r}: the {kind} share of {item.owner!r} is not a "
                        f"{shamir.SHARE_BYTES}-byte share for holder {x}"
                    )
        r.reveals[cid] = msg

    # ---- closing stages -------------------------------------------------------------------------

    def close_stage(self, stage: Stage, responded: frozenset[str]) -> None:
        s, r = self._current(stage)
        if s == S.MASKED_INPUT:  # an input in the running sum cannot be taken back out: it counts
            got = r.expected[s] & frozenset(r.bodies[s])
            if got - responded:
                log.info(
                    "secagg round %d: masked inputs of %s were accepted before they dropped; they count",
                    r.ctx.round,
                    sorted(got - responded),
                )
        else:
            got = r.expected[s] & frozenset(r.bodies[s]) & frozenset(responded)
        r.dropouts[str(s)] = sorted(r.expected[s] - got)
        try:
            self._require(s, got)
            if s == S.UNMASK:
                r.result = self._finish(got)
                self._move(S.DONE)
                self._free()  # free the round's bulk now
                return
            kept = self._kept(got)
            r.excluded[str(s)] = sorted(got - kept)
            self._require(s, kept, excluded=True)
            if s == S.MASKED_INPUT:
                self._settle_inputs(kept)
        except AggregationAborted:
            r.stage = S.ABORTED
            self._free()
            raise
        nxt = ROUND_STAGES[ROUND_STAGES.index(s) + 1]
        self._move(nxt)
        r.expected[nxt] = kept
        if nxt == S.UNMASK:
            if r.record:
                r.recorded = {cid: r.recorded[cid] for cid in kept}
            shared = r.expected[S.MASKED_INPUT]
            for i in kept:
                near = r.graph[i] & shared
                r.requests[i] = (
                    tuple(wire.sorted_by(r.index, (near & kept) | {i})),
                    tuple(wire.sorted_by(r.index, near - kept)),
                )

    def _settle_inputs(self, kept: frozenset[str]) -> None:
        """At the close of MASKED_INPUT: add the held inputs that were kept, discard the excluded."""
        r = self._round()
        if not r.folded <= kept:  # the prune only grows with its starting set: cannot happen
            raise AggregationAborted(
                f"secagg round {r.ctx.round}: inputs of {sorted(r.folded - kept)} are in the "
                f"running sum but were excluded; aborting rather than returning a wrong sum"
            )
        for cid in sorted(set(r.held)):
            if cid in kept:
                self._fold(cid)
            else:
                del r.held[cid]
        if r.total is None or r.folded != kept:
            raise AggregationAborted(
                f"secagg round {r.ctx.round}: the running sum holds {len(r.folded)} inputs, {len(kept)} were kept"
            )

    def _require(self, s: SecAggStage, alive: frozenset[str], excluded: bool = False) -> None:
        r = self._round()
        if len(alive) < r.threshold:
            why = (
                f" after excluding clients whose neighbourhood fell below the share threshold {r.share_threshold}"
                if excluded
                else ""
            )
            raise AggregationAborted(
                f"secagg round {r.ctx.round} attempt {r.ctx.attempt}: only {len(alive)} of "
                f"{len(r.expected[s])} clients completed {s}{why}; the threshold is {r.threshold}"
            )

    def _finish(self, answered: frozenset[str]) -> AggregateResult:
        r = self._round()
        survivors, shared = r.expected[S.UNMASK], r.expected[S.MASKED_INPUT]
        b_shares: dict[str, list[bytes]] = {c: [] for c in survivors}
        k_shares: dict[str, list[bytes]] = {c: [] for c in shared - survivors}
        for cid in sorted(answered):
            msg = r.reveals[cid]
            for item in msg.self_mask_shares:
                b_shares[item.owner].append(item.share)
            for item in msg.key_shares:
                k_shares[item.owner].append(item.share)
        t = r.share_threshold
        seeds = {c: recover_secret(c, "self-mask", b_shares[c], t) for c in survivors}
        dropped = {c: recover_mask_key(c, k_shares[c], t, r.keys[c][1]) for c in k_shares if r.graph[c] & survivors}
        total, r.total = r.total, None
        if total is None:  # _settle_inputs refuses to open UNMASK without a running sum
            raise AggregationAborted(
                f"secagg round {r.ctx.round}: unmask reached with no masked input in the running sum"
            )
        strip_masks(total, survivors, seeds, dropped, {c: r.keys[c][1] for c in r.keys}, r.graph, r.context)
        return self._decode(total, len(survivors))

    def _decode(self, total: np.ndarray, count: int) -> AggregateResult:
        r = self._round()
        q = r.quant
        length = r.ctx.vector_length
        weight, clipped = int(total[length]), int(total[length + 1])
        if not (count <= weight <= count * q.max_weight and 0 <= clipped <= count * length):
            raise AggregationAborted(
                f"secagg round {r.ctx.round}: the unmasked weight ({weight}) or clip count "
                f"({clipped}) is out of range for {count} inputs; shares or inputs are corrupt"
            )
        if q.noise_sigma > 0 and clipped:
            raise AggregationAborted(
                f"secagg round {r.ctx.round}: a noisy round releases no clip count, but the "
                f"unmasked clip-count slot is {clipped}; some client does not follow the protocol"
            )
        weighted = qz.dequantize(qz.from_ring(total[:length], q.bits), q.frac_bits)
        notes = {
            "mode": "secagg",
            "private": True,
            "bits": q.bits,
            "frac_bits": q.frac_bits,
            "clip": q.clip,
            "clipped": clipped,
            "clip_count_released": q.noise_sigma == 0,
            "max_weight": q.max_weight,
            "noise_sigma": q.noise_sigma,
            "threshold": r.threshold,
            "degree": r.degree,
            "share_threshold": r.share_threshold,
            "corrupt_fraction": r.config.corrupt_fraction,
            "dropout_fraction": r.config.dropout_fraction,
            "graph_failure_bound": r.plan.bound if r.plan is not None else None,
            "participants": len(r.index),
            "dropouts": dict(r.dropouts),
            "excluded": dict(r.excluded),
        }
        noise = replace(r.noise, survivors=count) if r.noise is not None else None
        if clipped:
            log.warning("secagg round %d: %d values were clipped to +-%g", r.ctx.round, clipped, q.clip)
        return AggregateResult(weighted, float(weight), count, notes, noise)

    def result(self) -> AggregateResult:
        r = self.r
        if r is None or r.result is None:
            state = r.stage if r is not None else "no round"
            raise AggregationAborted(f"secagg: no result ({state})")
        return r.result


def _prune(alive: Iterable[str], degree_of: Callable[[str, frozenset[str]], int], need: int) -> frozenset[str]:
    """The largest subset in which every member keeps at least ``need`` holders (a fixpoint)."""
    kept = frozenset(alive)
    while True:
        thin = frozenset(i for i in kept if degree_of(i, kept) < need)
        if not thin:
            return kept
        kept -= thin
