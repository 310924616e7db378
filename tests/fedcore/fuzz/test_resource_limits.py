"""Every [limits] bound is enforced: max_clients, max_payload_bytes, max_concurrent_streams, and the
per-client bounds (one upload in flight per client, max_client_bytes_per_round)."""

from __future__ import annotations

import threading

import grpc
import pytest
from fedcore_testkit import FED, ScriptedClient, TinyWorkload, make_engine, packed
from fuzz_kit import Aborted, FakeContext, call

from fedcore.common.errors import ConfigError
from fedcore.config.coordinator import parse_coordinator
from fedcore.coordinator.servicer import FederationServicer
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import send_chunks


def _engine(tmp_path, **limits):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), limits=limits)
    for cid in ("alice", "bob"):
        ScriptedClient(engine, cid).join()
    engine.tick()
    return engine


class HeldStream:
    """A Submit stream that sends its header and then waits (a slow or stalled uploader)."""

    def __init__(self, servicer, engine, cn: str, total: int = 100):
        self.release = threading.Event()
        self.result: list = []
        head = next(iter(send_chunks(engine.header(cn), b"\0" * total)))

        def chunks():
            yield head
            self.release.wait(10)

        def run():
            try:
                self.result.append(servicer.Submit(chunks(), FakeContext(cn)))
            except Aborted as exc:
                self.result.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_inside(self, servicer, cn) -> None:
        for _ in range(200):
            if cn in servicer._uploading:
                return
            self.thread.join(0.01)
        raise AssertionError("the held stream never started")

    def finish(self):
        self.release.set()
        self.thread.join(10)
        return self.result[0]


def _submit(servicer, engine, cn, payload=b"", total=None):
    chunks = list(send_chunks(engine.header(cn), payload))
    if total is not None:
        chunks[0].header.total_size = total
    return servicer.Submit(iter(chunks), FakeContext(cn))


def test_max_clients_refuses_the_next_join_with_resource_exhausted(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), limits={"max_clients": 2})
    servicer = FederationServicer(engine)
    for cid in ("alice", "bob"):
        call(servicer.Join, pb.JoinRequest(header=pb.Header(federation_id=FED, client_id=cid)), cid)
    with pytest.raises(Aborted) as exc:
        call(servicer.Join, pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="carol")), "carol")
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "full (2 clients)" in exc.value.details
    call(servicer.Join, pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="alice")), "alice")  # re-join ok


def test_max_payload_bytes_is_checked_against_the_announced_size(tmp_path):
    engine = _engine(tmp_path)
    servicer = FederationServicer(engine, max_payload_bytes=1000)
    with pytest.raises(Aborted) as exc:
        _submit(servicer, engine, "alice", b"", total=1001)
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _submit(servicer, engine, "alice", packed(pb.TrainReport(ready=True))).message == "accepted"


def test_max_concurrent_streams_refuses_a_transfer_beyond_the_limit(tmp_path):
    engine = _engine(tmp_path)
    servicer = FederationServicer(engine, max_concurrent_streams=1)
    held = HeldStream(servicer, engine, "alice")
    held.wait_inside(servicer, "alice")
    with pytest.raises(Aborted) as exc:
        _submit(servicer, engine, "bob", packed(pb.TrainReport(ready=True)))
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 1" in exc.value.details
    with pytest.raises(Aborted) as exc:  # a Download needs a transfer slot too
        call(servicer.Download, pb.DownloadRequest(header=engine.header("bob"), blob="model/0"), "bob")
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(held.finish(), Aborted)  # the held stream ended truncated
    assert _submit(servicer, engine, "bob", packed(pb.TrainReport(ready=True))).message == "accepted"


def test_one_client_holds_at_most_one_upload_at_a_time(tmp_path):
    engine = _engine(tmp_path)
    servicer = FederationServicer(engine, max_concurrent_streams=8)
    held = HeldStream(servicer, engine, "alice")
    held.wait_inside(servicer, "alice")
    with pytest.raises(Aborted) as exc:
        _submit(servicer, engine, "alice", packed(pb.TrainReport(ready=True)))
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already has a Submit stream" in exc.value.details
    assert _submit(servicer, engine, "bob", packed(pb.TrainReport(ready=True))).message == "accepted"
    held.finish()


def test_a_client_cannot_upload_more_than_its_per_round_budget(tmp_path):
    engine = _engine(tmp_path)
    servicer = FederationServicer(engine, max_payload_bytes=1000, max_client_bytes_per_round=2500)
    for _ in range(2):  # two announced-but-truncated 1000-byte streams are charged in full
        with pytest.raises(Aborted) as exc:
            _submit(servicer, engine, "alice", b"x", total=1000)
        assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(Aborted) as exc:
        _submit(servicer, engine, "alice", b"", total=600)
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "per-client limit of 2500" in exc.value.details
    assert _submit(servicer, engine, "bob", packed(pb.TrainReport(ready=True))).message == "accepted"
    engine.state.round += 1  # a new round gives every client a fresh budget
    assert servicer._begin_upload("alice", 2500) is None


def test_limits_are_validated_in_the_config(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_coordinator(
            {
                "federation": {"aggregation": "plain", "min_clients": 3, "min_available": 9},
                "limits": {
                    "max_clients": 2,
                    "max_payload_bytes": 0,
                    "max_concurrent_streams": -1,
                    "max_client_bytes_per_round": -5,
                },
            },
            tmp_path,
            insecure=True,
        )
    text = str(exc.value)
    for words in (
        "max_clients (2) is below",
        "max_payload_bytes must be > 0",
        "max_concurrent_streams must be > 0",
        "max_client_bytes_per_round must be >= 0",
        "min_available must be in [0, max_clients=2]",
    ):
        assert words in text


def test_min_available_waits_for_a_late_joiner_up_to_the_join_deadline(tmp_path):
    """Without it the fourth client of a CKKS federation that joins a moment after the third
    misses the once-per-run key exchange and sits out every round."""
    from fedcore.coordinator.state import Phase

    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), federation={"min_available": 3})
    for cid in ("alice", "bob"):  # min_clients (2) joined: not enough to start yet
        ScriptedClient(engine, cid).join()
    engine.tick()
    assert engine.state.phase == Phase.JOINING
    ScriptedClient(engine, "carol").join()
    engine.tick()
    assert engine.state.phase == Phase.TRAIN and set(engine.state.selected) == {"alice", "bob", "carol"}
    late = make_engine(tmp_path / "late", workload=TinyWorkload(stats=False), federation={"min_available": 3})
    pair = [ScriptedClient(late, cid) for cid in ("alice", "bob")]
    for c in pair:
        c.join()
    late.tick()
    waited = 0.0
    while late.state.phase == Phase.JOINING and waited < 60:  # nobody else comes: start with min_clients
        late.clock.advance(0.5)
        waited += 0.5
        for c in pair:
            c.heartbeat()
        late.tick()
    assert waited >= late.cfg.deadlines.join
    assert late.state.phase == Phase.TRAIN and set(late.state.selected) == {"alice", "bob"}
