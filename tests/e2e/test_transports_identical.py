"""One engine, two transports: the same seeded federation gives the very same model over gRPC
(real coordinator and client processes, mTLS) and over the in-memory transport, in every
aggregation mode, with DP-SGD on -- so ``bench epsilon`` and the memory simulations measure the
protocol the daemons run."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.simulation import simulate

#: DP-SGD on, noise from the seeded generator (secure_rng off) so that a seeded run repeats
PRIVACY = {"secure_rng": False, "noise_multiplier": 1.0, "max_grad_norm": 1.0}


def _final(tmp_path, name: str, **kwargs):
    res = simulate(
        clients=3, rounds=2, out=tmp_path / name, echo=False, privacy=PRIVACY, env={"OMP_NUM_THREADS": "1"}, **kwargs
    )
    assert res.returncode == 0, res.summary
    ckpt = CheckpointStore(res.run_dir / "checkpoints").load_latest()
    assert ckpt is not None and ckpt.round == 2
    return ckpt.params, res


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each client process runs (OMP_NUM_THREADS=1): the same float reductions
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["plain", "secagg", "ckks"])
def test_same_seeds_give_a_bit_identical_model_over_grpc_and_memory(tmp_path, mode, one_thread):
    over_grpc, rg = _final(tmp_path, "grpc", aggregation=mode, seeded=True, transport="grpc")
    in_memory, rm = _final(tmp_path, "memory", aggregation=mode, seeded=True, transport="memory")
    assert over_grpc.dtype == in_memory.dtype == np.float32
    assert np.array_equal(over_grpc, in_memory), f"max difference {np.abs(over_grpc - in_memory).max()}"
    # the privacy path is the same one too: DP was on, and every client spent the same epsilon
    eps_g = {c: p["epsilon"] for c, p in rg.metrics[-1]["privacy"].items()}
    eps_m = {c: p["epsilon"] for c, p in rm.metrics[-1]["privacy"].items()}
    assert eps_g == eps_m and min(eps_g.values()) > 0
    assert [m["contributors"] for m in rg.metrics] == [m["contributors"] for m in rm.metrics] == [3, 3]


def test_unseeded_runs_differ(tmp_path, one_thread):
    """The identity above is the seeds' doing: without them two in-memory runs train differently."""
    a, _ = _final(tmp_path, "a", aggregation="plain", transport="memory")
    b, _ = _final(tmp_path, "b", aggregation="plain", transport="memory")
    assert not np.array_equal(a, b)
