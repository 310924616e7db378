"""What a client does for each stage: TRAIN, STATS and EVALUATE itself, the rest via its mode.

The update a client contributes to round r is ``local - global`` (float64), weighted by its
number of training examples; the aggregation mode applies the weight. The job made in TRAIN
(or STATS, for round 0) is kept per (round, attempt) for the mode stages that follow.

Never one update in two aggregates: a cached training result is reused only for the very same
(federation, run, round, attempt, model) -- a resend within one attempt. Every new attempt trains
again, with fresh DP noise charged to the ledger (or, without DP, a fresh seed: the round then
leaks approximately, logged). The Trainer gets ``config["task"]`` (federation, run, round,
attempt, seed; :func:`fedcore.client.privacy.task_context`) to key its ledger charges.

Privacy settings arrive only in the task's typed ``privacy`` message
(:mod:`fedcore.common.task_privacy`). The workload sees ``config["privacy"]``: the coordinator's
DP-SGD defaults overridden key by key by this client's own ``[privacy]``. Under client-level DP
(central or distributed) the update is clipped here, in :func:`client_update`, and nowhere else.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import any_pb2, message_factory, symbol_database
from google.protobuf.message import DecodeError, Message

from fedcore.client.cache import UpdateCache
from fedcore.client.privacy import (
    StatisticsRefused,
    charge_statistics,
    derived_seed,
    dp_enabled,
    statistics_release,
    task_context,
    trim_report,
)
from fedcore.common.aggregation import ClientJob, ClientMode
from fedcore.common.errors import InvalidPayload
from fedcore.common.params import decode_model, decode_vector
from fedcore.common.stages import Stage
from fedcore.common.task_privacy import TaskPrivacy, decode_privacy
from fedcore.common.workload import BudgetExhausted, FitResult, PrivacyState, Trainer
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.settings import from_config

log = logging.getLogger(__name__)


def unpack_any(body: any_pb2.Any) -> Message:
    """Unpack an Any into its registered message class (mode modules register theirs on import)."""
    name = body.type_url.rpartition("/")[2]
    try:
        descriptor = symbol_database.Default().pool.FindMessageTypeByName(name)
    except KeyError:
        raise InvalidPayload(f"task body of unknown type {name!r}") from None
    msg = message_factory.GetMessageClass(descriptor)()
    try:
        body.Unpack(msg)
    except DecodeError:
        raise InvalidPayload(f"task body of type {name!r} does not parse") from None
    return msg


def privacy_report(p: PrivacyState | None) -> pb.PrivacyReport:
    if p is None:
        return pb.PrivacyReport(enabled=False)
    return pb.PrivacyReport(
        enabled=p.enabled,
        epsilon=p.epsilon,
        delta=p.delta,
        accountant=p.accountant,
        steps=p.steps,
        noise_multiplier=p.noise_multiplier,
        target_epsilon=p.target_epsilon,
        exhausted=p.exhausted,
    )


def _finite_metrics(metrics: Mapping[str, Any], what: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        value = float(value)
        if math.isfinite(value):
            out[str(key)] = value
        else:
            log.warning("%s: dropping non-finite metric %s = %s", what, key, value)
    return out


class StageHandlers:
    """Answers TRAIN, STATS and EVALUATE; hands the mode stages to the aggregation mode.

    Args:
        federation: the federation id (default: the task headers' ``federation_id``).
        run_id: the coordinator's run id if it sent one; default a fresh id for this client
            session (then a resend is reused only within this process).
        workdir: the client's workdir (ledger and evidence of training; default the cache's parent).
        stats_sensitivity: the workload's L2 sensitivity of its round-0 statistics
            (:func:`fedcore.common.workload.statistics_sensitivity`; None: sqrt(length)).
        seed: a seeded client's ``[client] seed`` (training seeds and the statistics noise derive
            from it; None: CSPRNG draws).

    ``conn`` is the client's connection over either transport (:class:`fedcore.client.connection.
    Connection` or :class:`fedcore.transport.memory.MemoryConnection`): only its ``download`` is used.
    """

    def __init__(
        self,
        trainer: Trainer,
        mode: ClientMode,
        conn: Any,
        cache: UpdateCache,
        privacy: Mapping[str, Any],
        *,
        federation: str = "",
        run_id: str | None = None,
        workdir: Path | None = None,
        stats_sensitivity: float | None = None,
        seed: int | None = None,
    ):
        self.trainer = trainer
        self.stats_sensitivity = stats_sensitivity  # the workload's stated L2 sensitivity of its statistics
        self.mode = mode
        self.conn = conn
        self.cache = cache
        self.privacy = dict(privacy)
        self.federation = federation
        self.run_id = run_id or f"session-{secrets.token_hex(6)}"
        self.workdir = Path(workdir) if workdir is not None else Path(cache.directory).parent
        self.jobs: dict[tuple[int, int], ClientJob] = {}
        self.seed = seed
        self.rng = None if seed is None else np.random.default_rng(derived_seed(seed, "statistics"))

    def handle(self, task: pb.Task) -> Message:
        stage = Stage(task.header.stage)
        if stage == Stage.TRAIN:
            return self.train(task.header, _unpack(task.body, pb.TrainTask))
        if stage == Stage.STATS:
            return self.stats(task.header, _unpack(task.body, pb.StatsTask))
        if stage == Stage.EVALUATE:
            return self.evaluate(task.header, _unpack(task.body, pb.EvaluateTask))
        job = self.jobs.get((task.header.round, task.header.attempt))
        return self.mode.handle(stage, unpack_any(task.body), job, lambda name: self.conn.download(task.header, name))

    def _config(self, wire: pb.Config, header: pb.Header, privacy: TaskPrivacy) -> dict[str, Any]:
        config = from_config(wire, "task config")
        if "privacy" in config:
            raise InvalidPayload("privacy settings travel in the task's privacy message, not in its config")
        config["privacy"] = {**privacy.local, **self.privacy}
        if header is not None:
            config["task"] = task_context(
                self._federation(header), self.run_id, header.round, header.attempt, self.seed
            )
        return config

    def _federation(self, header: pb.Header) -> str:
        return header.federation_id or self.federation

    def _model(self, header: pb.Header, blob: str, sha: bytes):
        payload = self.conn.download(header, blob, expected_sha256=sha)
        model = pb.Model()
        try:
            model.ParseFromString(payload)
        except DecodeError:
            raise InvalidPayload(f"blob {blob!r} is not a Model message") from None
        return decode_model(model)

    @staticmethod
    def _statistics(vec: pb.Vector) -> np.ndarray | None:
        return decode_vector(vec, what="federation statistics") if vec.dtype else None

    def _keep(self, job: ClientJob) -> None:
        self.jobs[(job.round, job.attempt)] = job
        for key in sorted(self.jobs)[:-4]:
            del self.jobs[key]

    def train(self, header: pb.Header, t: pb.TrainTask) -> pb.TrainReport:
        params, spec, _ = self._model(header, t.model_blob, t.model_sha256)
        r, attempt, fed = int(header.round), int(header.attempt), self._federation(header)
        privacy_spec = decode_privacy(t.privacy)
        config = self._config(t.config, header, privacy_spec)
        report_steps = config["privacy"].get("report_steps") is True
        fit = self.cache.get(r, t.model_sha256, spec.size, attempt=attempt, federation=fed, run=self.run_id)
        if fit is not None:
            log.info(
                "round %d attempt %d: resending the update trained for this same attempt (no new training)", r, attempt
            )
        else:
            if attempt > 0:
                log.info(
                    "round %d attempt %d: a new attempt trains again (fresh noise, charged); an update is "
                    "never contributed to two aggregates",
                    r,
                    attempt,
                )
            if not dp_enabled(config["privacy"]):
                log.warning(
                    "round %d attempt %d: DP is off; training with a fresh seed. Without DP a re-aggregated "
                    "round can leak approximately: two sums over different client sets differ by about "
                    "one client's update",
                    r,
                    attempt,
                )
            try:
                fit = self.trainer.fit(params, spec, r, config, self._statistics(t.statistics))
            except BudgetExhausted as exc:
                log.warning("round %d: refusing to train: %s", r, exc)
                privacy = exc.privacy or PrivacyState(enabled=True)  # a bare ledger refusal carries none
                privacy.exhausted = True
                privacy, _ = trim_report(privacy, {}, report_steps, f"round {r} refusal")
                return pb.TrainReport(ready=False, refusal=str(exc), privacy=privacy_report(privacy))
            except Exception as exc:  # a workload bug or mismatch: report it, keep the daemon alive
                log.exception("round %d: the trainer failed", r)
                return pb.TrainReport(ready=False, refusal=f"training failed: {type(exc).__name__}: {exc}"[:500])
            problem = _check_fit(fit, spec.size)
            if problem:
                log.error("round %d: %s; reporting not ready", r, problem)
                privacy, _ = trim_report(fit.privacy, {}, report_steps, f"round {r}")
                return pb.TrainReport(ready=False, refusal=problem, privacy=privacy_report(privacy))
            self.cache.put(r, t.model_sha256, fit, attempt=attempt, federation=fed, run=self.run_id)
        delta = np.asarray(fit.parameters, np.float64) - np.asarray(params, np.float64)
        delta, weight = client_update(delta, float(fit.num_examples), privacy_spec, r)
        self._keep(ClientJob(r, attempt, delta, weight, distributed_dp=privacy_spec.distributed))
        privacy, metrics = trim_report(
            fit.privacy, _finite_metrics(fit.metrics, f"round {r} training"), report_steps, f"round {r}"
        )
        return pb.TrainReport(ready=True, metrics=metrics, privacy=privacy_report(privacy))

    def stats(self, header: pb.Header, t: pb.StatsTask) -> pb.StatsReport:
        config = self._config(t.config, header, decode_privacy(t.privacy))
        vec = self.trainer.statistics(config)
        if vec is None:
            return pb.StatsReport(ready=False, refusal="this workload computes no statistics")
        vec = np.asarray(vec, np.float64)
        if vec.ndim != 1 or not np.isfinite(vec).all():
            return pb.StatsReport(
                ready=False, refusal=f"statistics must be a finite 1-D vector (got shape {vec.shape})"
            )
        try:  # noised (by the mode or here) and charged before anything derived from it leaves the client
            vec, noise = statistics_release(vec, config["privacy"], self.mode, self.stats_sensitivity, self.rng)
            if noise is not None:
                config["statistics_noise"] = noise  # the client's own record, whatever the task said
            charge_statistics(
                config["privacy"], config, self.workdir, self._federation(header), self.run_id, int(header.attempt)
            )
        except StatisticsRefused as exc:
            log.warning("round 0 attempt %d: not sending statistics: %s", header.attempt, exc)
            return pb.StatsReport(ready=False, refusal=f"statistics refused: {exc}"[:500])
        self._keep(ClientJob(int(header.round), int(header.attempt), vec, 1.0))
        return pb.StatsReport(ready=True)

    def evaluate(self, header: pb.Header, t: pb.EvaluateTask) -> pb.EvaluateReport:
        params, spec, _ = self._model(header, t.model_blob, t.model_sha256)
        res = self.trainer.evaluate(
            params, spec, int(header.round), from_config(t.config, "task config"), self._statistics(t.statistics)
        )
        report = pb.EvaluateReport(
            metrics=_finite_metrics(res.metrics, f"round {header.round} evaluation"), num_examples=int(res.num_examples)
        )
        if res.confusion is not None:
            cm = np.asarray(res.confusion, np.int64)
            if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or (cm < 0).any():
                raise InvalidPayload(f"the trainer's confusion matrix must be square and >= 0 (got {cm.shape})")
            report.num_classes = cm.shape[0]
            report.confusion.extend(int(v) for v in cm.ravel())
            report.num_examples = int(cm.sum())
        return report


def _unpack(body: any_pb2.Any, cls: type[Message]) -> Message:
    msg = cls()
    if not body.Is(cls.DESCRIPTOR) or not body.Unpack(msg):
        raise InvalidPayload(f"expected a {cls.DESCRIPTOR.full_name} task body (got {body.type_url or 'nothing'})")
    return msg


def client_update(delta: np.ndarray, weight: float, privacy: TaskPrivacy, round_: int) -> tuple[np.ndarray, float]:
    """The one place a client clips its update. Under client-level DP (central: DP-FedAvg, the
    coordinator adds the noise; distributed: SecAgg+'s discrete Gaussian, the mode adds this
    client's share) the update (new - global) is clipped to L2 ``clip_norm`` and sent with weight
    1, so one client's contribution is bounded whatever its sample count. Otherwise unchanged."""
    clip = privacy.update_clip
    if clip is None:
        return delta, weight
    from fedcore.dp.central import clip_update

    clipped, was = clip_update(delta, clip)
    kind = "central" if privacy.central is not None else "distributed"
    if was:
        log.info("round %d: update clipped to L2 norm %g for %s DP", round_, clip, kind)
    return clipped, 1.0


def _check_fit(fit: FitResult, size: int) -> str:
    p = np.asarray(fit.parameters)
    if p.shape != (size,):
        return f"the trainer returned parameters of shape {p.shape}, the model has ({size},)"
    if not np.isfinite(p).all():
        return f"the trainer returned {int((~np.isfinite(p)).sum())} NaN/Inf parameters"
    if not fit.num_examples or fit.num_examples <= 0:
        return f"the trainer reported num_examples = {fit.num_examples} (must be > 0)"
    return ""
