"""The coordinator's gRPC service over real mTLS on a loopback port: identity, refusals, streams."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from fedcore_testkit import FED, TinyWorkload, make_engine, packed
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcore.common.params import decode_model, encode_vector
from fedcore.common.stages import Stage
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.channel import open_channel
from fedcore.transport.chunks import send_chunks, sha256
from fedcore.transport.options import CHUNK_SIZE, channel_options
from fedcore.transport.server import serve


@pytest.fixture
def served(tmp_path, pki):
    """An engine (fake clock, 2 rounds, min 2 clients, no statistics) behind a TLS server."""
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    servicer = FederationServicer(engine, insecure=False, max_payload_bytes=64 * 1024)
    bound = serve(servicer, "127.0.0.1:0", pki.tls("server"))
    yield engine, bound.port
    bound.stop(grace=None)


class Peer:
    def __init__(self, pki, who, port, *, claim=None, foreign=False, fed=FED):
        self.channel = open_channel(f"127.0.0.1:{port}", pki.tls(who, foreign=foreign))
        self.stub = pb_grpc.FederationStub(self.channel)
        self.cid = claim or who
        self.fed = fed

    def hdr(self, task: pb.Task | None = None) -> pb.Header:
        h = pb.Header(federation_id=self.fed, client_id=self.cid)
        if task is not None:
            h.round, h.stage, h.attempt = task.header.round, task.header.stage, task.header.attempt
        return h

    def join(self):
        return self.stub.Join(pb.JoinRequest(header=self.hdr()), timeout=10)

    def task(self) -> pb.Task:
        return self.stub.GetTask(pb.TaskRequest(header=self.hdr()), timeout=10)

    def submit_bytes(self, header: pb.Header, payload: bytes) -> pb.SubmitReply:
        return self.stub.Submit(send_chunks(header, payload), timeout=60)

    def submit(self, task: pb.Task, msg) -> pb.SubmitReply:
        return self.submit_bytes(self.hdr(task), packed(msg))


def _code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


def _to_aggregate(engine, peers):
    for p in peers:
        p.join()
    engine.tick()
    for p in peers:
        p.submit(p.task(), pb.TrainReport(ready=True))
    engine.tick()
    assert engine.state.phase == Phase.AGGREGATE


def test_client_without_a_certificate_is_refused(served, pki):
    engine, port = served
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)  # trusts the server, presents nothing
    channel = grpc.secure_channel(f"127.0.0.1:{port}", creds, options=channel_options())
    stub = pb_grpc.FederationStub(channel)
    with pytest.raises(grpc.RpcError) as exc:
        stub.Join(pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="alice")), timeout=5)
    assert _code(exc) == grpc.StatusCode.UNAVAILABLE
    assert "alice" not in engine.registry


def test_certificate_from_another_ca_is_refused(served, pki):
    engine, port = served
    from fedcore.transport.tls import TlsMaterial

    foreign = pki.tls("alice", foreign=True)
    tls = TlsMaterial(pki.ca_pem, foreign.cert_pem, foreign.key_pem)  # trusts our server, foreign client cert
    stub = pb_grpc.FederationStub(open_channel(f"127.0.0.1:{port}", tls))
    with pytest.raises(grpc.RpcError) as exc:
        stub.Join(pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="alice")), timeout=5)
    assert _code(exc) == grpc.StatusCode.UNAVAILABLE
    assert "alice" not in engine.registry


def test_insecure_client_cannot_talk_to_the_tls_server(served):
    _engine, port = served
    stub = pb_grpc.FederationStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    with pytest.raises(grpc.RpcError) as exc:
        stub.Join(pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="alice")), timeout=5)
    assert _code(exc) == grpc.StatusCode.UNAVAILABLE


def test_claimed_id_differing_from_the_certificate_is_permission_denied(served, pki):
    engine, port = served
    mallory = Peer(pki, "alice", port, claim="bob")
    with pytest.raises(grpc.RpcError) as exc:
        mallory.join()
    assert _code(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert "'bob' differs from the certificate's name 'alice'" in exc.value.details()
    assert "bob" not in engine.registry and "alice" not in engine.registry


def test_foreign_federation_id_is_permission_denied(served, pki):
    _engine, port = served
    with pytest.raises(grpc.RpcError) as exc:
        Peer(pki, "alice", port, fed="other").join()
    assert _code(exc) == grpc.StatusCode.PERMISSION_DENIED


def test_join_reply_carries_the_mode_and_heartbeat(served, pki):
    from fedcore.transport.settings import from_config

    _engine, port = served
    reply = Peer(pki, "alice", port).join()
    settings = from_config(reply.settings)
    assert settings["aggregation"] == "plain" and settings["rounds"] == 2
    assert settings["mode_settings"]["min_clients"] == 2 and reply.heartbeat_interval == 1.0


def test_wrong_stage_is_failed_precondition_and_changes_nothing(served, pki):
    engine, port = served
    alice, bob = Peer(pki, "alice", port), Peer(pki, "bob", port)
    alice.join()
    bob.join()
    engine.tick()
    task = alice.task()
    assert task.header.stage == Stage.TRAIN
    stale = alice.hdr(task)
    stale.round += 1
    with pytest.raises(grpc.RpcError) as exc:
        alice.submit_bytes(stale, packed(pb.TrainReport(ready=True)))
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION and "expected round 1" in exc.value.details()
    assert engine.state.stage.responded == set() and not engine.state.train_reports


def test_nan_update_is_invalid_argument_and_discarded(served, pki):
    engine, port = served
    peers = [Peer(pki, "alice", port), Peer(pki, "bob", port)]
    _to_aggregate(engine, peers)
    alice = peers[0]
    task = alice.task()
    vec = np.zeros(engine.state.spec.size)
    vec[3] = np.nan
    with pytest.raises(grpc.RpcError) as exc:
        alice.submit(task, pb.PlainInput(weighted_update=encode_vector(vec, "float64"), weight=1.0))
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in exc.value.details()
    assert "alice" in engine.state.stage.pending
    good = pb.PlainInput(weighted_update=encode_vector(np.ones(engine.state.spec.size), "float64"), weight=1.0)
    assert alice.submit(task, good).duplicate is False
    assert alice.submit(task, good).duplicate is True  # idempotent over the wire too


def test_payload_over_the_limit_is_refused_before_it_is_read(served, pki):
    engine, port = served
    alice = Peer(pki, "alice", port)
    alice.join()
    Peer(pki, "bob", port).join()
    engine.tick()
    task = alice.task()

    def chunks():
        yield pb.Chunk(header=pb.StreamHeader(header=alice.hdr(task), total_size=10**12, sha256=b"\0" * 32))
        yield pb.Chunk(data=b"x" * 1000)

    with pytest.raises(grpc.RpcError) as exc:
        alice.stub.Submit(chunks(), timeout=10)
    assert _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED and "exceeds the limit" in exc.value.details()
    assert engine.state.stage.responded == set()


def test_hash_mismatch_is_invalid_argument(served, pki):
    engine, port = served
    alice = Peer(pki, "alice", port)
    alice.join()
    Peer(pki, "bob", port).join()
    engine.tick()
    task = alice.task()
    payload = packed(pb.TrainReport(ready=True))

    def chunks():
        yield pb.Chunk(
            header=pb.StreamHeader(header=alice.hdr(task), total_size=len(payload), sha256=sha256(payload[:-1] + b"?"))
        )
        yield pb.Chunk(data=payload)

    with pytest.raises(grpc.RpcError) as exc:
        alice.stub.Submit(chunks(), timeout=10)
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT and "SHA-256" in exc.value.details()
    assert engine.state.stage.responded == set()


def test_chunk_larger_than_4_mib_is_refused(served, pki):
    engine, port = served
    alice = Peer(pki, "alice", port)
    alice.join()
    Peer(pki, "bob", port).join()
    engine.tick()
    task = alice.task()
    big = b"\0" * (CHUNK_SIZE + 100_000)

    def chunks():
        yield pb.Chunk(header=pb.StreamHeader(header=alice.hdr(task), total_size=len(big), sha256=sha256(big)))
        yield pb.Chunk(data=big)

    with pytest.raises(grpc.RpcError) as exc:
        alice.stub.Submit(chunks(), timeout=10)
    assert _code(exc) in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    assert engine.state.stage.responded == set()


def test_health_service_reports_serving(served, pki):
    _engine, port = served
    channel = open_channel(f"127.0.0.1:{port}", pki.tls("alice"))
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="fedpsyau.v1.Federation"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_model_download_matches_the_task_hash(served, pki):
    engine, port = served
    alice = Peer(pki, "alice", port)
    alice.join()
    Peer(pki, "bob", port).join()
    engine.tick()
    task = alice.task()
    train = pb.TrainTask()
    task.body.Unpack(train)
    chunks = list(alice.stub.Download(pb.DownloadRequest(header=alice.hdr(task), blob=train.model_blob), timeout=10))
    head = chunks[0].header
    payload = b"".join(c.data for c in chunks[1:])
    assert head.sha256 == train.model_sha256 == sha256(payload) and head.total_size == len(payload)
    model = pb.Model()
    model.ParseFromString(payload)
    np.testing.assert_array_equal(decode_model(model)[0], np.arange(8, dtype=np.float32))
