"""The plain mode streams: each accepted update goes into the running sum and is dropped; what the
server keeps per client is a digest, so a resubmission is ignored if identical and refused if not."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.common.aggregation import AggregationContext, ClientJob
from fedcore.common.errors import AggregationAborted, InvalidPayload
from fedcore.common.params import encode_vector
from fedcore.common.stages import Stage
from fedcore.plain import PlainClient, PlainServer
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

IDS = ("a", "b", "c", "d")
L = 257


def _server(min_clients: int = 1) -> PlainServer:
    server = PlainServer("fed", {"min_clients": min_clients})
    server.begin(AggregationContext("fed", 1, 0, IDS, L, {}, max_weight=100.0))
    return server


def _body(vec, w) -> pb.PlainInput:
    return pb.PlainInput(weighted_update=encode_vector(np.asarray(vec, np.float64) * w, "float64"), weight=w)


def test_sum_is_exact_and_no_update_is_kept():
    rng = np.random.default_rng(0)
    vecs = {c: rng.normal(size=L) for c in IDS}
    weights = {c: float(i + 1) for i, c in enumerate(IDS)}
    server = _server()
    for c in IDS:
        server.accept(Stage.PLAIN_INPUT, c, _body(vecs[c], weights[c]))
        # what the server holds: the running sum, the total weight and one digest per client
        held = [v for v in vars(server).values() if isinstance(v, np.ndarray)]
        assert len(held) == 1 and held[0].shape == (L,)
    server.close_stage(Stage.PLAIN_INPUT, frozenset(IDS))
    res = server.result()
    want = sum(weights[c] * vecs[c] for c in IDS)  # same order of additions as the server
    np.testing.assert_array_equal(res.weighted_sum, want)
    assert res.total_weight == 10.0 and res.num_contributors == 4


def test_identical_resubmission_is_ignored_different_is_refused():
    server = _server()
    body = _body(np.ones(L), 2.0)
    server.accept(Stage.PLAIN_INPUT, "a", body)
    server.accept(Stage.PLAIN_INPUT, "a", body)
    for other in (_body(np.ones(L), 3.0), _body(np.full(L, 0.5), 2.0)):
        with pytest.raises(InvalidPayload, match="already submitted a different update"):
            server.accept(Stage.PLAIN_INPUT, "a", other)
    server.close_stage(Stage.PLAIN_INPUT, frozenset({"a"}))
    res = server.result()
    np.testing.assert_array_equal(res.weighted_sum, np.full(L, 2.0))
    assert res.total_weight == 2.0 and res.num_contributors == 1


def test_bad_updates_never_reach_the_sum():
    server = _server()
    bad = [
        _body(np.full(L, np.nan), 1.0),
        _body(np.ones(L), 0.0),
        _body(np.ones(L), 1e9),
        pb.PlainInput(weighted_update=encode_vector(np.ones(L - 1), "float64"), weight=1.0),
    ]
    for body in bad:
        with pytest.raises(InvalidPayload):
            server.accept(Stage.PLAIN_INPUT, "a", body)
    with pytest.raises(InvalidPayload, match="not a participant"):
        server.accept(Stage.PLAIN_INPUT, "zed", _body(np.ones(L), 1.0))
    server.accept(Stage.PLAIN_INPUT, "a", _body(np.ones(L), 1.0))  # "a" was not marked by the refusals
    server.close_stage(Stage.PLAIN_INPUT, frozenset({"a"}))
    np.testing.assert_array_equal(server.result().weighted_sum, np.ones(L))


def test_too_few_updates_abort():
    server = _server(min_clients=3)
    for c in IDS[:2]:
        server.accept(Stage.PLAIN_INPUT, c, _body(np.ones(L), 1.0))
    with pytest.raises(AggregationAborted, match="at least 3"):
        server.close_stage(Stage.PLAIN_INPUT, frozenset(IDS[:2]))


def test_client_weights_and_clips_its_weight():
    client = PlainClient(None, "fed", {"max_weight": 5.0})
    msg = client.handle(Stage.PLAIN_INPUT, None, ClientJob(1, 0, np.ones(3), 9.0), None)
    assert msg.weight == 5.0
