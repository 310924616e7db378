"""What the coordinator receives from one client looks uniform on Z_2^32, while the unmasked sum
is the plaintext sum."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedcore.common.aggregation import ClientIdentity
from fedcore.secagg import quantize as qz
from fedcore.secagg.client import SecAggClient

L = 1 << 16
P_FLOOR = 1e-6  # a test at this level fails by chance once in a million runs


def byte_chi2_pvalue(words: np.ndarray) -> float:
    counts = np.bincount(words.view(np.uint8), minlength=256)
    return float(stats.chisquare(counts).pvalue)


def bit_zscores(words: np.ndarray) -> np.ndarray:
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    ones = bits.sum(axis=0)
    return (ones - words.shape[0] / 2) / np.sqrt(words.shape[0] / 4)


@pytest.fixture(scope="module")
def masked_round(federation):
    ids = [f"client-{i:02d}" for i in range(3)]
    structured = {c: np.full(L, 0.25 * (i + 1)) for i, c in enumerate(ids)}  # far from uniform
    fed = federation(3, length=L, vectors=structured, weights={c: 1.0 for c in ids})
    for c in ids:  # the production path: rounding randomness from the CSPRNG
        fed.clients[c] = SecAggClient(ClientIdentity(c), "fed-test", {})
    fed.server.record_inputs = True  # keep what the coordinator received
    drv = fed.driver()
    for stage in fed.server.round_stages()[:3]:
        drv.run_stage(stage)
    received = fed.server.r.inputs["client-00"].copy()  # exactly what the coordinator got on the wire
    return fed, received, drv.run()


def test_one_clients_masked_vector_is_indistinguishable_from_uniform(masked_round):
    _, received, _ = masked_round
    assert byte_chi2_pvalue(received) > P_FLOOR
    assert np.abs(bit_zscores(received)).max() < 5.5  # ~1e-6 after a Bonferroni factor of 32


def test_the_same_tests_detect_an_unmasked_vector(masked_round):
    fed, _, _ = masked_round
    q, _ = qz.quantize(np.full(L, 0.25), 1.0, fed.server.r.quant.frac_bits)
    plain = qz.to_ring(q, 32)
    assert byte_chi2_pvalue(plain) < 1e-100
    assert np.abs(bit_zscores(plain)).max() > 100


def test_the_unmasked_sum_equals_the_plaintext_sum(masked_round):
    _, _, run = masked_round
    np.testing.assert_array_equal(run.result.weighted_sum, np.full(L, 0.25 + 0.5 + 0.75))
    assert run.result.total_weight == 3
