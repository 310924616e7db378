"""The psychological AU-coordination graph of FED-PsyAU, as data.

Source: Li et al., "FED-PsyAU: Privacy-Preserving Micro-Expression Recognition via Psychological
AU Coordination and Dynamic Facial Motion Modeling", arXiv 2507.20557 (ICCV 2025), §3 and its
public reference code. The paper derives the edges from the psychology of facial action
coordination: AUs of the upper face that move together (AU1-AU2-AU4-AU5, AU6-AU7), AUs of the
lower face that move together (AU9-AU10, AU12-AU14, AU15-AU17), and upper<->lower pairs that
co-occur in emotional expressions ("coordinated" pairs).

Conventions: an adjacency ``A`` is a boolean matrix over node indices (order of
:data:`mer.face.regions.AU_NODES`, or of the sub-graph's nodes) where ``A[i, j]`` means node
``i`` attends to (receives a message from) node ``j``. Every graph has self-loops, as in GAT.
All edges are symmetric except the one-way coordination AU2 -> AU9 of the reference graph:
AU2 attends to AU9, AU9 does not attend to AU2.
"""

from __future__ import annotations

import numpy as np

from mer.face.regions import AU_NODES, LOWER_NODES, UPPER_NODES, au_index

SOURCE = "arXiv 2507.20557 (FED-PsyAU, ICCV 2025), section 3 and reference code"

#: Undirected edges inside the upper-face graph (AU numbers).
UPPER_EDGES: tuple[tuple[int, int], ...] = ((1, 2), (1, 4), (1, 5), (2, 4), (2, 5), (6, 7))
#: Undirected edges inside the lower-face graph (AU numbers).
LOWER_EDGES: tuple[tuple[int, int], ...] = ((9, 10), (12, 14), (15, 17))
#: Coordinated upper -> lower AU pairs, symmetric edges of the global graph.
COORDINATED: dict[int, tuple[int, ...]] = {
    1: (12, 14, 15),
    2: (12, 14, 15, 17),
    4: (9, 10, 14, 15, 17),
    5: (12,),
    6: (9, 12, 14),
    7: (9, 10, 12, 14, 15, 17),
}
#: One-way coordinated pairs (source attends to target only), as in the reference graph.
COORDINATED_ONE_WAY: tuple[tuple[int, int], ...] = ((2, 9),)


def _adjacency(nodes: tuple[int, ...], edges, one_way=()) -> np.ndarray:
    """Boolean adjacency over ``nodes`` (node indices into AU_NODES) with self-loops."""
    pos = {n: k for k, n in enumerate(nodes)}
    adj = np.eye(len(nodes), dtype=bool)
    for a, b in edges:
        i, j = pos[au_index(a)], pos[au_index(b)]
        adj[i, j] = adj[j, i] = True
    for a, b in one_way:
        adj[pos[au_index(a)], pos[au_index(b)]] = True
    return adj


def upper_adjacency() -> np.ndarray:
    """(6, 6) bool adjacency of the upper-face graph over AU1, AU2, AU4, AU5, AU6, AU7."""
    return _adjacency(UPPER_NODES, UPPER_EDGES)


def lower_adjacency() -> np.ndarray:
    """(6, 6) bool adjacency of the lower-face graph over AU9, AU10, AU12, AU14, AU15, AU17."""
    return _adjacency(LOWER_NODES, LOWER_EDGES)


def global_adjacency() -> np.ndarray:
    """(12, 12) bool adjacency: coordinated upper<->lower pairs plus self-loops (no intra-face edges)."""
    pairs = [(u, lo) for u, lows in COORDINATED.items() for lo in lows]
    return _adjacency(tuple(range(len(AU_NODES))), pairs, COORDINATED_ONE_WAY)


def uniform_prior(adjacency: np.ndarray) -> np.ndarray:
    """The psychological prior attention: uniform over each row's edges (rows sum to 1)."""
    adj = np.asarray(adjacency, dtype=bool)
    return adj / adj.sum(axis=1, keepdims=True)
