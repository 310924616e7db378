import numpy as np
import pytest
import torch

from mer.data.arrays import MEArrays
from mer.face.regions import REGIONS, patch_boxes

CLASSES = ("brows", "mouth", "still")


def region_motion_arrays(subjects: int = 4, per_subject: int = 9, size: int = 28, seed: int = 0) -> MEArrays:
    """Flow images whose class is where the motion is: upward flow at the brows, sideways flow at the
    mouth corners, or none; AU labels match (AU1+AU2 / AU12); noise and a per-subject offset on top."""
    rng = np.random.default_rng(seed)
    n = subjects * per_subject
    label = np.arange(n) % 3
    flow = rng.normal(0, 0.15, (n, 3, size, size)).astype(np.float32)
    boxes = patch_boxes(size)
    side = max(3, round(0.14 * size))
    starts = np.cumsum([0] + [len(r.points) for r in REGIONS])
    brow_boxes, mouth_boxes = boxes[starts[0] : starts[1]], boxes[starts[3] : starts[4]][:2]
    au = np.zeros((n, 12), np.float32)
    for i in range(n):
        flow[i] += rng.normal(0, 0.1)
        amp = rng.uniform(0.6, 1.2)
        chosen, channel = (brow_boxes, 1) if label[i] == 0 else (mouth_boxes, 0) if label[i] == 1 else ([], 0)
        for y0, x0 in chosen:
            flow[i, channel, y0 : y0 + side, x0 : x0 + side] += amp
            flow[i, 2, y0 : y0 + side, x0 : x0 + side] += amp / 2
        au[i, [0, 1]] = label[i] == 0
        au[i, 8] = label[i] == 1
    subject = np.repeat([f"toy/s{k}" for k in range(subjects)], per_subject)
    known = np.ones(n, bool)
    known[::5] = False  # some samples without AU coding, as SMIC has
    return MEArrays(
        flow=flow,
        label=label.astype(np.int64),
        au=au,
        au_known=known,
        subject=subject,
        dataset=np.full(n, "toy"),
        sample_id=np.array([f"x{i}" for i in range(n)]),
        class_names=CLASSES,
    )


@pytest.fixture
def toy_arrays():
    return region_motion_arrays()


@pytest.fixture
def make_toy():
    return region_motion_arrays


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One CPU thread per test: on a small shared machine two OpenMP threads stall on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
