"""The server's last step, as free functions: rebuild secrets from revealed shares, strip the masks.

With U3 the clients whose masked input y_i arrived and D the clients that shared keys but sent no
input, each y_i = v_i + PRG(b_i) + sum_{j in N(i) cap U2} sign(i, j) PRG(s_ij), sign = +1 when
i < j, else -1. Pairwise masks between two members of U3 cancel in the sum; what remains is

    sum_{i in U3} y_i - sum_{i in U3} PRG(b_i) - sum_{j in D} sum_{i in N(j) cap U3} sign(i, j) PRG(s_ij)
      = sum_{i in U3} v_i   (mod 2^bits)

where b_i comes from survivors' self-mask shares and s_ij = X25519(s_sk_j, s_pk_i) from dropped
clients' key shares. Cost: |U3| + sum_{j in D} |N(j) cap U3| keystreams of the vector's length,
applied in one blocked pass (:func:`fedcore.secagg.prg.apply_masks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcore.common.errors import AggregationAborted
from fedcore.crypto.recipes import load_private, public_bytes
from fedcore.secagg import shamir
from fedcore.secagg.prg import apply_masks, pair_mask_key, self_mask_key


def recover_secret(owner: str, kind: str, shares: list[bytes], threshold: int) -> bytes:
    """One 32-byte secret from revealed shares; AggregationAborted naming the owner if too few."""
    if len(shares) < threshold:
        raise AggregationAborted(
            f"cannot unmask: {len(shares)} {kind} shares of {owner!r} arrived, {threshold} are needed"
        )
    try:
        return shamir.combine(shares, threshold)
    except ValueError as exc:
        raise AggregationAborted(f"cannot unmask: the {kind} shares of {owner!r} are inconsistent ({exc})") from None


def recover_mask_key(owner: str, shares: list[bytes], threshold: int, public: bytes) -> X25519PrivateKey:
    """A dropped client's mask secret key, checked against the public key it advertised."""
    sk = load_private(recover_secret(owner, "key", shares, threshold))
    if public_bytes(sk) != public:
        raise AggregationAborted(f"cannot unmask: the key shares of {owner!r} do not rebuild its advertised key")
    return sk


def unmasked_sum(
    inputs: Mapping[str, np.ndarray],
    self_seeds: Mapping[str, bytes],
    dropped_keys: Mapping[str, X25519PrivateKey],
    mask_publics: Mapping[str, bytes],
    graph: Mapping[str, Iterable[str]],
    context: bytes,
) -> np.ndarray:
    """sum_{i in U3} v_i in Z_2^bits (the dtype of the inputs), with U3 = ``inputs``' keys.

    ``self_seeds``: b_i of every i in U3; ``dropped_keys``: s_sk_j of every dropped j that masked
    with a member of U3; ``graph``: the masking graph; ``mask_publics``: advertised s_pk by id.
    """
    survivors = sorted(inputs)
    total = inputs[survivors[0]].copy()
    for cid in survivors[1:]:
        np.add(total, inputs[cid], out=total)
    return strip_masks(total, survivors, self_seeds, dropped_keys, mask_publics, graph, context)


def strip_masks(
    total: np.ndarray,
    survivors: Iterable[str],
    self_seeds: Mapping[str, bytes],
    dropped_keys: Mapping[str, X25519PrivateKey],
    mask_publics: Mapping[str, bytes],
    graph: Mapping[str, Iterable[str]],
    context: bytes,
) -> np.ndarray:
    """Turn ``total`` = sum_{i in U3} y_i (the server's running sum, U3 = ``survivors``) into
    sum_{i in U3} v_i, in place: subtract every PRG(b_i) and, for each dropped j, the pairwise
    masks its U3 neighbours added. Returns ``total``."""
    alive = set(survivors)
    masks = [(self_mask_key(self_seeds[cid], context, cid), -1) for cid in sorted(alive)]
    for j, sk in sorted(dropped_keys.items()):
        for i in sorted(set(graph[j]) & alive):
            sign = 1 if i < j else -1  # client i added sign * PRG(s_ij); take it away
            masks.append((pair_mask_key(sk, mask_publics[i], context, i, j), -sign))
    return apply_masks(total, masks)  # every mask in one blocked pass over the sum
