"""Property-based fuzzing of every servicer handler: Join, GetTask, Heartbeat, Download, Submit.

The servicer sits on a real round engine (plain mode, fake clock) whose three clients have
joined and whose TRAIN stage is open. Every generated request -- random headers and identities,
random and mutated submission streams -- must get a reply or a refusal with one of the statuses
in :data:`fuzz_kit.REFUSALS`: no escaped exception, no INTERNAL. Afterwards the honest clients
still complete the federation, so nothing a hostile caller sent broke the state machine.
"""

from __future__ import annotations

import hashlib

import pytest
from fedcore_testkit import FED, ScriptedClient, TinyWorkload, make_engine, packed
from fuzz_kit import (
    PROFILES,
    REFUSALS,
    Aborted,
    big,
    call,
    mutate,
    names,
    run_property,
    small,
    stages,
)
from hypothesis import given
from hypothesis import strategies as st

from fedcore.common.params import encode_vector
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.options import CHUNK_SIZE

LIMIT = 64 * 1024


@pytest.fixture
def world(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    clients = [ScriptedClient(engine, cid) for cid in ("alice", "bob", "carol")]
    for c in clients:
        c.join()
    engine.tick()
    assert engine.state.phase == Phase.TRAIN
    return engine, FederationServicer(engine, max_payload_bytes=LIMIT), clients


def _finishes(engine, clients) -> None:
    """The honest clients finish the run; identities the fuzzer joined fall silent and expire."""
    for _ in range(400):
        engine.clock.advance(0.5)
        engine.tick()
        if engine.finished:
            break
        for c in clients:
            c.step()
    assert engine.state.phase == Phase.DONE, (engine.state.phase, engine.state.outcome)


def _refused_properly(fn, request, cn) -> None:
    try:
        call(fn, request, cn)
    except Aborted as exc:
        assert exc.code in REFUSALS, exc


headers = st.builds(
    pb.Header,
    federation_id=st.sampled_from([FED, "", "other-fed", FED + "\x00"]),
    round=big,
    stage=stages,
    attempt=small,
    client_id=names,
)
cns = st.one_of(st.none(), names)


@pytest.mark.parametrize("profile", PROFILES)
def test_join_heartbeat_gettask_never_crash_on_hostile_headers(world, profile):
    engine, servicer, clients = world

    @given(header=headers, cn=cns, version=st.text(max_size=40), which=st.sampled_from(["join", "beat", "task"]))
    def prop(header, cn, version, which):
        if which == "join":
            _refused_properly(servicer.Join, pb.JoinRequest(header=header, client_version=version), cn)
        elif which == "beat":
            _refused_properly(servicer.Heartbeat, pb.HeartbeatRequest(header=header), cn)
        else:
            _refused_properly(servicer.GetTask, pb.TaskRequest(header=header), cn)

    assert run_property(prop, profile, "servicer.Join/Heartbeat/GetTask") >= 100
    _finishes(engine, clients)


@pytest.mark.parametrize("profile", PROFILES)
def test_download_never_crashes_on_hostile_requests(world, profile):
    engine, servicer, clients = world
    current = engine.header("alice")

    @given(
        header=st.one_of(headers, st.just(current)),
        cn=cns,
        blob=st.sampled_from(["model/0", "model/1", "", "../model/0", "model/0\x00", "ckks/sum/1/0"]),
    )
    def prop(header, cn, blob):
        _refused_properly(servicer.Download, pb.DownloadRequest(header=header, blob=blob), cn)

    assert run_property(prop, profile, "servicer.Download") >= 100
    _finishes(engine, clients)


def _bodies():
    """Submission payloads: valid-looking engine bodies with random fields, and random bytes."""
    train = st.builds(
        lambda ready, loss, eps: packed(
            pb.TrainReport(
                ready=ready, metrics={"loss": loss}, privacy=pb.PrivacyReport(enabled=True, epsilon=eps, delta=1e-5)
            )
        ),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(allow_nan=True),
    )
    plain = st.builds(
        lambda n, w: packed(
            pb.PlainInput(weighted_update=encode_vector(__import__("numpy").ones(n), "float64"), weight=w)
        ),
        st.integers(0, 20),
        st.floats(),
    )
    evaluate = st.builds(
        lambda c, conf, n: packed(pb.EvaluateReport(num_classes=c, confusion=conf, num_examples=n)),
        st.integers(0, 5000),
        st.lists(st.integers(0, 2**64 - 1), max_size=30),
        big,
    )
    return st.one_of(train, plain, evaluate, st.binary(max_size=300))


@st.composite
def streams(draw, engine):
    """A Submit request stream: a StreamHeader (true, lying or missing) and data chunks."""
    payload = draw(_bodies())
    if draw(st.booleans()):
        payload = mutate(payload, draw(st.integers(0, 2**32)))
    header = draw(st.one_of(st.just(engine.header(draw(names))), headers))
    size = draw(st.one_of(st.just(len(payload)), big, st.integers(0, LIMIT + 10)))
    digest = draw(st.one_of(st.just(hashlib.sha256(payload).digest()), st.binary(max_size=40)))
    chunks = [pb.Chunk(header=pb.StreamHeader(header=header, total_size=size, sha256=digest))]
    if draw(st.booleans()):
        chunks = draw(st.sampled_from([[], [pb.Chunk(data=b"x")], [pb.Chunk()]]))
    cut = draw(st.integers(1, max(1, len(payload))))
    chunks += [pb.Chunk(data=payload[i : i + cut]) for i in range(0, len(payload), cut)]
    if draw(st.booleans()):
        chunks.insert(
            draw(st.integers(0, len(chunks))),
            draw(
                st.sampled_from([pb.Chunk(), chunks[0] if chunks else pb.Chunk(data=b"\1"), pb.Chunk(data=b"\0" * 3)])
            ),
        )
    return chunks


@pytest.mark.parametrize("profile", PROFILES)
def test_submit_never_crashes_on_hostile_streams(world, profile):
    engine, servicer, clients = world

    @given(chunks=streams(engine), cn=cns)
    def prop(chunks, cn):
        try:
            reply = servicer.Submit(iter(chunks), _ctx(cn))
        except Aborted as exc:
            assert exc.code in REFUSALS, exc
        else:
            assert isinstance(reply, pb.SubmitReply)
        assert len(servicer._uploading) == 0  # the per-client upload slot is always released

    assert run_property(prop, profile, "servicer.Submit") >= 100
    assert servicer._streams._value == 32  # every transfer slot was given back
    _finishes(engine, clients)


def _ctx(cn):
    from fuzz_kit import FakeContext

    return FakeContext(cn)


def test_oversized_chunk_is_refused_as_invalid(world):
    engine, _, _ = world
    payload = b"\0" * (CHUNK_SIZE + 1)
    head = pb.Chunk(
        header=pb.StreamHeader(
            header=engine.header("alice"), total_size=len(payload), sha256=hashlib.sha256(payload).digest()
        )
    )
    big_servicer = FederationServicer(engine, max_payload_bytes=2 * CHUNK_SIZE)
    with pytest.raises(Aborted) as exc:
        big_servicer.Submit(iter([head, pb.Chunk(data=payload)]), _ctx("alice"))
    assert exc.value.code.name == "INVALID_ARGUMENT" and "chunk limit" in exc.value.details
