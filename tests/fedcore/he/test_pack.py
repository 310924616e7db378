"""Pure packing maths: frames, complex chunks, the rounding grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcore.he import pack


@settings(max_examples=60, deadline=None)
@given(length=st.integers(0, 70), reals=st.sampled_from([2, 4, 16, 32]), seed=st.integers(0, 2**16))
def test_chunks_round_trip_any_length(length, reals, seed):
    v = np.random.default_rng(seed).normal(size=length)
    chunks = pack.to_complex_chunks(v, reals)
    assert len(chunks) == pack.num_chunks(length, reals)
    assert all(c.shape == (reals // 2,) for c in chunks)
    np.testing.assert_array_equal(pack.from_complex_chunks(chunks, length, reals), v)


def test_chunk_layout_puts_halves_in_real_and_imaginary_parts():
    (z,) = pack.to_complex_chunks(np.arange(8.0), 8)
    np.testing.assert_array_equal(z, [0 + 4j, 1 + 5j, 2 + 6j, 3 + 7j])


def test_chunks_add_like_vectors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=37), rng.normal(size=37)
    za, zb = pack.to_complex_chunks(a, 16), pack.to_complex_chunks(b, 16)
    summed = [x + y for x, y in zip(za, zb)]
    np.testing.assert_allclose(pack.from_complex_chunks(summed, 37, 16), a + b)


def test_odd_chunk_size_refused():
    with pytest.raises(ValueError, match="even"):
        pack.to_complex_chunks(np.zeros(3), 5)


def test_frame_weights_and_appends_weight_count_and_bound():
    f = pack.frame(np.array([1.0, -2.0]), 3.0)
    np.testing.assert_array_equal(f, [3.0, -6.0, 3.0, 1.0, 6.0])  # bound slot: max(|w*x|, w, 1)
    head, bound = pack.split_bound(f + f)
    wsum, weight, count = pack.unframe(head)
    np.testing.assert_array_equal(wsum, [6.0, -12.0])
    assert (weight, count, bound) == (6.0, 2.0, 12.0)


def test_summed_bound_slot_bounds_every_slot_of_the_sum():
    rng = np.random.default_rng(3)
    frames = [
        pack.frame(rng.normal(scale=s, size=20), w, bound_shift_bits=5)
        for s, w in ((0.01, 300.0), (10.0, 2.0), (0.5, 0.25))
    ]
    head, bound = pack.split_bound(np.sum(frames, axis=0), 5)
    assert np.abs(head).max() <= bound
    assert bound == pytest.approx(sum(max(np.abs(f[:-1]).max(), 1.0) for f in frames))


def test_grid_rounds_to_multiples_and_back():
    v = np.array([0.1, -0.3, 1e-9, 123.456])
    units = pack.to_grid(v, 10)
    assert units.dtype == np.int64
    back = pack.from_grid(units, 10)
    assert np.abs(back - v).max() <= 2.0**-11


def test_client_returns_only_grid_units_never_the_exact_decryption(ckks_run):
    """The bytes a client returns at CKKS_DECRYPT (through the engine and the client daemons): a
    CkksDecryptedSum with key id, round_bits and int64 units equal to round(exact decryption *
    2^round_bits), nothing else; the exact decryption (message plus encryption noise) has sub-grid
    digits that never leave the client."""
    from google.protobuf import any_pb2

    from fedcore.common.params import decode_vector
    from fedcore.common.stages import Stage
    from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

    sent, blobs = {}, {}

    def capture(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and direction == "up":
            sent[cid] = data
        if stage == Stage.CKKS_DECRYPT and direction == "blob":
            blobs[cid] = data
        return data

    L = 50
    run = ckks_run(3, size=L, tamper=capture)
    assert run.run() == 0
    assert sent.keys() == set(run.ids) and len(set(blobs.values())) == 1
    blob = ckpb.CkksEncryptedSum.FromString(next(iter(blobs.values())))
    want, weight = run.expected_sum(run.ids)
    for cid, data in sent.items():
        body = any_pb2.Any.FromString(data)
        msg = ckpb.CkksDecryptedSum()
        assert body.Unpack(msg)
        assert {f.name for f, _ in msg.ListFields()} == {"key_id", "round_bits", "units"}
        units = decode_vector(msg.units, dtype="int64", length=L + 2, what="returned units")
        secret = run.client(cid)._keys[msg.key_id]
        cts = secret.load_ciphertexts(
            list(blob.ciphertexts),
            count=len(blob.ciphertexts),
            max_bytes=secret.max_sum_bytes,
            what="sum",
            primes=secret.params.download_level,
        )
        exact = secret.decrypt(cts, L + 2) * 2.0**msg.round_bits
        np.testing.assert_array_equal(units, np.rint(exact).astype(np.int64))
        assert np.abs(exact - np.rint(exact)).max() > 0  # the noise was there, and was rounded away
        np.testing.assert_allclose(units[:L] * 2.0**-msg.round_bits, want, atol=1e-3)
        assert units[L] * 2.0**-msg.round_bits == pytest.approx(weight, abs=1e-3)
        assert units[L + 1] == 3 * 2**msg.round_bits  # the count slot: exactly 3 contributors


def test_grid_overflow_refused():
    with pytest.raises(ValueError, match="int64"):
        pack.to_grid(np.array([2.0**50]), 20)
