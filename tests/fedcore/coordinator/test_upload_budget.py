"""The coordinator's upload budget over real mTLS: uploads beyond it are told to retry, and nothing is lost.

The servicer admits Submit streams while the announced bytes in flight stay within
``max_upload_bytes_in_flight``; one more is refused with RESOURCE_EXHAUSTED and a retry hint, the
client's Connection retries it after the hint, and the round's sum is still exact.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from fedcore_testkit import FED, TinyWorkload, make_engine, packed

from fedcore.client.connection import Connection
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.coordinator.servicer import UPLOAD_RETRY_AFTER, FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import send_chunks
from fedcore.transport.server import serve
from fedcore.transport.status import RETRY_AFTER_KEY, retry_hint

SIZE = 1000
CLIENTS = ("alice", "bob", "carol")


def _update(i: int) -> tuple[np.ndarray, float]:
    w = float(i + 1)
    return np.full(SIZE, float(i + 1)) * w, w  # integers: the float64 sum is exact


def _body(i: int) -> bytes:
    vec, w = _update(i)
    return packed(pb.PlainInput(weighted_update=encode_vector(vec, "float64"), weight=w))


@pytest.fixture
def federation(tmp_path, pki):
    """Three clients at PLAIN_INPUT behind a servicer whose budget holds exactly two updates."""
    engine = make_engine(
        tmp_path,
        workload=TinyWorkload(stats=False, size=SIZE),
        federation={"min_clients": 3},
    )
    budget = 2 * len(_body(2))
    servicer = FederationServicer(engine, max_payload_bytes=1 << 20, max_upload_bytes_in_flight=budget)
    bound = serve(servicer, "127.0.0.1:0", pki.tls("server"))
    conns = {
        cid: Connection(f"127.0.0.1:{bound.port}", pki.tls(cid), client_id=cid, federation_id=FED, reconnect_timeout=20)
        for cid in CLIENTS
    }
    try:
        for c in conns.values():
            c.join("test")
        engine.tick()
        for c in conns.values():
            t = c.get_task(pb.Header())
            c.submit(t.header, packed(pb.TrainReport(ready=True)))
        engine.tick()
        assert engine.state.phase == Phase.AGGREGATE
        tasks = {cid: c.get_task(pb.Header()) for cid, c in conns.items()}
        assert all(t.header.stage == Stage.PLAIN_INPUT for t in tasks.values())
        yield engine, servicer, conns, tasks
    finally:
        for c in conns.values():
            c.close()
        bound.stop(grace=None)


class Held:
    """A Submit stream that sends its header, then waits for ``go`` before its data."""

    def __init__(self, conn: Connection, header: pb.Header, body: bytes):
        self.go = threading.Event()
        self.reply: list = []
        chunks = list(send_chunks(header, body))

        def stream():
            yield chunks[0]
            self.go.wait(20)
            yield from chunks[1:]

        self.thread = threading.Thread(
            target=lambda: self.reply.append(conn.stub.Submit(stream(), timeout=30)), daemon=True
        )
        self.thread.start()

    def finish(self) -> pb.SubmitReply:
        self.go.set()
        self.thread.join(20)
        return self.reply[0]


def _until(cond, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_an_upload_beyond_the_budget_is_told_to_retry_and_the_sum_stays_exact(federation):
    engine, servicer, conns, tasks = federation
    held = [Held(conns[c], conns[c].header(*_hdr(tasks[c])), _body(i)) for i, c in enumerate(CLIENTS[:2])]
    _until(lambda: servicer.in_flight == len(_body(0)) + len(_body(1)), "two uploads in flight")

    # a raw third stream: refused at once, RESOURCE_EXHAUSTED with the retry hint, nothing recorded
    carol = conns["carol"]
    with pytest.raises(grpc.RpcError) as exc:
        carol.stub.Submit(send_chunks(carol.header(*_hdr(tasks["carol"])), _body(2)), timeout=10)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_upload_bytes_in_flight" in exc.value.details()
    assert retry_hint(exc.value) == pytest.approx(UPLOAD_RETRY_AFTER)
    assert "carol" in engine.state.stage.pending and servicer.refused_busy == 1

    # the client daemon's Connection retries after the hint; the held uploads finish meanwhile
    result: list = []
    retrying = threading.Thread(
        target=lambda: result.append(carol.submit(carol.header(*_hdr(tasks["carol"])), _body(2))), daemon=True
    )
    retrying.start()
    _until(lambda: servicer.refused_busy >= 2, "the retried upload to be refused once more")
    for h in held:
        assert h.finish().message == "accepted"
    retrying.join(20)
    assert result and result[0].message == "accepted" and not result[0].duplicate
    assert servicer.in_flight == 0

    agg = engine.mode.result()
    want = sum(_update(i)[0] for i in range(3))
    assert np.array_equal(agg.weighted_sum, want) and agg.total_weight == 6.0
    engine.tick()
    assert engine.state.phase != Phase.AGGREGATE  # all three in: the stage closed


def test_one_upload_larger_than_the_budget_is_admitted_alone(federation):
    _engine, servicer, conns, tasks = federation
    servicer.upload_budget = 10  # smaller than any update
    for i, cid in enumerate(CLIENTS):
        reply = conns[cid].submit(conns[cid].header(*_hdr(tasks[cid])), _body(i))
        assert reply.message == "accepted"
    assert servicer.refused_busy == 0 and servicer.in_flight == 0


def test_the_budget_is_released_when_an_upload_is_refused(federation):
    _engine, servicer, conns, tasks = federation
    alice = conns["alice"]
    bad = packed(pb.PlainInput(weighted_update=encode_vector(np.full(SIZE, np.nan), "float64"), weight=1.0))
    with pytest.raises(Exception, match="NaN"):
        alice.submit(alice.header(*_hdr(tasks["alice"])), bad)
    assert servicer.in_flight == 0 and not servicer._uploading
    assert alice.submit(alice.header(*_hdr(tasks["alice"])), _body(0)).message == "accepted"


def test_a_client_waits_at_least_the_retry_hint(federation):
    _engine, servicer, conns, tasks = federation
    held = Held(conns["alice"], conns["alice"].header(*_hdr(tasks["alice"])), _body(0))
    _until(lambda: servicer.in_flight > 0, "one upload in flight")
    servicer.upload_budget = servicer.in_flight  # nothing more fits
    bob = conns["bob"]
    t0 = time.monotonic()
    done: list = []
    thread = threading.Thread(
        target=lambda: done.append(bob.submit(bob.header(*_hdr(tasks["bob"])), _body(1))), daemon=True
    )
    thread.start()
    _until(lambda: servicer.refused_busy >= 1, "bob refused")
    time.sleep(UPLOAD_RETRY_AFTER / 2)
    held.finish()
    thread.join(20)
    assert done and done[0].message == "accepted"
    assert time.monotonic() - t0 >= UPLOAD_RETRY_AFTER  # not the 0.2 s +- 25 % first backoff alone
    assert servicer.refused_busy == 1  # one refusal, one retry after the hint


def test_retry_hint_reads_the_trailing_metadata():
    class Err:
        def __init__(self, md):
            self.md = md

        def trailing_metadata(self):
            return self.md

    assert retry_hint(Err(((RETRY_AFTER_KEY, "250"),))) == 0.25
    assert retry_hint(Err((("other", "1"),))) is None
    assert retry_hint(Err(((RETRY_AFTER_KEY, "soon"),))) is None
    assert retry_hint(Err(((RETRY_AFTER_KEY, "-5"),))) is None
    assert retry_hint(ValueError()) is None


def _hdr(task: pb.Task) -> tuple[int, int, int]:
    return task.header.round, task.header.stage, task.header.attempt
