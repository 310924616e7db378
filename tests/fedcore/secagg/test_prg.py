"""The mask PRG: AES-128-CTR keystream into preallocated buffers, keyed by HKDF under the mask label."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedcore.crypto.recipes import new_keypair
from fedcore.secagg.prg import (
    add_mask,
    apply_masks,
    fill_mask,
    keystream,
    pair_mask_key,
    round_context,
    self_mask_key,
)

KEY = bytes(range(32))


@pytest.mark.parametrize("length", [1, 3, 4, 5, 17, 1000, 4099])
@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
def test_fill_mask_equals_raw_aes_ctr_keystream(length, dtype):
    out = np.empty(length, dtype)
    fill_mask(KEY, out)
    raw = Cipher(algorithms.AES(KEY[:16]), modes.CTR(KEY[16:])).encryptor().update(bytes(out.nbytes))
    assert out.tobytes() == raw  # little-endian words of the keystream, last partial block included


def test_fill_mask_is_deterministic_and_key_dependent():
    a, b = keystream(KEY, 256), keystream(KEY, 256)
    c = keystream(bytes(31) + b"\x01", 256)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [np.empty(8, np.int32), np.empty(8, np.float64), np.empty(16, np.uint32)[::2]])
def test_fill_mask_refuses_wrong_buffers(bad):
    with pytest.raises(ValueError, match="uint32 or uint64"):
        fill_mask(KEY, bad)


def test_fill_mask_refuses_short_key_material():
    with pytest.raises(ValueError, match="32 bytes"):
        fill_mask(KEY[:16], np.empty(4, np.uint32))


def test_pair_masks_agree_from_both_sides_and_cancel():
    sk_a, pk_a = new_keypair()
    sk_b, pk_b = new_keypair()
    ctx = round_context("fed", 3, 1)
    key_ab = pair_mask_key(sk_a, pk_b, ctx, "a", "b")
    assert key_ab == pair_mask_key(sk_b, pk_a, ctx, "b", "a")
    y = np.arange(10, dtype=np.uint32)
    scratch = np.empty_like(y)
    add_mask(y, key_ab, +1, scratch)
    assert not np.array_equal(y, np.arange(10))
    add_mask(y, key_ab, -1, scratch)
    assert np.array_equal(y, np.arange(10, dtype=np.uint32))


def test_mask_keys_differ_across_rounds_attempts_and_pairs():
    sk_a, _ = new_keypair()
    _, pk_b = new_keypair()
    seed = b"\x07" * 32
    keys = {
        pair_mask_key(sk_a, pk_b, round_context("fed", 1, 0), "a", "b"),
        pair_mask_key(sk_a, pk_b, round_context("fed", 1, 1), "a", "b"),
        pair_mask_key(sk_a, pk_b, round_context("fed", 2, 0), "a", "b"),
        pair_mask_key(sk_a, pk_b, round_context("fed", 1, 0), "a", "c"),
        self_mask_key(seed, round_context("fed", 1, 0), "a"),
        self_mask_key(seed, round_context("fed", 1, 1), "a"),
        self_mask_key(seed, round_context("fed", 1, 0), "b"),
    }
    assert len(keys) == 7


def test_round_context_is_unambiguous():
    assert round_context("ab", 1, 0) != round_context("a", 1, 0)
    assert round_context("fed", 1, 2) != round_context("fed", 2, 1)


@pytest.mark.parametrize("length", [0, 1, 3, 5, 1000, 40_003])
@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("block_bytes", [16, 24, 4096, 128 * 1024])
def test_blocked_masks_equal_one_add_mask_per_mask(length, dtype, block_bytes):
    rng = np.random.default_rng(length)
    masks = [(bytes(rng.integers(0, 256, 32, dtype=np.uint8)), int(s)) for s in rng.choice([-1, 1], 6)]
    start = rng.integers(0, 2**32, length).astype(dtype)
    want, scratch = start.copy(), np.empty(length, dtype)
    for key, sign in masks:
        add_mask(want, key, sign, scratch)
    got = start.copy()
    assert apply_masks(got, masks, block_bytes=block_bytes) is got  # in place
    assert np.array_equal(got, want)


def test_blocked_masks_cancel_and_refuse_bad_input():
    y = np.arange(5000, dtype=np.uint64)
    apply_masks(y, [(KEY, +1), (bytes(31) + b"\x02", -1)])
    apply_masks(y, [(KEY, -1), (bytes(31) + b"\x02", +1)])
    assert np.array_equal(y, np.arange(5000, dtype=np.uint64))
    with pytest.raises(ValueError, match="uint32 or uint64"):
        apply_masks(np.zeros(4, np.int64), [(KEY, 1)])
    with pytest.raises(ValueError, match="32 bytes"):
        apply_masks(np.zeros(4, np.uint32), [(KEY[:16], 1)])
    with pytest.raises(ValueError, match="sign"):
        apply_masks(np.zeros(4, np.uint32), [(KEY, 2)])
