"""The client's stage handlers against a real in-process coordinator over mTLS."""

from __future__ import annotations

import numpy as np
import pytest
from fedcore_testkit import FED, TinyWorkload, make_engine, served_engine

from fedcore.client.cache import UpdateCache
from fedcore.client.connection import Connection
from fedcore.client.handlers import StageHandlers
from fedcore.common.workload import BudgetExhausted, EvalResult, FitResult, PrivacyState
from fedcore.common.aggregation import ClientIdentity
from fedcore.common.errors import InvalidPayload
from fedcore.common.stages import Stage
from fedcore.plain import PlainClient
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb


class CountingTrainer:
    """Adds ``step`` to every parameter; counts fits; can refuse for budget or return NaN."""

    def __init__(self, step=0.5, refuse=False, nan=False, metrics=None):
        self.step, self.refuse, self.nan = step, refuse, nan
        self.metrics = metrics or {"loss": 0.3, "bad": float("nan")}
        self.fits = 0
        self.configs = []

    def fit(self, params, spec, round, config, statistics):
        self.configs.append(config)
        if self.refuse:
            raise BudgetExhausted("epsilon 8.1 > 8.0", PrivacyState(True, epsilon=7.9, delta=1e-5))
        self.fits += 1
        out = params + self.step
        if self.nan:
            out[0] = np.nan
        return FitResult(
            out.astype(np.float32),
            20,
            dict(self.metrics),
            PrivacyState(True, epsilon=1.0, delta=1e-5, accountant="rdp", steps=10, noise_multiplier=1.1),
        )

    def evaluate(self, params, spec, round, config, statistics):
        return EvalResult(5, {"loss": 0.1}, np.array([[2, 1], [0, 2]]))

    def statistics(self, config):
        return None


@pytest.fixture
def train_task(tmp_path, pki):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), privacy={"target_epsilon": 8.0, "delta": 1e-5})
    with served_engine(engine, pki) as port:
        conn = Connection(
            f"127.0.0.1:{port}", pki.tls("alice"), client_id="alice", federation_id=FED, reconnect_timeout=5
        )
        other = Connection(f"127.0.0.1:{port}", pki.tls("bob"), client_id="bob", federation_id=FED, reconnect_timeout=5)
        conn.join("t")
        other.join("t")
        engine.tick()
        task = conn.get_task(pb.Header())
        assert task.header.stage == Stage.TRAIN
        yield engine, conn, task, tmp_path / "cache"
        conn.close()
        other.close()


def _handlers(trainer, conn, cache_dir, privacy=None, run_id="run-1"):
    mode = PlainClient(ClientIdentity("alice"), FED, {})
    return StageHandlers(trainer, mode, conn, UpdateCache(cache_dir), privacy or {}, federation=FED, run_id=run_id)


def _next_attempt(engine, conn):
    """Fail the coordinator's current attempt (as a restart or a timeout does) and fetch the new TRAIN task."""
    from fedcore.coordinator.phases import fail_attempt

    fail_attempt(engine, engine.clock(), "test: attempt abandoned")
    engine.tick()
    task = conn.get_task(pb.Header())
    assert task.header.stage == Stage.TRAIN and task.header.attempt >= 1
    return task


def test_resend_within_the_same_attempt_does_not_train_again(train_task):
    _engine, conn, task, cache_dir = train_task
    trainer = CountingTrainer()
    first = _handlers(trainer, conn, cache_dir).handle(task)
    again = _handlers(trainer, conn, cache_dir).handle(task)  # e.g. after a client restart, same run and attempt
    assert trainer.fits == 1
    assert first.ready and again.ready and first.metrics == again.metrics == {"loss": 0.3}
    assert first.privacy.epsilon == 1.0


def test_new_attempt_of_the_same_round_and_model_trains_again_never_reusing_the_update(train_task):
    # reusing it put one update into two aggregates over different client sets: their difference is it
    engine, conn, task, cache_dir = train_task
    trainer = CountingTrainer()
    handlers = _handlers(trainer, conn, cache_dir)
    handlers.handle(task)
    retry = _next_attempt(engine, conn)
    train = pb.TrainTask()
    retry.body.Unpack(train)
    first_train = pb.TrainTask()
    task.body.Unpack(first_train)
    assert train.model_sha256 == first_train.model_sha256  # same round, same global model
    handlers.handle(retry)
    assert trainer.fits == 2
    seen = [c["task"] for c in trainer.configs]
    assert [t["attempt"] for t in seen] == [task.header.attempt, retry.header.attempt]
    assert seen[0]["seed"] != seen[1]["seed"] and {t["federation"] for t in seen} == {FED}
    assert {t["run"] for t in seen} == {"run-1"}


def test_a_client_session_without_a_run_id_from_the_coordinator_does_not_reuse_across_sessions(train_task):
    _engine, conn, task, cache_dir = train_task
    trainer = CountingTrainer()
    _handlers(trainer, conn, cache_dir, run_id=None).handle(task)
    _handlers(trainer, conn, cache_dir, run_id=None).handle(task)  # a restarted client: cannot tell the run apart
    assert trainer.fits == 2


def test_steps_and_noise_multiplier_stay_on_the_client_unless_report_steps(train_task):
    _engine, conn, task, cache_dir = train_task
    trainer = CountingTrainer(metrics={"steps": 6.0, "empty_batches": 1.0, "loss": 0.3})
    hidden = _handlers(trainer, conn, cache_dir).handle(task)
    assert hidden.privacy.steps == 0 and hidden.privacy.noise_multiplier == 0.0
    assert set(hidden.metrics) == {"loss"} and hidden.privacy.epsilon == 1.0 and hidden.privacy.delta == 1e-5
    shown = _handlers(trainer, conn, cache_dir, privacy={"report_steps": True}, run_id="run-2").handle(task)
    assert shown.privacy.steps == 10 and shown.privacy.noise_multiplier == 1.1
    assert shown.metrics["steps"] == 6.0


def test_update_is_local_minus_global_weighted_by_examples(train_task):
    _engine, conn, task, cache_dir = train_task
    handlers = _handlers(CountingTrainer(step=0.5), conn, cache_dir)
    handlers.handle(task)
    job = handlers.jobs[(task.header.round, task.header.attempt)]
    np.testing.assert_allclose(job.vector, np.full(8, 0.5))
    assert job.weight == 20.0 and job.vector.dtype == np.float64


def test_budget_exhausted_becomes_a_refusal_report(train_task):
    _engine, conn, task, cache_dir = train_task
    report = _handlers(CountingTrainer(refuse=True), conn, cache_dir).handle(task)
    assert not report.ready and "8.1" in report.refusal
    assert report.privacy.exhausted and report.privacy.epsilon == pytest.approx(7.9)


def test_non_finite_parameters_are_reported_not_ready(train_task):
    _engine, conn, task, cache_dir = train_task
    handlers = _handlers(CountingTrainer(nan=True), conn, cache_dir)
    report = handlers.handle(task)
    assert not report.ready and "NaN" in report.refusal and not handlers.jobs


def test_client_privacy_overrides_the_coordinator_defaults(train_task):
    _engine, conn, task, cache_dir = train_task
    trainer = CountingTrainer()
    _handlers(trainer, conn, cache_dir, privacy={"target_epsilon": 3.0}).handle(task)
    assert trainer.configs[0]["privacy"] == {"target_epsilon": 3, "delta": 1e-5}
    assert trainer.configs[0]["task"]["round"] == task.header.round


def test_tampered_model_hash_is_refused(train_task):
    _engine, conn, task, cache_dir = train_task
    train = pb.TrainTask()
    task.body.Unpack(train)
    train.model_sha256 = bytes(32)
    task.body.Pack(train)
    trainer = CountingTrainer()
    with pytest.raises(InvalidPayload, match="SHA-256"):
        _handlers(trainer, conn, cache_dir).handle(task)
    assert trainer.fits == 0


def test_new_attempt_with_dp_retrains_with_fresh_noise_and_charges_the_ledger_again(train_task, tmp_path):
    import json

    from fedcore.common.workload import FitResult as _Fit
    from fedcore.common.params import ParamSpec, TensorSpec
    from fedcore.examples.softmax import SoftmaxTrainer
    from fedcore.examples.synthetic import DataSettings

    engine, conn, task, cache_dir = train_task

    class TinyDP:
        """The example workload's real DP-SGD path, on the 8 parameters the tiny coordinator sends."""

        def __init__(self):
            self.inner = SoftmaxTrainer(DataSettings(num_features=1, num_classes=4), "cpu", "alice", tmp_path)

        def fit(self, params, spec, round, config, statistics):
            inner_spec = ParamSpec((TensorSpec("0.weight", (4, 1)), TensorSpec("0.bias", (4,))))
            fit = self.inner.fit(np.asarray(params, np.float32), inner_spec, round, config, statistics)
            return _Fit(fit.parameters, fit.num_examples, fit.metrics, fit.privacy)

        def evaluate(self, *a):
            raise NotImplementedError

        def statistics(self, config):
            return None

    trainer = TinyDP()
    privacy = {"noise_multiplier": 1.0, "target_epsilon": 50.0, "accountant": "rdp"}
    handlers = _handlers(trainer, conn, cache_dir, privacy=privacy)
    handlers.handle(task)
    first = handlers.jobs[(task.header.round, task.header.attempt)].vector
    retry = _next_attempt(engine, conn)
    handlers.handle(retry)
    second = handlers.jobs[(retry.header.round, retry.header.attempt)].vector
    assert not np.allclose(first, second)  # fresh noise: not the same update in the second aggregate
    charges = json.loads((tmp_path / "privacy_ledger.json").read_text())["charges"]
    assert [(c["round"], c["attempt"], c["run"]) for c in charges] == [
        (task.header.round, task.header.attempt, "run-1"),
        (retry.header.round, retry.header.attempt, "run-1"),
    ]
