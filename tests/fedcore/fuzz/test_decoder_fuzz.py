"""Property-based fuzzing of every decoder that reads peer bytes.

- ``decode_vector`` / ``decode_model``: any Vector or Model either decodes to exactly what it
  declares or raises InvalidPayload; a declared length is checked against the bytes present
  before anything is allocated (a 2^60-value claim costs nothing);
- chunk reassembly (``receive_chunks``): any chunk sequence is a payload whose size and SHA-256
  match its header, or InvalidPayload / PayloadTooLarge; the buffer never exceeds what arrived;
- the engine's report checks: a TrainReport or EvaluateReport either fails ``check_*`` with
  InvalidPayload or is safe for everything the coordinator does with it afterwards (pooled
  metrics, the JSON metrics line).
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc

import numpy as np
import pytest
from fuzz_kit import PROFILES, big, mutate, run_property
from hypothesis import given
from hypothesis import strategies as st

from fedcore.common.errors import InvalidPayload
from fedcore.common.params import WIRE_DTYPES, decode_model, decode_vector
from fedcore.coordinator.records import jsonable
from fedcore.coordinator.reports import (
    check_eval_report,
    check_train_report,
    pooled_metrics,
)
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import PayloadTooLarge, receive_chunks

dtypes = st.sampled_from([*WIRE_DTYPES, "", "float16", "object", "<f4", "float32\x00"])
vectors = st.builds(pb.Vector, dtype=dtypes, length=big, data=st.binary(max_size=96))


def _valid_vector(draw_dtype: str, n: int) -> pb.Vector:
    arr = np.arange(n, dtype=WIRE_DTYPES[draw_dtype])
    return pb.Vector(dtype=draw_dtype, length=n, data=arr.tobytes())


@pytest.mark.parametrize("profile", PROFILES)
def test_decode_vector_decodes_what_it_declares_or_refuses(profile):
    @given(
        msg=st.one_of(vectors, st.builds(_valid_vector, st.sampled_from(list(WIRE_DTYPES)), st.integers(0, 12))),
        want=st.one_of(st.none(), dtypes),
        length=st.one_of(st.none(), st.integers(0, 16)),
        seed=st.integers(0, 99),
    )
    def prop(msg, want, length, seed):
        if seed % 3 == 0:
            try:
                msg = pb.Vector.FromString(mutate(msg.SerializeToString(), seed))
            except Exception:  # noqa: BLE001 - bytes gRPC would refuse to parse never reach a decoder
                return
        try:
            arr = decode_vector(msg, dtype=want, length=length)
        except InvalidPayload:
            return
        assert arr.shape == (msg.length,) and arr.dtype.itemsize * msg.length == len(msg.data)
        assert np.isfinite(arr).all() if arr.dtype.kind == "f" else True

    assert run_property(prop, profile, "decode_vector") >= 100


def test_a_huge_declared_length_allocates_nothing():
    tracemalloc.start()
    with pytest.raises(InvalidPayload, match="need"):
        decode_vector(pb.Vector(dtype="float64", length=2**60, data=b"\0" * 8))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


specs = st.lists(
    st.builds(
        pb.TensorSpec,
        name=st.text(max_size=8),
        shape=st.lists(st.one_of(st.integers(-2, 4), st.integers(-(2**63), 2**63 - 1)), max_size=4),
        dtype=st.sampled_from(["float32", "float64", ""]),
    ),
    max_size=3,
)


@pytest.mark.parametrize("profile", PROFILES)
def test_decode_model_decodes_its_spec_or_refuses(profile):
    @given(tensors=specs, params=vectors, round_=big)
    def prop(tensors, params, round_):
        msg = pb.Model(spec=pb.ParamSpec(tensors=tensors), params=params, round=round_)
        try:
            vec, spec, r = decode_model(msg)
        except InvalidPayload:
            return
        assert vec.shape == (spec.size,) and spec.size == msg.params.length and r == round_
        assert all(d >= 0 for t in spec.tensors for d in t.shape)

    assert run_property(prop, profile, "decode_model") >= 100


LIMIT = 4096


@st.composite
def chunk_streams(draw):
    payload = draw(st.binary(max_size=600))
    total = draw(st.one_of(st.just(len(payload)), big, st.integers(0, LIMIT + 5)))
    digest = draw(st.one_of(st.just(hashlib.sha256(payload).digest()), st.binary(min_size=32, max_size=32)))
    step = draw(st.integers(1, 700))
    chunks = [pb.Chunk(header=pb.StreamHeader(total_size=total, sha256=digest))]
    chunks += [pb.Chunk(data=payload[i : i + step]) for i in range(0, len(payload), step)]
    if draw(st.booleans()) and chunks:
        del chunks[draw(st.integers(0, len(chunks) - 1))]
    if draw(st.booleans()):
        chunks.insert(
            draw(st.integers(0, len(chunks))),
            draw(st.sampled_from([pb.Chunk(), chunks[0] if chunks else pb.Chunk(), pb.Chunk(data=b"\x01")])),
        )
    return chunks


@pytest.mark.parametrize("profile", PROFILES)
def test_chunk_reassembly_matches_its_header_or_refuses(profile):
    @given(chunks=chunk_streams())
    def prop(chunks):
        try:
            got = receive_chunks(iter(chunks), LIMIT)
        except PayloadTooLarge:
            assert chunks[0].header.total_size > LIMIT
            return
        except InvalidPayload:
            return
        assert len(got.payload) == got.header.total_size <= LIMIT
        assert hashlib.sha256(got.payload).digest() == got.header.sha256

    assert run_property(prop, profile, "receive_chunks") >= 100


def test_a_stream_that_announces_much_and_sends_little_costs_what_it_sent():
    """The receive buffer grows with the data, never from the peer's total_size."""
    head = pb.Chunk(header=pb.StreamHeader(total_size=512 << 20, sha256=b"\0" * 32))
    tracemalloc.start()
    with pytest.raises(InvalidPayload, match="ended after 3 of"):
        receive_chunks(iter([head, pb.Chunk(data=b"abc")]), 1 << 30)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


metrics = st.dictionaries(st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True), max_size=3)


@pytest.mark.parametrize("profile", PROFILES)
def test_report_checks_pass_only_reports_the_coordinator_can_use(profile):
    privacy = st.builds(
        pb.PrivacyReport,
        enabled=st.booleans(),
        epsilon=st.floats(),
        delta=st.floats(),
        noise_multiplier=st.floats(),
        target_epsilon=st.floats(),
        steps=big,
    )
    train = st.builds(
        pb.TrainReport, ready=st.booleans(), metrics=metrics, privacy=privacy, refusal=st.text(max_size=20)
    )
    counts = st.one_of(st.integers(0, 5), st.integers(0, 2**64 - 1))
    evaluate = st.builds(
        pb.EvaluateReport,
        metrics=metrics,
        num_examples=big,
        num_classes=st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1)),
        confusion=st.lists(counts, max_size=17),
    )

    @given(t=train, reports=st.lists(evaluate, min_size=1, max_size=3))
    def prop(t, reports):
        try:
            check_train_report(t, "fuzz")
        except InvalidPayload:
            pass
        else:
            json.dumps(jsonable(dict(t.metrics)), allow_nan=False)
        kept = {}
        for i, r in enumerate(reports):
            first = next(iter(kept.values()), None)
            try:
                check_eval_report(r, f"c{i}", int(first.num_classes) if first and first.num_classes else None)
            except InvalidPayload:
                continue
            kept[f"c{i}"] = r
        pooled = pooled_metrics(kept)  # what close_evaluate does with the accepted reports
        json.dumps(jsonable(pooled), allow_nan=False)

    assert run_property(prop, profile, "check_train_report/check_eval_report") >= 100


def test_confusion_counts_that_would_overflow_the_pooled_matrix_are_refused():
    """Found by fuzzing: 2^63 examples in one cell passed the sum check and wrapped to a negative
    pooled count (accuracy 1.0, UAR 0.0)."""
    report = pb.EvaluateReport(num_classes=1, confusion=[2**63], num_examples=2**63)
    with pytest.raises(InvalidPayload, match="num_examples must be <="):
        check_eval_report(report, "mallory", None)
