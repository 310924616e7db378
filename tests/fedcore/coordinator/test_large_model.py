"""A 25M-parameter (100 MB) model pulled and a matching update submitted through chunked streams."""

from __future__ import annotations

import numpy as np
import pytest
from fedcore_testkit import FED, TinyWorkload, make_engine, packed

from fedcore.client.connection import Connection
from fedcore.common.params import decode_model, encode_vector
from fedcore.common.stages import Stage
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.chunks import sha256
from fedcore.transport.server import serve

P = 25_000_000


@pytest.mark.slow
def test_25m_parameter_model_pull_and_update_submit(tmp_path, pki):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False, size=P))
    bound = serve(FederationServicer(engine, max_payload_bytes=1 << 30), "127.0.0.1:0", pki.tls("server"))
    try:
        conns = {
            cid: Connection(
                f"127.0.0.1:{bound.port}", pki.tls(cid), client_id=cid, federation_id=FED, reconnect_timeout=5
            )
            for cid in ("alice", "bob")
        }
        for c in conns.values():
            c.join("test")
        engine.tick()
        alice = conns["alice"]
        task = alice.get_task(pb.Header())
        train = pb.TrainTask()
        task.body.Unpack(train)
        payload = alice.download(task.header, train.model_blob, expected_sha256=train.model_sha256)
        assert len(payload) > 4 * P and sha256(payload) == train.model_sha256
        model = pb.Model()
        model.ParseFromString(payload)
        params, _spec, _ = decode_model(model)
        assert params.shape == (P,) and params[-1] == np.float32(P - 1)
        del payload, model
        for c in conns.values():
            t = c.get_task(pb.Header())
            assert c.submit(t.header, packed(pb.TrainReport(ready=True))).duplicate is False
        engine.tick()
        assert engine.state.phase == Phase.AGGREGATE
        task = alice.get_task(pb.Header())
        assert task.header.stage == Stage.PLAIN_INPUT
        update = np.full(P, 0.5) * 3.0  # weight 3
        body = packed(pb.PlainInput(weighted_update=encode_vector(update, "float64"), weight=3.0))
        assert len(body) > 8 * P  # 200 MB through the client stream
        reply = alice.submit(task.header, body)
        assert not reply.duplicate and "alice" in engine.state.stage.responded
        assert engine.state.submissions[(int(Stage.PLAIN_INPUT), "alice")] == sha256(body)
        for c in conns.values():
            c.close()
    finally:
        bound.stop(grace=None)
