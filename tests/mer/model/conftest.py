import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One CPU thread per test: on a small shared machine two OpenMP threads stall on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
