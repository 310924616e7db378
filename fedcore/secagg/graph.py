"""SecAgg+'s masking graph: a random k-regular graph every client can recompute from a public seed.

.. warning::
   Raw primitive. The graph is public: the server draws its seed with ``os.urandom`` and reveals it
   in the share-keys task, after the keys are advertised. That suffices for the honest-but-curious
   server of the threat model; a malicious server grinding seeds is out of scope. Security of
   SecAgg+ (Bell et al., CCS 2020) rests on k and the share threshold being chosen for the
   corruption and dropout fractions, which :mod:`.bounds` does (failure probability <= 2^-40);
   this module only builds the graph of a degree already chosen.

Construction (Bell et al. 2020: a Harary graph with randomly permuted labels): order the roster
by a keyed hash of each id under the seed (a uniformly random permutation), place the clients on a
circle in that order and connect each one to its k/2 nearest clients on either side. k is even
(odd k is rounded up); k >= n - 1 gives the complete graph (the original SecAgg of Bonawitz et
al. 2017).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

GRAPH_LABEL = b"fedpsyau/secagg/v1/graph"
SEED_BYTES = 32


def resolve_degree(k: int | str, n: int) -> int:
    """The degree a fixed setting gives for ``n`` clients: ``n - 1`` means the complete graph.

    ``k`` is ``"all"`` (complete) or an integer >= 2 (odd values are rounded up to even). ``"auto"``
    depends on the corruption and dropout fractions: :func:`fedcore.secagg.bounds.plan` resolves it.
    """
    if n < 2:
        raise ValueError(f"a masking graph needs at least 2 clients (got {n})")
    if k == "all":
        return n - 1
    if k == "auto":
        raise ValueError("k='auto' depends on the corruption and dropout fractions: use fedcore.secagg.bounds.plan")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be 'auto', 'all' or an integer >= 2 (got {k!r})")
    k += k % 2
    return min(n - 1, k)


def _rank(seed: bytes, client_id: str) -> bytes:
    return hmac.new(seed, GRAPH_LABEL + b"/" + client_id.encode(), hashlib.sha256).digest()


def masking_graph(roster: Sequence[str], k: int, seed: bytes) -> dict[str, frozenset[str]]:
    """Every client's neighbourhood (without itself) in the graph of degree ``k`` (already resolved
    by :func:`resolve_degree`) over the distinct ids of ``roster``."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"the graph seed has {SEED_BYTES} bytes (got {len(seed)})")
    ids = list(roster)
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("the roster has duplicate client ids")
    if not 2 <= k <= n - 1 or (k < n - 1 and k % 2):
        raise ValueError(f"degree must be n - 1 = {n - 1} or an even number in [2, {n - 2}] (got {k})")
    if k == n - 1:
        everyone = frozenset(ids)
        return {cid: everyone - {cid} for cid in ids}
    order = sorted(ids, key=lambda cid: _rank(seed, cid))
    half = k // 2
    return {cid: frozenset(order[(p + d) % n] for d in range(-half, half + 1) if d) for p, cid in enumerate(order)}


def neighbours(roster: Sequence[str], k: int, seed: bytes, client_id: str) -> frozenset[str]:
    """One client's neighbourhood (what a client recomputes to check the server's)."""
    graph = masking_graph(roster, k, seed)
    if client_id not in graph:
        raise ValueError(f"client {client_id!r} is not in the roster")
    return graph[client_id]
