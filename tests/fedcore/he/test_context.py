"""CKKS contexts: precision of sums, bytes on the wire, what the coordinator's context cannot do,
and refusal of bad ciphertext bytes."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.common.errors import InvalidPayload
from fedcore.he.context import PublicContext, SecretContext
from fedcore.he.params import CkksParams

PARAMS = CkksParams()
ONE_PRIME = 2.0 ** PARAMS.capacity_bits_at(1)  # the largest max_abs the first prime alone holds


@pytest.fixture(scope="module")
def secret() -> SecretContext:
    return SecretContext(PARAMS)


@pytest.fixture(scope="module")
def public() -> PublicContext:
    return PublicContext(PARAMS)


def _load(ctx: PublicContext, blobs, count=None, max_bytes=None):
    return ctx.load_ciphertexts(
        blobs,
        count=len(blobs) if count is None else count,
        max_bytes=max_bytes or ctx.max_input_bytes,
        what="test input",
    )


def _encrypted_sum(secret, public, vectors):
    total = None
    for v in vectors:
        total = public.add_into(total, _load(public, secret.encrypt(v)))
    return public.dump_ciphertexts(total)


def test_sum_of_ten_clients_within_relative_1e6(secret, public):
    rng = np.random.default_rng(0)
    L = 10_000  # two ciphertexts, the second partly filled
    weights = rng.integers(5, 300, size=10).astype(float)
    vectors = [w * rng.normal(scale=0.01, size=L) for w in weights]
    got = secret.decrypt(_load(secret, _encrypted_sum(secret, public, vectors), max_bytes=secret.max_sum_bytes), L)
    want = np.sum(vectors, axis=0)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-6
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-6


def test_upload_stays_under_30_bytes_per_parameter(secret):
    L = 4 * PARAMS.reals_per_ciphertext  # full ciphertexts: no padding in the figure
    blobs = secret.encrypt(np.random.default_rng(1).normal(size=L))
    assert len(blobs) == 4
    assert sum(len(b) for b in blobs) / L <= 30


def test_lowest_level_halves_the_bytes_again():
    small = SecretContext(CkksParams(max_abs=ONE_PRIME))
    L = 2 * small.params.reals_per_ciphertext
    top = SecretContext(PARAMS)
    x = np.random.default_rng(2).normal(size=L)
    assert sum(map(len, small.encrypt(x))) < 0.7 * sum(map(len, top.encrypt(x)))


def test_coordinator_context_cannot_decrypt(secret, public):
    assert secret.is_private() and not public.is_private()
    assert not hasattr(public, "decrypt") and not hasattr(public, "secret_bytes")
    # the public context on the wire is the encryption parameters only: tiny, and no key in it
    pub = secret.public_bytes()
    assert len(pub) < 200 and secret.secret_bytes()[16:80] not in pub
    public.check_public_bytes(pub)
    # the best the coordinator can do is guess a key of its own: the decryption is noise
    x = np.full(100, 3.0)
    cts = _load(public, secret.encrypt(x))
    guess = SecretContext(PARAMS)
    assert guess.key_id != secret.key_id
    assert np.abs(guess.decrypt(cts, 100) - x).min() > 1.0


def test_same_key_bytes_give_same_key(secret):
    again = SecretContext(PARAMS, secret.secret_bytes())
    assert again.key_id == secret.key_id
    x = np.arange(5.0)
    np.testing.assert_allclose(again.decrypt(_load(again, secret.encrypt(x)), 5), x, atol=1e-6)


def test_garbage_ciphertext_refused(public):
    with pytest.raises(InvalidPayload, match="SEAL"):
        _load(public, [np.random.default_rng(3).bytes(5000)])


def test_truncated_ciphertext_refused(secret, public):
    blob = secret.encrypt(np.ones(10))[0]
    for cut in (0, 10, 16, len(blob) // 2, len(blob) - 1):
        with pytest.raises(InvalidPayload):
            _load(public, [blob[:cut]])


def test_padded_ciphertext_refused(secret, public):
    blob = secret.encrypt(np.ones(10))[0]
    with pytest.raises(InvalidPayload, match="declares"):
        _load(public, [blob + b"\0"])


def test_ciphertext_under_other_parameters_refused(public):
    other = SecretContext(CkksParams(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 60)))
    with pytest.raises(InvalidPayload):
        _load(public, other.encrypt(np.ones(10)), max_bytes=10**7)
    other_level = SecretContext(CkksParams(max_abs=ONE_PRIME))  # same ring, other level
    with pytest.raises(InvalidPayload, match="another level|other parameters"):
        _load(public, other_level.encrypt(np.ones(10)))


def test_wrong_count_of_ciphertexts_refused(secret, public):
    blobs = secret.encrypt(np.ones(10))
    with pytest.raises(InvalidPayload, match="expected 2 ciphertexts"):
        _load(public, blobs, count=2)


def test_unseeded_ciphertext_exceeds_input_bound(secret, public):
    # a full (unseeded) ciphertext is twice the size: the input bound refuses it
    full = public.dump_ciphertexts(_load(public, secret.encrypt(np.ones(10))))[0]
    with pytest.raises(InvalidPayload, match="exceeds"):
        _load(public, [full])


def test_public_context_of_other_parameters_refused(public):
    other = PublicContext(CkksParams(poly_modulus_degree=16384))
    with pytest.raises(InvalidPayload, match="differ"):
        public.check_public_bytes(other.public_bytes())
    with pytest.raises(InvalidPayload):
        public.check_public_bytes(b"not seal")


def test_switched_down_sum_decrypts_to_the_same_values_and_declares_its_level(secret, public):
    rng = np.random.default_rng(4)
    L = 3000
    vectors = [w * rng.normal(scale=0.01, size=L) for w in rng.integers(5, 300, size=10).astype(float)]
    blobs = _encrypted_sum(secret, public, vectors)
    top = _load(secret, blobs, max_bytes=secret.max_sum_bytes)
    low = public.switch_down(_load(public, blobs, max_bytes=public.max_sum_bytes), PARAMS.download_level)
    assert {ct.coeff_modulus_size() for ct in low} == {PARAMS.download_level} == {1}
    low_blobs = public.dump_ciphertexts(low)
    assert sum(map(len, low_blobs)) < 0.6 * sum(map(len, blobs))
    got = secret.decrypt(
        secret.load_ciphertexts(low_blobs, count=1, max_bytes=secret.sum_bytes_limit(1), what="low", primes=1), L
    )
    np.testing.assert_array_equal(got, secret.decrypt(top, L))  # dropping a prime keeps message and noise
    with pytest.raises(InvalidPayload, match="another level"):  # not where the upload level is expected
        _load(public, low_blobs, max_bytes=public.max_sum_bytes)
