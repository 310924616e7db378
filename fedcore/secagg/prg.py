"""The mask PRG: AES-128-CTR keystream written straight into a preallocated integer buffer.

.. warning::
   Raw primitive. Protocol code derives mask keys only through :func:`self_mask_key` and
   :func:`pair_mask_key`, whose HKDF domain label (:data:`MASK_LABEL`) and context (federation,
   round, attempt, the pair of ids) guarantee that no two masks ever share a key. Reusing a key
   for two different vectors reveals their difference.

A mask is the keystream of AES-128-CTR under a 32-byte *key material* (16 bytes AES key, 16 bytes
initial counter block), both the output of HKDF-SHA256 (RFC 5869). Encrypting zeros gives the
keystream; :meth:`CipherContext.update_into` writes it into the caller's ``uint32``/``uint64``
array without allocating (about 0.45 ms per 1e6 uint32 on a 2-core machine, against 3-4 ms when
buffers are allocated per call). numpy's Mersenne Twister is *not* used for masks: it is not a
cryptographic PRG.

Interpreted as little-endian integers, the keystream is uniform on Z_2^32 (or Z_2^64) under the
usual PRF assumption on AES, which is what makes a masked vector indistinguishable from uniform.

:func:`apply_masks` adds many masks at once (a client's self mask and one per neighbour; the
server's masks to strip): block by block of the target (:data:`BLOCK_BYTES`), it runs every mask's
AES-CTR stream on into one small scratch block and adds it while the target block is still in
cache, so a vector crosses memory once instead of twice per mask, and no per-mask buffer exists.
The result is bit-for-bit that of one :func:`add_mask` per mask.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedcore.crypto.recipes import agree, hkdf

#: HKDF domain label of every mask key.
MASK_LABEL = b"fedpsyau/secagg/v1/mask"
#: Bytes of key material a mask needs: AES-128 key (16) + initial counter block (16).
KEY_MATERIAL_BYTES = 32
_BLOCK = 16
#: bytes of the target processed against every mask before moving on (fits L2 twice over).
BLOCK_BYTES = 128 * 1024
_MASK_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))

# One shared, never-written buffer of zeros that is the "plaintext" of the keystream; grown on demand.
_zeros = bytes(0)


def _zero_view(nbytes: int) -> memoryview:
    global _zeros
    if len(_zeros) < nbytes:
        _zeros = bytes(max(nbytes, 2 * len(_zeros)))
    return memoryview(_zeros)[:nbytes]


def round_context(federation_id: str, round_: int, attempt: int) -> bytes:
    """Unambiguous bytes naming one (federation, round, attempt): length-prefixed id, then numbers."""
    fid = federation_id.encode()
    return struct.pack(">I", len(fid)) + fid + struct.pack(">QI", round_, attempt)


def _ids(*client_ids: str) -> bytes:
    out = b""
    for cid in client_ids:
        raw = cid.encode()
        out += struct.pack(">I", len(raw)) + raw
    return out


def self_mask_key(seed: bytes, context: bytes, client_id: str) -> bytes:
    """Key material of client ``client_id``'s self mask from its 32-byte seed b_i."""
    if len(seed) != 32:
        raise ValueError(f"a self-mask seed has 32 bytes (got {len(seed)})")
    return hkdf(seed, MASK_LABEL + b"/self/" + context + _ids(client_id), KEY_MATERIAL_BYTES)


def pair_mask_key(sk: X25519PrivateKey, peer_public: bytes, context: bytes, a: str, b: str) -> bytes:
    """Key material of the pairwise mask between clients ``a`` and ``b`` (order does not matter):
    X25519(sk, peer_public) expanded by HKDF under the mask label, the round context and both ids."""
    lo, hi = sorted((a, b))
    return agree(sk, peer_public, MASK_LABEL + b"/pair/" + context + _ids(lo, hi), KEY_MATERIAL_BYTES)


def fill_mask(key_material: bytes, out: np.ndarray) -> np.ndarray:
    """Overwrite ``out`` (a C-contiguous uint32 or uint64 array) with the AES-128-CTR keystream of
    ``key_material`` and return it. Deterministic: the same key material gives the same mask.

    The keystream is written in place (no allocation); the last block goes through ``update`` so
    that this works with cryptography versions whose ``update_into`` wants ``block_size - 1``
    spare bytes in the output.
    """
    if len(key_material) != KEY_MATERIAL_BYTES:
        raise ValueError(f"mask key material has {KEY_MATERIAL_BYTES} bytes (got {len(key_material)})")
    if out.dtype not in _MASK_DTYPES or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(
            f"expected a writeable C-contiguous uint32 or uint64 array (got {out.dtype}, "
            f"contiguous={out.flags.c_contiguous}, writeable={out.flags.writeable})"
        )
    enc = Cipher(algorithms.AES(key_material[:16]), modes.CTR(key_material[16:])).encryptor()
    buf = out.reshape(-1).data.cast("B")  # .data: the array's own buffer, writes land in out
    nbytes = buf.nbytes
    bulk = max(0, nbytes - _BLOCK)
    if bulk:
        enc.update_into(_zero_view(bulk), buf[:bulk])
    buf[bulk:] = enc.update(bytes(nbytes - bulk))
    if sys.byteorder != "little":  # keystream bytes are defined as little-endian integers
        out.byteswap(inplace=True)
    return out


def keystream(key_material: bytes, length: int, dtype: str = "uint32") -> np.ndarray:
    """A fresh array of ``length`` mask words (allocating; prefer :func:`fill_mask` in loops)."""
    return fill_mask(key_material, np.empty(length, np.dtype(dtype)))


def add_mask(target: np.ndarray, key_material: bytes, sign: int, scratch: np.ndarray) -> None:
    """``target += sign * PRG(key_material)`` modulo 2^bits, using ``scratch`` (same shape and
    dtype as ``target``) as the keystream buffer. ``sign`` is +1 or -1."""
    fill_mask(key_material, scratch)
    if sign > 0:
        np.add(target, scratch, out=target)
    else:
        np.subtract(target, scratch, out=target)


def apply_masks(target: np.ndarray, masks: Sequence[tuple[bytes, int]], block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """``target += sum(sign * PRG(key_material) for key_material, sign in masks)`` modulo 2^bits,
    in place and block by block (see the module docstring); returns ``target``.

    ``target`` is a writeable C-contiguous uint32 or uint64 array; each sign is +1 or -1. Equal to
    applying :func:`add_mask` once per mask, in any order (addition mod 2^bits commutes).
    """
    if target.dtype not in _MASK_DTYPES or not target.flags.c_contiguous or not target.flags.writeable:
        raise ValueError(
            f"expected a writeable C-contiguous uint32 or uint64 array (got {target.dtype}, "
            f"contiguous={target.flags.c_contiguous}, writeable={target.flags.writeable})"
        )
    streams = []
    for key_material, sign in masks:
        if len(key_material) != KEY_MATERIAL_BYTES:
            raise ValueError(f"mask key material has {KEY_MATERIAL_BYTES} bytes (got {len(key_material)})")
        if sign not in (1, -1):
            raise ValueError(f"a mask sign is +1 or -1 (got {sign!r})")
        enc = Cipher(algorithms.AES(key_material[:16]), modes.CTR(key_material[16:])).encryptor()
        streams.append((enc, np.add if sign > 0 else np.subtract))
    flat = target.reshape(-1)
    item = flat.itemsize
    words = max(1, block_bytes // item)
    raw = np.empty(words * item + _BLOCK, np.uint8)  # one scratch block (+ update_into's slack)
    scratch = raw[: words * item].view(flat.dtype)
    out = raw.data
    zeros = _zero_view(words * item)
    swap = sys.byteorder != "little"
    for start in range(0, flat.size, words):
        block = flat[start : start + words]
        m = block.size
        nbytes = m * item
        ks = scratch[:m]
        for enc, op in streams:
            enc.update_into(zeros[:nbytes], out[: nbytes + _BLOCK - 1])
            if swap:  # keystream bytes are defined as little-endian integers
                ks.byteswap(inplace=True)
            op(block, ks, out=block)
    return target
