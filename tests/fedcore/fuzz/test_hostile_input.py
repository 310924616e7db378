"""Named hostile inputs: replays, impersonation, oversized and truncated streams, garbage TenSEAL
bytes, and path tricks in config and data paths. Each says what it guards in its name."""

from __future__ import annotations

import hashlib
import os

import grpc
import numpy as np
import pytest
from fedcore_testkit import (
    FED,
    ScriptedClient,
    TinyWorkload,
    make_engine,
    packed,
    served_engine,
)
from fuzz_kit import Aborted, FakeContext, call

from fedcore.common.errors import ConfigError, InvalidPayload
from fedcore.common.stages import Stage
from fedcore.config.client import parse_client
from fedcore.config.coordinator import parse_coordinator, startup_summary
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.channel import open_channel
from fedcore.transport.chunks import send_chunks
from fedcore.transport.tls import TlsError, TlsMaterial


@pytest.fixture
def world(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    clients = {cid: ScriptedClient(engine, cid) for cid in ("alice", "bob", "carol")}
    for c in clients.values():
        c.join()
    engine.tick()
    return engine, FederationServicer(engine, max_payload_bytes=64 * 1024), clients


def _submit(servicer, cn: str, header: pb.Header, payload: bytes, total: int | None = None, cut: int | None = None):
    chunks = list(send_chunks(header, payload))
    if total is not None:
        chunks[0].header.total_size = total
    if cut is not None:
        chunks = [chunks[0], pb.Chunk(data=payload[:cut])]
    return servicer.Submit(iter(chunks), FakeContext(cn))


def _step_all(engine, clients, until) -> None:
    for _ in range(100):
        engine.tick()
        if until():
            return
        for c in clients.values():
            c.step()
    raise AssertionError(f"stuck in {engine.state.phase}")


def test_replayed_messages_of_an_earlier_round_are_refused_and_change_nothing(world):
    engine, servicer, clients = world
    recorded = []
    alice = clients["alice"]
    original = alice.submit

    def recording(msg, header=None):
        h = header if header is not None else alice.last_task.header
        recorded.append((pb.Header().FromString(h.SerializeToString()), packed(msg)))
        return original(msg, header)

    alice.submit = recording
    _step_all(engine, clients, lambda: engine.state.round == 2 and engine.state.phase == Phase.TRAIN)
    assert {Stage(h.stage) for h, _ in recorded} >= {Stage.TRAIN, Stage.PLAIN_INPUT, Stage.EVALUATE}
    before = (engine.state.round, engine.state.attempt, set(engine.state.stage.responded), engine.state.params.copy())
    for header, payload in recorded:  # every round-1 message, sent again during round 2
        with pytest.raises(Aborted) as exc:
            _submit(servicer, "alice", header, payload)
        assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION and "expected round 2" in exc.value.details
    assert (engine.state.round, engine.state.attempt, set(engine.state.stage.responded)) == before[:3]
    assert np.array_equal(engine.state.params, before[3])


def test_a_client_impersonating_another_is_refused_on_every_rpc(world):
    engine, servicer, _ = world
    claim = pb.Header(federation_id=FED, client_id="alice")
    current = engine.header("alice")
    for fn, request in (
        (servicer.Join, pb.JoinRequest(header=claim)),
        (servicer.GetTask, pb.TaskRequest(header=claim)),
        (servicer.Heartbeat, pb.HeartbeatRequest(header=claim)),
        (servicer.Download, pb.DownloadRequest(header=current, blob="model/0")),
    ):
        with pytest.raises(Aborted) as exc:
            call(fn, request, "bob")  # bob's certificate, alice's name in the header
        assert exc.value.code == grpc.StatusCode.PERMISSION_DENIED and "'bob'" in exc.value.details
    with pytest.raises(Aborted) as exc:
        _submit(servicer, "bob", current, packed(pb.TrainReport(ready=True)))
    assert exc.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "alice" not in engine.state.stage.responded


def test_impersonation_over_real_mtls_is_refused(tmp_path, pki):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    with served_engine(engine, pki) as port:
        stub = pb_grpc.FederationStub(open_channel(f"127.0.0.1:{port}", pki.tls("bob")))
        with pytest.raises(grpc.RpcError) as exc:
            stub.Join(pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="alice")), timeout=10)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "alice" not in engine.registry


def test_oversized_streams_are_refused_before_any_data_is_read(world):
    engine, servicer, _ = world
    with pytest.raises(Aborted) as exc:
        _submit(servicer, "alice", engine.header("alice"), b"x" * 10, total=64 * 1024 + 1)
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "exceeds the limit" in exc.value.details
    payload = b"y" * (64 * 1024 + 1)  # announced honestly, still too large
    with pytest.raises(Aborted) as exc:
        _submit(servicer, "alice", engine.header("alice"), payload)
    assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_truncated_and_padded_streams_are_refused_and_nothing_recorded(world):
    engine, servicer, _ = world
    payload = packed(pb.TrainReport(ready=True))
    for kwargs, words in (
        ({"cut": len(payload) // 2}, "ended after"),
        ({"total": len(payload) + 5}, "ended after"),
        ({"total": len(payload) - 1}, "exceeds its announced"),
    ):
        with pytest.raises(Aborted) as exc:
            _submit(servicer, "alice", engine.header("alice"), payload, **kwargs)
        assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and words in exc.value.details
    assert not engine.state.stage.responded
    bad_hash = list(send_chunks(engine.header("alice"), payload))
    bad_hash[0].header.sha256 = hashlib.sha256(b"other").digest()
    with pytest.raises(Aborted, match="SHA-256"):
        servicer.Submit(iter(bad_hash), FakeContext("alice"))
    assert _submit(servicer, "alice", engine.header("alice"), payload).message == "accepted"


def test_garbage_tenseal_bytes_are_refused_and_the_round_still_sums(tmp_path):
    from test_mode_fuzz import IDS, _answer, _at

    # the engine and client daemons (in-memory transport) bring the CKKS server to its input stage
    server, clients, jobs = _at(tmp_path, "ckks", Stage.CKKS_ENCRYPTED_INPUT, {})
    honest = {c: _answer(server, clients[c], Stage.CKKS_ENCRYPTED_INPUT, jobs[c]) for c in IDS}
    real = honest["client-01"].ciphertexts[0]
    rng = np.random.default_rng(0)
    garbage = [
        b"",
        os.urandom(40),
        b"\x5e\xa1" + os.urandom(100),
        real[:16] + os.urandom(len(real) - 16),
        real[: len(real) // 2],
        real + b"\0" * 32,
        real[:16] + bytes(len(real) - 16),
        bytes(rng.integers(0, 256, len(real), dtype=np.uint8)),
    ]
    for junk in garbage:
        body = ckpb.CkksEncryptedInput(key_id=honest["client-01"].key_id, ciphertexts=[junk])
        with pytest.raises(InvalidPayload):
            server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client-01", body)
    for c in IDS:
        server.accept(Stage.CKKS_ENCRYPTED_INPUT, c, honest[c])
    server.close_stage(Stage.CKKS_ENCRYPTED_INPUT, frozenset(IDS))
    for c in IDS:
        server.accept(Stage.CKKS_DECRYPT, c, _answer(server, clients[c], Stage.CKKS_DECRYPT, jobs[c]))
    server.close_stage(Stage.CKKS_DECRYPT, frozenset(IDS))
    result = server.result()
    want = sum(j.vector * j.weight for j in jobs.values())
    assert result.num_contributors == 4 and np.abs(result.weighted_sum - want).max() < 1e-4


def _coordinator_toml(tmp_path, **tls) -> dict:
    return {
        "federation": {"id": "f", "aggregation": "plain", "min_clients": 1},
        "server": {"run_dir": "../../run-outside"},
        "tls": tls,
    }


def test_path_tricks_in_coordinator_tls_paths_are_resolved_and_reported(tmp_path):
    base = tmp_path / "a" / "b"
    base.mkdir(parents=True)
    with pytest.raises(ConfigError) as exc:
        parse_coordinator(
            _coordinator_toml(tmp_path, ca="../../etc/passwd", cert="/etc/passwd", key="x/../../k.pem"), base
        )
    text = str(exc.value)
    # relative paths are taken from the config's folder and named in full, resolved: no silent cwd lookup
    assert f"[tls] ca: file not found: {(tmp_path / 'etc' / 'passwd').resolve()}" in text
    assert f"[tls] key: file not found: {(tmp_path / 'a' / 'k.pem').resolve()}" in text
    with pytest.raises(TlsError, match="is not PEM"):  # an existing non-PEM file is refused by content
        TlsMaterial.from_files("/etc/passwd", "/etc/passwd", "/etc/passwd")


def test_run_dir_outside_the_config_folder_is_resolved_explicitly_and_logged(tmp_path):
    base = tmp_path / "a" / "b"
    base.mkdir(parents=True)
    cfg = parse_coordinator(_coordinator_toml(tmp_path), base, insecure=True)
    assert cfg.server.run_dir == (tmp_path / "run-outside").resolve() and cfg.server.run_dir.is_absolute()
    assert any(str(cfg.server.run_dir) in line for line in startup_summary(cfg))


def test_data_paths_reach_the_workload_verbatim_with_an_absolute_config_dir(tmp_path):
    cfg = parse_client(
        {"client": {"id": "alice", "workdir": "../w"}, "workload": {"settings": {"data": "../../etc/passwd"}}},
        tmp_path / "c",
        insecure=True,
    )
    # fedcore never guesses which strings are paths: the workload resolves them against config_dir
    assert cfg.workload.settings["data"] == "../../etc/passwd"
    assert cfg.workload.settings["config_dir"] == str((tmp_path / "c").resolve())
    assert cfg.client.workdir == (tmp_path / "w").resolve()
    with pytest.raises(ConfigError, match=r"\[client\] id must be a non-empty name"):
        parse_client({"client": {"id": ""}}, tmp_path, insecure=True)


def test_an_empty_certificate_name_is_not_an_identity(world):
    _, servicer, _ = world
    with pytest.raises(Aborted) as exc:
        call(servicer.Join, pb.JoinRequest(header=pb.Header(federation_id=FED, client_id="")), "")
    assert exc.value.code == grpc.StatusCode.PERMISSION_DENIED and "empty" in exc.value.details


def test_a_secagg_share_replayed_into_another_attempt_is_refused():
    """Sealed shares bind federation, round, attempt, sender and receiver (AES-GCM associated data)."""
    from fedcore.secagg import wire

    ad1 = wire.share_ad(FED, 1, 0, "alice", "bob")
    key = os.urandom(32)
    token = wire.seal_share(key, ad1, "alice", "bob", b"\1" * 70, b"\2" * 70)
    assert wire.open_share(key, ad1, token).sender == "alice"
    from fedcore.crypto.recipes import InvalidToken

    for ad in (
        wire.share_ad(FED, 1, 1, "alice", "bob"),
        wire.share_ad(FED, 2, 0, "alice", "bob"),
        wire.share_ad(FED, 1, 0, "carol", "bob"),
    ):
        with pytest.raises(InvalidToken):
            wire.open_share(key, ad, token)
