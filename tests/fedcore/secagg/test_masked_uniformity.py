"""What the coordinator receives from one client looks uniform on Z_2^32, while the unmasked sum
is the plaintext sum.

The round runs the coordinator's engine and the client daemons over the in-memory transport: the
clients' modes are the daemons' own (stochastic rounding from the CSPRNG, the production path), and
what the coordinator got is the submission's bytes as the engine was handed them.
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import any_pb2
from scipy import stats

from fedcore.common.params import decode_vector
from fedcore.proto.fedpsyau.v1 import secagg_pb2 as spb
from fedcore.secagg import quantize as qz
from fedcore.secagg.state import SecAggStage

L = 1 << 16
P_FLOOR = 1e-6  # a test at this level fails by chance once in a million runs


def byte_chi2_pvalue(words: np.ndarray) -> float:
    counts = np.bincount(words.view(np.uint8), minlength=256)
    return float(stats.chisquare(counts).pvalue)


def bit_zscores(words: np.ndarray) -> np.ndarray:
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    ones = bits.sum(axis=0)
    return (ones - words.shape[0] / 2) / np.sqrt(words.shape[0] / 4)


def _masked_inputs(received: list[bytes]) -> list[np.ndarray]:
    """The masked vectors among the submissions the engine was handed (``record=True``)."""
    out = []
    for raw in received:
        body = any_pb2.Any.FromString(raw)
        if body.Is(spb.SecAggMaskedInput.DESCRIPTOR):
            msg = spb.SecAggMaskedInput()
            body.Unpack(msg)
            out.append(decode_vector(msg.masked, dtype="uint32", length=L + 2))
    return out


@pytest.fixture
def masked_round(secagg_round):
    ids = [f"client-{i:02d}" for i in range(3)]
    structured = {c: np.full(L, 0.25 * (i + 1)) for i, c in enumerate(ids)}  # far from uniform
    # the 32-bit ring (without it the engine's weight bound 1e6 leaves too few fractional bits and
    # "auto" picks 64); weights 1
    run = secagg_round(3, length=L, vectors=structured, weights={c: 1.0 for c in ids}, secagg={"bits": 32}, record=True)
    run.server.record_inputs = True  # keep what the coordinator received
    run.open(SecAggStage.UNMASK)
    received = run.server.r.inputs["client-00"].copy()
    on_wire = _masked_inputs(run.fed.server_received)
    assert len(on_wire) == 3 and any(np.array_equal(v, received) for v in on_wire)  # exactly the wire's bytes
    assert all(run.client(c).rng is None for c in ids)  # the daemons' modes: rounding from the CSPRNG
    assert run.run() == 0
    return run, received, run.result()


def test_one_clients_masked_vector_is_indistinguishable_from_uniform(masked_round):
    _, received, _ = masked_round
    assert byte_chi2_pvalue(received) > P_FLOOR
    assert np.abs(bit_zscores(received)).max() < 5.5  # ~1e-6 after a Bonferroni factor of 32


def test_the_same_tests_detect_an_unmasked_vector(masked_round):
    _, _, res = masked_round
    q, _ = qz.quantize(np.full(L, 0.25), 1.0, res.notes["frac_bits"])
    plain = qz.to_ring(q, 32)
    assert byte_chi2_pvalue(plain) < 1e-100
    assert np.abs(bit_zscores(plain)).max() > 100


def test_the_unmasked_sum_equals_the_plaintext_sum(masked_round):
    _, _, res = masked_round
    assert res.notes["bits"] == 32
    np.testing.assert_array_equal(res.weighted_sum, np.full(L, 0.25 + 0.5 + 0.75))
    assert res.total_weight == 3
