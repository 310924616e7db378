"""CKKS parameter validation: security limits, precision, capacity and settings."""

from __future__ import annotations

import pytest
from tenseal import sealapi

from fedcore.common.errors import ConfigError
from fedcore.he.params import MAX_LOG_Q_128, CkksParams, check_settings


def test_defaults_are_the_documented_set():
    p = CkksParams()
    assert (p.poly_modulus_degree, p.coeff_mod_bit_sizes, p.scale_bits) == (8192, (57, 40, 60), 40)
    assert p.level_primes == 2 and p.reals_per_ciphertext == 8192
    assert p.download_level == 1 and p.capacity_bits_at(1) == 14 and p.bound_shift_bits == 40 - 14


def test_security_table_matches_seal():
    for n, bits in MAX_LOG_Q_128.items():
        assert sealapi.CoeffModulus.MaxBitCount(n, sealapi.SEC_LEVEL_TYPE.TC128) == bits


def test_insecure_modulus_refused_with_limit_named():
    with pytest.raises(ConfigError, match="218 bits for N=8192"):
        CkksParams(coeff_mod_bit_sizes=(60, 60, 60, 60))


def test_every_problem_listed_at_once():
    with pytest.raises(ConfigError) as info:
        CkksParams(poly_modulus_degree=3000, coeff_mod_bit_sizes=(70,), scale_bits=10, round_bits=-1, max_abs=-1)
    problems = info.value.problems
    assert len(problems) >= 5
    text = " ".join(problems)
    for needle in ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits", "round_bits", "max_abs"):
        assert needle in text


def test_small_ring_imprecise_chain_refused():
    # the usual N=4096 chain [40, 20, 40] with scale 2^20 leaves no room above the CKKS noise
    with pytest.raises(ConfigError, match="noise"):
        CkksParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(40, 20, 40), scale_bits=20)


def test_max_abs_beyond_modulus_refused():
    with pytest.raises(ConfigError, match="data modulus"):
        CkksParams(coeff_mod_bit_sizes=(60, 60), max_abs=2.0**30)


def test_level_is_the_fewest_primes_that_fit_max_abs():
    assert CkksParams(max_abs=2.0**14).level_primes == 1
    assert CkksParams(max_abs=2.0**15).level_primes == 2
    assert CkksParams(max_abs=2.0**14).capacity_bits >= 14
    old = {"coeff_mod_bit_sizes": (60, 40, 60)}  # the previous default: one 60-bit prime holds 2^17
    assert CkksParams(max_abs=2.0**17, **old).level_primes == 1
    assert CkksParams(max_abs=2.0**18, **old).level_primes == 2


def test_fingerprint_changes_with_any_parameter():
    base = CkksParams().fingerprint()
    assert CkksParams().fingerprint() == base
    assert CkksParams(round_bits=20).fingerprint() != base
    assert CkksParams(max_abs=2.0**14).fingerprint() != base  # another level


def test_settings_unknown_key_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown setting 'scale'.*poly_modulus_degree"):
        CkksParams.from_settings({"scale": 40})


def test_settings_single_client_minimum_refused():
    with pytest.raises(ConfigError, match="min_clients"):
        check_settings({"min_clients": 1})


def test_settings_bad_types_become_config_errors():
    with pytest.raises(ConfigError):
        CkksParams.from_settings({"scale_bits": "forty"})


def test_settings_override_parameters():
    p = CkksParams.from_settings(
        {"poly_modulus_degree": 16384, "coeff_mod_bit_sizes": [60, 40, 60], "max_abs": 1000, "round_bits": 20}
    )
    assert p.poly_modulus_degree == 16384 and p.level_primes == 1 and p.round_bits == 20
