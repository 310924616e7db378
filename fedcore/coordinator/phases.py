"""One function per phase of the round engine (see :mod:`fedcore.coordinator.state`).

Every function here runs under the engine's lock, from :meth:`RoundEngine.tick`. ``begin_*``
opens a phase, ``close_*`` ends its stage (all expected clients answered, the rest are dead, or
the deadline passed), :func:`fail_attempt` retries the current work as a new attempt, and
:func:`abort` / :func:`finish` end the run.

Release order (the guarantee of :mod:`fedcore.coordinator.release`): a round's aggregate is
charged to the coordinator-side DP accountants, applied, and checkpointed -- fsync'd and renamed
atomically, with the accountants' state -- in one tick, before the EVALUATE stage or the next
TRAIN stage can serve the new model; the evaluation metrics are written into that checkpoint
afterwards. A mode stage in :data:`~fedcore.coordinator.release.RELEASE_STAGES` opens only after
the release journal has recorded it.

Two ways to end early besides :func:`abort`: a TRAIN or STATS refusal that says the client's
configuration or data is broken (:func:`fedcore.coordinator.refusals.fatal_refusal`) aborts at
once with the client's message instead of retrying; and a stop request (``fedcore stop``, set as
``State.stop_request`` by the daemon, see :func:`request_stop`) ends the run with status "stopped"
at the next boundary between works -- after the round in flight completed (or failed), never
inside one -- so a restart resumes from that round's checkpoint.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from fedcore.common.aggregation import AggregateResult, AggregationContext
from fedcore.common.errors import AggregationAborted
from fedcore.common.params import encode_model
from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import Checkpoint
from fedcore.coordinator.records import jsonable, summarize
from fedcore.coordinator.refusals import fatal_reason
from fedcore.coordinator.release import RELEASE_STAGES
from fedcore.coordinator.reports import pooled_metrics
from fedcore.coordinator.state import TRANSITIONS, IllegalTransition, ModelBlob, Phase, RoundTally, StageRun, transition
from fedcore.transport.chunks import sha256

if TYPE_CHECKING:
    from fedcore.coordinator.engine import RoundEngine

log = logging.getLogger(__name__)


# -- dispatch ----------------------------------------------------------------------------------
def advance(eng: RoundEngine, now: float) -> bool:
    """Take at most one step; True when the phase or stage changed."""
    st = eng.state
    if st.phase == Phase.JOINING:
        return tick_joining(eng, now)
    if st.stage is None:
        return False
    if st.phase in (Phase.TRAIN, Phase.STATS):
        fatal = fatal_reason(_refusals(eng), st.round)  # a broken client: at once, not after the others
        if fatal:
            abort(eng, fatal)
            return True
    if st.stage.pending and now < st.stage.deadline:
        return False
    if now >= st.stage.deadline and st.stage.pending:
        log.warning(
            "round %d stage %s: deadline passed; no answer from %s",
            st.round,
            st.stage.stage.name,
            ", ".join(sorted(st.stage.pending)),
        )
    close = {
        Phase.SETUP: close_setup_stage,
        Phase.STATS: close_stats,
        Phase.STATS_AGG: close_mode_stage,
        Phase.TRAIN: close_train,
        Phase.AGGREGATE: close_mode_stage,
        Phase.EVALUATE: close_evaluate,
    }
    close[st.phase](eng, now)
    return True


def next_wake(eng: RoundEngine, now: float) -> float:
    st = eng.state
    times = [eng.registry.next_expiry() or math.inf]
    if st.stage is not None:
        times.append(st.stage.deadline)
    if st.phase == Phase.JOINING:
        times.append(st.waiting_since + eng.cfg.deadlines.join)
    return max(0.0, min(times) - now)


# -- helpers -----------------------------------------------------------------------------------
def _work_needed(eng: RoundEngine) -> Phase:
    st = eng.state
    if st.pending_eval:
        return Phase.EVALUATE
    if st.next_round > eng.cfg.federation.rounds and not st.needs_stats:
        return Phase.DONE  # (no set-up just to end: a restart after the last round's checkpoint)
    if not st.setup_done and eng.mode.setup_stages():
        return Phase.SETUP
    if st.needs_stats:
        return Phase.STATS
    return Phase.TRAIN


def _pool(eng: RoundEngine, work: Phase) -> list[str]:
    members = eng.state.setup_members if (work in (Phase.STATS, Phase.TRAIN) and eng.mode.setup_stages()) else None
    return eng.registry.eligible(members)


def _enter(eng: RoundEngine, round_: int, now: float) -> None:
    """Make ``round_`` the current wire round; a new round gets its first attempt number."""
    st = eng.state
    if st.round != round_:
        st.round, st.retries = round_, 0
        st.attempt = eng.records.next_attempt(round_)
        st.tally = RoundTally(started=now)
    elif not st.tally.started:
        st.tally.started = now
    eng.records.save_attempt(round_, st.attempt)
    st.submissions.clear()
    st.train_reports.clear()
    st.eval_reports.clear()
    eng.state.started_work = True


def _open(eng: RoundEngine, stage: Stage, expected, timeout: float, now: float) -> None:
    st = eng.state
    alive = set(eng.registry.alive())
    expected = frozenset(expected)
    st.stage = StageRun(stage, expected, now + timeout, dropped=set(expected - alive))
    log.info(
        "round %d attempt %d: stage %s open for %s (deadline %.0f s)",
        st.round,
        st.attempt,
        stage.name,
        ", ".join(sorted(expected)) or "nobody",
        timeout,
    )


def _ensure_blob(eng: RoundEngine) -> None:
    st = eng.state
    if st.blob is None or st.blob.round != st.model_round:
        payload = encode_model(st.params, st.spec, st.model_round).SerializeToString()
        st.blob = ModelBlob(st.model_round, f"model/{st.model_round}", payload, sha256(payload))


def request_stop(eng: RoundEngine, reason: str) -> None:
    """Ask the engine to end after the work in flight (call under ``eng.lock``; the next tick acts)."""
    if not eng.state.stop_request:
        log.warning("stop requested (%s): the federation ends after the current round", reason)
    eng.state.stop_request = reason


def stop_requested(eng: RoundEngine) -> str:
    return eng.state.stop_request


def next_work(eng: RoundEngine, now: float) -> None:
    """Start whatever comes next, or wait in JOINING when too few eligible clients are alive."""
    st = eng.state
    work = _work_needed(eng)
    if work == Phase.DONE:
        return finish(eng, f"all {eng.cfg.federation.rounds} rounds completed")
    if stop_requested(eng):
        return stop(eng)
    pool = _pool(eng, work)
    if len(pool) < eng.cfg.federation.min_clients:
        if st.phase != Phase.JOINING:
            st.waiting_since = now
            log.info("waiting for clients: %d eligible alive, %d needed", len(pool), eng.cfg.federation.min_clients)
        transition(st, Phase.JOINING)
        return
    {Phase.SETUP: begin_setup, Phase.STATS: begin_stats, Phase.TRAIN: begin_train, Phase.EVALUATE: begin_evaluate}[
        work
    ](eng, pool, now)


# -- phases ------------------------------------------------------------------------------------
def tick_joining(eng: RoundEngine, now: float) -> bool:
    st = eng.state
    if stop_requested(eng):
        next_work(eng, now)  # finishes (all rounds done) or stops
        return True
    pool = _pool(eng, _work_needed(eng))
    if (len(pool) >= eng.cfg.federation.min_clients and _gathered(eng, pool, now)) or _work_needed(eng) == Phase.DONE:
        next_work(eng, now)
        return True
    if now - st.waiting_since < eng.cfg.deadlines.join:
        return False
    need = eng.cfg.federation.min_clients
    excluded = eng.registry.excluded()
    detail = f"{len(pool)} eligible of {len(eng.registry.clients)} joined, {need} needed" + (
        f"; excluded for exhausted privacy budgets: {', '.join(sorted(excluded))}" if excluded else ""
    )
    st.waiting_since = now
    if not eng.state.started_work:
        log.warning("still waiting for clients after %.0f s: %s", eng.cfg.deadlines.join, detail)
        return False
    fail_attempt(eng, now, f"too few clients within the join deadline ({detail})")
    return True


def _gathered(eng: RoundEngine, pool: list[str], now: float) -> bool:
    """Before a run's first work, wait up to the join deadline for ``[federation] min_available``
    clients, so that a client joining a moment after the first ``min_clients`` is not left out of
    the once-per-run set-up (CKKS keys) or round 0."""
    return (
        eng.state.started_work
        or len(pool) >= eng.cfg.federation.min_available
        or now - eng.state.waiting_since >= eng.cfg.deadlines.join
    )


def begin_setup(eng: RoundEngine, pool: list[str], now: float) -> None:
    st = eng.state
    _enter(eng, 0, now)
    st.participants = tuple(pool)
    st.setup_members = frozenset(pool)
    ctx = AggregationContext(eng.cfg.federation.id, 0, st.attempt, tuple(pool), st.spec.size, eng.cfg.mode_settings)
    eng.mode.begin_setup(ctx)
    st.mode_stages, st.stage_index = tuple(eng.mode.setup_stages()), 0
    transition(st, Phase.SETUP)
    _open(eng, st.mode_stages[0], eng.mode.expected(st.mode_stages[0]), eng.cfg.deadlines.stage, now)


def close_setup_stage(eng: RoundEngine, now: float) -> None:
    st = eng.state
    run = st.open_stage()
    st.setup_members = st.setup_members - (run.expected - run.responded)
    try:
        eng.mode.close_stage(run.stage, frozenset(run.responded))
    except AggregationAborted as exc:
        return fail_attempt(eng, now, f"set-up stage {run.stage.name}: {exc}")
    st.stage_index += 1
    if st.stage_index < len(st.mode_stages):
        stage = st.mode_stages[st.stage_index]
        return _open(eng, stage, eng.mode.expected(stage), eng.cfg.deadlines.stage, now)
    if not eng.mode.setup_done():
        return fail_attempt(eng, now, "the mode's set-up did not complete")
    st.setup_done = True
    log.info("set-up of %s done with %s", eng.mode.name, ", ".join(sorted(st.setup_members)))
    st.stage = None
    next_work(eng, now)


def begin_stats(eng: RoundEngine, pool: list[str], now: float) -> None:
    st = eng.state
    _enter(eng, 0, now)
    transition(st, Phase.STATS)
    _open(eng, Stage.STATS, pool, eng.cfg.deadlines.train, now)


def _refusals(eng: RoundEngine) -> dict[str, str]:
    return {c: r.refusal or "(no reason)" for c, r in sorted(eng.state.train_reports.items()) if not r.ready}


def close_stats(eng: RoundEngine, now: float) -> None:
    st = eng.state
    refused = _refusals(eng)
    fatal = fatal_reason(refused, st.round)
    if fatal:
        return abort(eng, fatal)
    ready = sorted(c for c, r in st.train_reports.items() if r.ready)
    need = eng.cfg.federation.min_clients
    if len(ready) < need:
        missing = sorted(set(st.stage.expected) - set(st.train_reports)) if st.stage else []
        return fail_attempt(
            eng, now, f"only {len(ready)} clients reported statistics ready ({need} needed)" + _why(refused, missing)
        )
    if eng.stats_spec is None:
        raise IllegalTransition("statistics were collected for a workload that states no statistics_spec")
    length, clip = eng.stats_spec
    settings = {**eng.cfg.mode_settings, "clip": float(clip)}
    _begin_mode(eng, Phase.STATS_AGG, ready, int(length), settings, 1.0, now)


def _begin_mode(eng, phase, ready, length, settings, max_weight, now) -> None:
    st = eng.state
    st.participants = tuple(ready)
    kwargs = {} if max_weight is None else {"max_weight": max_weight}
    ctx = AggregationContext(eng.cfg.federation.id, st.round, st.attempt, tuple(ready), length, settings, **kwargs)
    try:
        eng.mode.begin(ctx)
    except AggregationAborted as exc:  # e.g. fewer participants than the mode's threshold: a failed attempt
        return fail_attempt(eng, now, f"{eng.mode.name} could not begin round {st.round}: {exc}")
    st.mode_stages, st.stage_index = tuple(eng.mode.round_stages()), 0
    transition(st, phase)
    _open(eng, st.mode_stages[0], eng.mode.expected(st.mode_stages[0]), eng.cfg.deadlines.stage, now)


def close_mode_stage(eng: RoundEngine, now: float) -> None:
    st = eng.state
    run = st.open_stage()
    try:
        eng.mode.close_stage(run.stage, frozenset(run.responded))
        st.stage_index += 1
        if st.stage_index < len(st.mode_stages):
            stage = st.mode_stages[st.stage_index]
            expected = eng.mode.expected(stage)
            if stage in RELEASE_STAGES:
                refused = eng.releases.admit(st.round, st.attempt, stage, frozenset(expected))
                if refused:
                    return fail_attempt(eng, now, refused)
                eng.fault("release journaled")
            return _open(eng, stage, expected, eng.cfg.deadlines.stage, now)
        result = eng.mode.result()
    except AggregationAborted as exc:
        return fail_attempt(eng, now, f"{eng.mode.name} stage {run.stage.name}: {exc}")
    if st.phase == Phase.STATS_AGG:
        finish_stats(eng, result, now)
    else:
        finish_aggregate(eng, result, now)


def finish_stats(eng: RoundEngine, result: AggregateResult, now: float) -> None:
    st = eng.state
    st.statistics = np.asarray(result.weighted_sum, np.float64).copy()
    st.needs_stats = False
    st.round0 = {
        "seconds": now - st.tally.started,
        "bytes_up": st.tally.bytes_up,
        "bytes_down": st.tally.bytes_down,
        "contributors": result.num_contributors,
    }
    eng.client_dp.stats_release(result)
    _checkpoint(eng, 0)
    log.info("round 0: statistics of %d clients summed (%d values)", result.num_contributors, st.statistics.size)
    st.retries = 0
    next_work(eng, now)


def begin_train(eng: RoundEngine, pool: list[str], now: float) -> None:
    st = eng.state
    fed = eng.cfg.federation
    _enter(eng, st.next_round, now)
    # the share rounds up, in exact decimal arithmetic (0.28 * 25 is 7.000000000000001 in floats)
    k = min(len(pool), max(fed.min_clients, math.ceil(Fraction(repr(fed.fraction)) * len(pool))))
    rng = np.random.default_rng([fed.seed, st.round, st.attempt])
    st.selected = tuple(sorted(rng.choice(pool, size=k, replace=False).tolist()))
    excluded = eng.registry.excluded()
    log.info(
        "round %d/%d attempt %d: selected %s%s",
        st.round,
        fed.rounds,
        st.attempt,
        ", ".join(st.selected),
        "; excluded (privacy budget exhausted): " + ", ".join(f"{c} ({why})" for c, why in sorted(excluded.items()))
        if excluded
        else "",
    )
    _ensure_blob(eng)
    transition(st, Phase.TRAIN)
    _open(eng, Stage.TRAIN, st.selected, eng.cfg.deadlines.train, now)


def close_train(eng: RoundEngine, now: float) -> None:
    st = eng.state
    for cid, rep in sorted(st.train_reports.items()):
        if not rep.ready:
            log.warning("round %d: %s refused to train: %s", st.round, cid, rep.refusal or "(no reason)")
            if rep.privacy.exhausted and cid in eng.registry.clients:
                reason = rep.refusal or "privacy budget exhausted"
                eng.registry.clients[cid].exhausted = reason
                eng.state.exhausted[cid] = reason
    refused = _refusals(eng)
    fatal = fatal_reason(refused, st.round)
    if fatal:
        return abort(eng, fatal)
    ready = sorted(c for c, r in st.train_reports.items() if r.ready)
    need = eng.cfg.federation.min_clients
    if len(ready) < need:
        missing = sorted(set(st.selected) - set(st.train_reports))
        return fail_attempt(
            eng,
            now,
            f"only {len(ready)} of {len(st.selected)} selected clients reported an update "
            f"({need} needed)" + _why(refused, missing),
        )
    _begin_mode(eng, Phase.AGGREGATE, ready, st.spec.size, eng.cfg.mode_settings, eng.client_dp.max_weight(), now)


def _why(refused: dict[str, str], missing: list[str]) -> str:
    parts = [f"refused by {c}: {r}" for c, r in refused.items()]
    if missing:
        parts.append(f"no answer from {', '.join(missing)}")
    return "; " + "; ".join(parts) if parts else ""


def finish_aggregate(eng: RoundEngine, result: AggregateResult, now: float) -> None:
    """Charge, apply and checkpoint round ``st.round``'s aggregate, then (only then) serve it."""
    st = eng.state
    eng.fault("aggregated")
    try:
        mean, st_dp = eng.client_dp.release(result, len(st.selected))  # DP-FedAvg noise, client-level accounts
        eng.fault("charged")
        new = np.asarray(eng.strategy.apply(st.params, mean, st.round), np.float32)
    except ValueError as exc:
        return fail_attempt(eng, now, f"cannot apply the aggregate: {exc}")
    eng.state.round_dp = st_dp
    if new.shape != st.params.shape or not np.isfinite(new).all():
        return fail_attempt(eng, now, "the strategy produced a model with the wrong shape or non-finite values")
    st.params, st.model_round = new, st.round
    st.contributors, st.aggregate_notes = result.num_contributors, dict(result.notes)
    every, rounds = eng.cfg.federation.evaluate_every, eng.cfg.federation.rounds
    evaluate = st.round == rounds or bool(every and st.round % every == 0)
    line = _round_line(eng, now)
    eng.state.history.append(line)
    st.pending_eval = st.round if evaluate else 0
    eng.fault("applied")
    _checkpoint(eng, st.round)  # durable before anything derived from the aggregate leaves
    eng.fault("checkpointed")
    st.next_round, st.retries = st.round + 1, 0
    if evaluate:
        return _open_evaluate(eng, now)
    eng.records.append_metrics(line)
    _log_round(eng, line, {})
    st.tally = RoundTally()
    next_work(eng, now)


def begin_evaluate(eng: RoundEngine, pool: list[str], now: float) -> None:
    """After a restart: evaluate the checkpointed model of ``pending_eval`` (a new attempt)."""
    st = eng.state
    _enter(eng, st.pending_eval, now)
    log.info("round %d attempt %d: evaluating the checkpointed model of round %d", st.round, st.attempt, st.round)
    _open_evaluate(eng, now)


def _open_evaluate(eng: RoundEngine, now: float) -> None:
    st = eng.state
    _ensure_blob(eng)
    st.eval_mark = (now, st.tally.bytes_up, st.tally.bytes_down)
    transition(st, Phase.EVALUATE)
    _open(eng, Stage.EVALUATE, eng.registry.alive(), eng.cfg.deadlines.evaluate, now)


def close_evaluate(eng: RoundEngine, now: float) -> None:
    st = eng.state
    pooled = pooled_metrics(st.eval_reports)
    if not pooled:
        log.warning("round %d: no evaluation reports arrived", st.round)
    line = eng.state.history[-1]
    if line.get("round") != st.round:  # a bug: the checkpoint's last round is the one evaluated
        return abort(eng, f"evaluated round {st.round} but the last recorded round is {line.get('round')}")
    since, up, down = st.eval_mark or (now, st.tally.bytes_up, st.tally.bytes_down)
    line.update(
        jsonable(
            {
                "eval": pooled,
                "seconds": round(line.get("seconds", 0.0) + now - since, 4),
                "bytes_up": line.get("bytes_up", 0) + st.tally.bytes_up - up,
                "bytes_down": line.get("bytes_down", 0) + st.tally.bytes_down - down,
            }
        )
    )
    st.pending_eval = 0
    eng.fault("evaluated")
    _checkpoint(eng, st.round)
    eng.records.sync_metrics(eng.state.history)
    _log_round(eng, line, pooled)
    st.retries = 0
    st.tally = RoundTally()
    next_work(eng, now)


def _round_line(eng: RoundEngine, now: float) -> dict:
    """Round ``st.round``'s metrics.jsonl line, without the evaluation (added by close_evaluate)."""
    st = eng.state
    privacy = {
        c: {k: p[k] for k in ("epsilon", "delta", "accountant", "steps", "noise_multiplier", "exhausted")}
        for c, p in sorted(eng.state.privacy.items())
        if p.get("enabled")
    }
    line = jsonable(
        {
            "round": st.round,
            "attempt": st.attempt,
            "clients": list(st.selected),
            "contributors": st.contributors,
            "excluded": sorted(eng.registry.excluded()),
            "train": {c: dict(r.metrics) for c, r in sorted(st.train_reports.items()) if r.ready},
            "refused": {c: r.refusal for c, r in sorted(st.train_reports.items()) if not r.ready},
            "eval": {},
            # sample-level DP-SGD states as fedcore.dp.report reads them; left out when no client runs DP-SGD
            **({"privacy": privacy, "epsilon_max": max(p["epsilon"] for p in privacy.values())} if privacy else {}),
            "seconds": round(now - st.tally.started, 4),
            "bytes_up": st.tally.bytes_up,
            "bytes_down": st.tally.bytes_down,
            "notes": st.aggregate_notes,
            **eng.state.round_dp,
        }
    )
    eng.state.round_dp = {}
    return line


def _log_round(eng: RoundEngine, line: dict, pooled: dict) -> None:
    ev = (
        f" eval {', '.join(f'{k} {v:.4f}' for k, v in pooled.items() if k in ('accuracy', 'uf1', 'uar'))}"
        if pooled
        else ""
    )
    log.info(
        "round %d/%d done in %.2f s with %d contributors;%s",
        line["round"],
        eng.cfg.federation.rounds,
        line["seconds"],
        line["contributors"],
        ev,
    )


def _checkpoint(eng: RoundEngine, round_: int) -> None:
    st = eng.state
    extra = jsonable(st.checkpoint_extra(eng.registry.ever, jsonable(eng.client_dp.state())))
    eng.store.save(
        Checkpoint(round_, st.params, st.spec, eng.strategy.state_dict(), list(st.history), st.statistics, extra)
    )
    eng.releases.forget_before(round_ + 1, keep_zero=st.needs_stats)


def checkpoint_now(eng: RoundEngine) -> int | None:
    """Write the newest model's checkpoint again, with the registry's current privacy records and
    exclusions (on an interrupt); the round it holds, or None when no round has completed yet."""
    st = eng.state
    if st.model_round == 0 and st.statistics is None:
        return None
    _checkpoint(eng, st.model_round)
    return st.model_round


# -- endings -----------------------------------------------------------------------------------
def fail_attempt(eng: RoundEngine, now: float, reason: str) -> None:
    st = eng.state
    st.retries += 1
    what = "set-up/statistics (round 0)" if st.round == 0 else f"round {st.round}"
    log.warning("%s attempt %d failed: %s", what, st.attempt, reason)
    if st.retries > eng.cfg.deadlines.max_round_retries:
        return abort(
            eng,
            f"{what} failed {st.retries} times (max_round_retries = "
            f"{eng.cfg.deadlines.max_round_retries}); last failure: {reason}",
        )
    st.attempt += 1
    eng.records.save_attempt(st.round, st.attempt)
    st.stage = None
    next_work(eng, now)


def _end(eng: RoundEngine, phase: Phase, reason: str, status: str | None = None) -> None:
    st = eng.state
    if phase not in TRANSITIONS[st.phase]:  # a stop between the stages of a set-up: through JOINING
        transition(st, Phase.JOINING)
    transition(st, phase)
    st.outcome = reason
    clients = eng.state.clients_ever(eng.registry.ever)
    eng.records.write_summary(
        {
            **summarize(
                eng.state.history,
                federation=eng.cfg.federation.id,
                aggregation=eng.cfg.federation.aggregation,
                strategy=eng.cfg.strategy.name,
                rounds_planned=eng.cfg.federation.rounds,
                status=status or ("completed" if phase == Phase.DONE else "aborted"),
                reason=reason,
                clients=clients,
                round0=eng.state.round0,
                privacy=eng.state.privacy,
            ),
            **eng.client_dp.summary(),
        }
    )


def abort(eng: RoundEngine, reason: str) -> None:
    log.error("FEDERATION ABORTED: %s", reason)
    _end(eng, Phase.ABORTED, reason)


def finish(eng: RoundEngine, reason: str) -> None:
    log.info("federation finished: %s", reason)
    _end(eng, Phase.DONE, reason)


def stop(eng: RoundEngine) -> None:
    """End the run on request after the work in flight; the clients are told it is over (DONE)
    and the summary says "stopped". A restart with the same config resumes from the checkpoint."""
    st = eng.state
    done = st.next_round - 1
    reason = (
        f"stopped on request ({stop_requested(eng)}) after round {done} of {eng.cfg.federation.rounds}; "
        f"restart the coordinator (and the clients) with the same configs to resume from round {done + 1}"
    )
    log.warning("federation stopped: %s", reason)
    _end(eng, Phase.DONE, reason, status="stopped")
