"""Generated non-IID classification data for the example workload.

Every client draws from the same class-conditional Gaussians (class means fixed by
``data_seed``), but with its own label mix (Dirichlet(``alpha``) class proportions: small alpha
= strong label skew) and its own feature shift (covariate shift of scale ``shift``). The data are
a pure function of the settings, so the coordinator, the clients and the tests agree on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from fedcore.common.errors import ConfigError


@dataclass(frozen=True)
class DataSettings:
    num_features: int = 16  # input dimension
    num_classes: int = 4  # output classes
    samples: int = 240  # samples per client (train + test)
    test_fraction: float = 0.25  # held-out share for EVALUATE
    client_index: int = 0  # which client's shard (0-based)
    num_clients: int = 3  # number of shards (for documentation and checks)
    alpha: float = 0.5  # Dirichlet concentration of the label mix; small = non-IID
    shift: float = 1.0  # per-client feature shift scale
    separation: float = 1.0  # spread of the class means
    noise: float = 1.5  # within-class standard deviation
    data_seed: int = 1234  # fixes class means and every client's shard
    hidden: int = 0  # 0 = softmax regression; > 0 = one hidden layer of that width
    slowdown: float = 0.0  # seconds every fit sleeps: emulates a slow client (tests, demos)
    fixed_shuffle: int = 0  # 1: plain SGD shuffles from (data_seed, client, round), not the task's
    # fresh seed, so a test can recompute an update (DP noise stays fresh)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> DataSettings:
        """Take the keys this workload knows from ``settings`` (others are ignored), checked."""
        problems: list[str] = []
        values: dict[str, Any] = {}  # keyword arguments of cls: an int or a float per field, each checked
        for f in fields(cls):
            if f.name not in settings:
                continue
            value = settings[f.name]
            want = int if f.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (want is int and value != int(value)):
                problems.append(f"{f.name} must be {'an integer' if want is int else 'a number'} (got {value!r})")
                continue
            values[f.name] = want(value)
        s = cls(**values)
        if s.num_features < 1 or s.num_classes < 2 or s.samples < 4:
            problems.append(
                f"need num_features >= 1, num_classes >= 2, samples >= 4 (got {s.num_features}, "
                f"{s.num_classes}, {s.samples})"
            )
        if not 0 < s.test_fraction < 1:
            problems.append(f"test_fraction must be in (0, 1) (got {s.test_fraction})")
        if not 0 <= s.client_index < s.num_clients:
            problems.append(f"client_index must be in [0, num_clients={s.num_clients}) (got {s.client_index})")
        if s.alpha <= 0 or s.noise <= 0 or s.hidden < 0 or s.slowdown < 0:
            problems.append(
                f"alpha and noise must be > 0, hidden and slowdown >= 0 (got {s.alpha}, {s.noise}, {s.hidden}, "
                f"{s.slowdown})"
            )
        if problems:
            raise ConfigError(problems, source="workload settings")
        return s


@dataclass(frozen=True)
class Shard:
    x_train: np.ndarray  # (N, F) float32
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def make_shard(s: DataSettings) -> Shard:
    """The client's train/test data (deterministic in the settings)."""
    shared = np.random.default_rng(s.data_seed)
    means = shared.normal(0.0, s.separation, size=(s.num_classes, s.num_features))  # (C, F)
    rng = np.random.default_rng([s.data_seed, s.client_index])
    mix = rng.dirichlet(np.full(s.num_classes, s.alpha))
    y = rng.choice(s.num_classes, size=s.samples, p=mix)
    offset = rng.normal(0.0, s.shift, size=s.num_features)  # this client's covariate shift
    x = means[y] + offset + rng.normal(0.0, s.noise, size=(s.samples, s.num_features))  # (N, F)
    n_test = max(1, round(s.samples * s.test_fraction))
    return Shard(
        x[n_test:].astype(np.float32),
        y[n_test:].astype(np.int64),
        x[:n_test].astype(np.float32),
        y[:n_test].astype(np.int64),
    )
