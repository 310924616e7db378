"""Task bodies the engine hands out and submission bodies it accepts, per stage.

TRAIN, STATS and EVALUATE belong to the engine; every other stage belongs to the aggregation
mode, whose ``task``/``accept`` are called with unpacked protobuf messages of the types its
``body_types(stage)`` declares (or with the raw ``Any`` when it declares none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from fedcore.common.errors import InvalidPayload
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.common.task_privacy import encode_privacy
from fedcore.coordinator.reports import (
    check_eval_report,
    check_train_report,
    privacy_dict,
)
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.settings import to_config

if TYPE_CHECKING:
    from fedcore.coordinator.engine import RoundEngine

ENGINE_BODIES: dict[Stage, type[Message]] = {
    Stage.TRAIN: pb.TrainReport,
    Stage.STATS: pb.StatsReport,
    Stage.EVALUATE: pb.EvaluateReport,
}


def train_config(eng: RoundEngine, round_: int) -> dict:
    """TrainTask.config: the [workload] table and the strategy's client keys (no privacy setting:
    those travel typed in TrainTask.privacy, :func:`task_privacy`)."""
    cfg = eng.cfg
    return {**cfg.workload, **eng.strategy.client_config(round_), "rounds": cfg.federation.rounds}


def task_privacy(eng: RoundEngine) -> pb.TaskPrivacy:
    """The one privacy message of a TrainTask or StatsTask (:mod:`fedcore.common.task_privacy`)."""
    return encode_privacy(eng.client_dp.task_privacy(eng.cfg.privacy))


def _statistics(eng: RoundEngine) -> pb.Vector | None:
    stats = eng.state.statistics
    return encode_vector(stats.astype("float64"), "float64") if stats is not None else None


def task_body(eng: RoundEngine, client_id: str) -> Message:
    st = eng.state
    stage = st.open_stage().stage
    if stage == Stage.TRAIN:
        blob = st.model_blob()
        return pb.TrainTask(
            model_blob=blob.name,
            model_sha256=blob.sha256,
            config=to_config(train_config(eng, st.round)),
            statistics=_statistics(eng),
            privacy=task_privacy(eng),
        )
    if stage == Stage.EVALUATE:
        blob = st.model_blob()
        return pb.EvaluateTask(
            model_blob=blob.name,
            model_sha256=blob.sha256,
            config=to_config({**eng.cfg.workload, "rounds": eng.cfg.federation.rounds}),
            statistics=_statistics(eng),
        )
    if stage == Stage.STATS:
        return pb.StatsTask(config=to_config(eng.cfg.workload), privacy=task_privacy(eng))
    return eng.mode.task(stage, client_id)


def wait_reason(eng: RoundEngine, client_id: str) -> str:
    st = eng.state
    if st.phase == Phase.JOINING:
        return f"waiting for clients ({len(eng.registry.alive())} alive, {eng.cfg.federation.min_clients} needed)"
    if st.stage is not None and client_id in st.stage.responded:
        return f"waiting for the others in round {st.round} stage {st.stage.stage.name}"
    if st.stage is not None:
        return f"not selected for round {st.round} stage {st.stage.stage.name}"
    return f"phase {st.phase.value}"


def _unpack(body: any_pb2.Any, types: tuple[type[Message], ...], stage: Stage, client_id: str) -> Message:
    for cls in types:
        if body.Is(cls.DESCRIPTOR):
            msg = cls()
            try:
                body.Unpack(msg)
            except DecodeError:
                raise InvalidPayload(f"{client_id}: body of type {cls.DESCRIPTOR.full_name} does not parse") from None
            return msg
    names = ", ".join(c.DESCRIPTOR.full_name for c in types)
    raise InvalidPayload(
        f"stage {stage.name} expects a body of type {names} "
        f"(got {body.type_url.rpartition('/')[2] or 'an empty Any'}) from {client_id}"
    )


def accept(eng: RoundEngine, client_id: str, body: any_pb2.Any) -> None:
    """Check and record one submission; raises InvalidPayload (nothing recorded) for a bad one."""
    st = eng.state
    stage = st.open_stage().stage
    if stage in ENGINE_BODIES:
        msg = _unpack(body, (ENGINE_BODIES[stage],), stage, client_id)
        if stage == Stage.TRAIN:
            check_train_report(msg, client_id)
            if msg.HasField("privacy"):
                eng.state.privacy[client_id] = privacy_dict(msg.privacy)
            st.train_reports[client_id] = msg
        elif stage == Stage.STATS:
            st.train_reports[client_id] = msg
        else:
            first = next(iter(st.eval_reports.values()), None)
            check_eval_report(msg, client_id, int(first.num_classes) if first and first.num_classes else None)
            st.eval_reports[client_id] = msg
        return
    types = tuple(eng.mode.body_types(stage))
    eng.mode.accept(stage, client_id, _unpack(body, types, stage, client_id) if types else body)
