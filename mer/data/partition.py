"""Federated partitions: which samples each client holds. A subject never spans two clients.

Schemes (``client -> sample indices``, clients numbered 0..n-1):

- ``by-dataset``: one client per data set, in sorted data-set order (the FED-PsyAU setting:
  CASME II, SAMM, CAS(ME)^3 at three institutions). ``n_clients``, if given, must equal the
  number of data sets.
- ``subjects``: subjects shuffled (seeded) and dealt greedily, largest first, to the client
  holding the fewest samples, so clients get similar sample counts.
- ``dirichlet``: label skew at subject level. Each subject is summarised by its most common
  label; for every class a client mix is drawn from Dirichlet(alpha) and that class's subjects
  are sent to clients with those probabilities. Small ``alpha`` -> strong skew. Draws repeat
  (seeded) until every client has at least one subject.

Indices refer to positions in the MEArrays (or in the subject list) passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from mer.data.arrays import MEArrays

SCHEMES = ("by-dataset", "subjects", "dirichlet")


def _inputs(data, labels):
    if isinstance(data, MEArrays):
        return np.asarray(data.subject).astype(str), np.asarray(data.dataset).astype(str), np.asarray(data.label)
    subjects = np.asarray(list(data)).astype(str)
    datasets = np.array([s.split("/", 1)[0] if "/" in s else "" for s in subjects])
    return subjects, datasets, (np.asarray(labels) if labels is not None else None)


def partition(
    data: MEArrays | Sequence[str],
    scheme: str = "subjects",
    n_clients: int | None = None,
    seed: int = 0,
    alpha: float = 0.5,
    *,
    labels: Sequence[int] | None = None,
) -> dict[int, np.ndarray]:
    """Split samples into clients; returns {client: sorted int64 sample indices}.

    ``data`` is an MEArrays or a per-sample sequence of subject ids ("dataset/subject"; pass
    ``labels`` for ``dirichlet``). Every sample lands on exactly one client and all samples of
    a subject on the same one.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown partition scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    subjects, datasets, y = _inputs(data, labels)
    uniq = sorted(set(subjects.tolist()))
    if scheme == "by-dataset":
        names = sorted(set(datasets.tolist()))
        if "" in names:
            raise ValueError("by-dataset needs subjects written as 'dataset/subject' (or an MEArrays)")
        if n_clients is not None and n_clients != len(names):
            raise ValueError(
                f"by-dataset gives one client per data set: {len(names)} ({', '.join(names)}), "
                f"not n_clients={n_clients}"
            )
        owner = {s: names.index(datasets[subjects == s][0]) for s in uniq}
        return _collect(subjects, owner, len(names))
    if n_clients is None or n_clients < 1:
        raise ValueError(f"n_clients must be a positive integer for scheme {scheme!r} (got {n_clients})")
    if n_clients > len(uniq):
        raise ValueError(f"cannot give {n_clients} clients a subject each: only {len(uniq)} subjects")
    rng = np.random.default_rng(seed)
    if scheme == "subjects":
        sizes = Counter(subjects.tolist())
        order = [uniq[i] for i in rng.permutation(len(uniq))]
        order.sort(key=lambda s: -sizes[s])  # stable: ties keep the shuffled order
        load = np.zeros(n_clients, dtype=np.int64)
        owner = {}
        for s in order:
            c = int(np.flatnonzero(load == load.min())[0])
            owner[s] = c
            load[c] += sizes[s]
        return _collect(subjects, owner, n_clients)
    if y is None:
        raise ValueError("dirichlet needs labels: pass an MEArrays or labels=")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (got {alpha})")
    major = {s: Counter(y[subjects == s].tolist()).most_common(1)[0][0] for s in uniq}
    for _ in range(1000):
        owner = {}
        for cls in sorted(set(major.values())):
            p = rng.dirichlet(np.full(n_clients, alpha))
            for s in (s for s in uniq if major[s] == cls):
                owner[s] = int(rng.choice(n_clients, p=p))
        if len(set(owner.values())) == n_clients:
            return _collect(subjects, owner, n_clients)
    raise ValueError(
        f"dirichlet(alpha={alpha}) left a client without subjects in 1000 draws; "
        f"raise alpha or lower n_clients ({n_clients} clients, {len(uniq)} subjects)"
    )


def _collect(subjects: np.ndarray, owner: dict[str, int], n: int) -> dict[int, np.ndarray]:
    idx = np.array([owner[s] for s in subjects.tolist()], dtype=np.int64)
    return {c: np.flatnonzero(idx == c).astype(np.int64) for c in range(n)}
