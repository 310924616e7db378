"""CKKS parameters for encrypted aggregation, and their validation.

The defaults (N = 8192, coefficient moduli [57, 40, 60] bits, scale 2^40) are SEAL's usual set
for additions with the first prime cut from 60 to 57 bits so that the served sum, switched down
to that prime alone, is at most 16 bytes per parameter (see *Download level* below). Validation
collects every problem before raising one :class:`ConfigError`:

- **Security.** SEAL's 128-bit limits on the total coefficient modulus (HomomorphicEncryption.org
  standard, ternary secrets): max log2 Q by N = 1024: 27, 2048: 54, 4096: 109, 8192: 218,
  16384: 438, 32768: 881.
- **Capacity.** A slot holds ``value * 2^scale_bits`` modulo the data modulus q of the level the
  ciphertexts live at, so ``|value| < q / 2^(scale_bits + 1)``; we keep one more bit of margin.
  Ciphertexts are encrypted at the *lowest* level whose q fits ``max_abs`` (the bound on any slot
  of the sum): fewer primes = fewer bytes. With the defaults the top level (q ~ 2^95) is used;
  ``max_abs <= 2^14`` selects the single 57-bit prime (7.8 instead of 13.9 bytes per parameter;
  with ``coeff_mod_bit_sizes = [60, 40, 60]`` the single 60-bit prime holds ``max_abs <= 2^17``).
- **Download level.** The coordinator serves the sum at :attr:`CkksParams.download_level`: the
  lowest level (one prime by default) that holds at least 2^:data:`MIN_DOWNLOAD_CAPACITY_BITS`,
  reached by modulus switching (SEAL's ``mod_switch_to``: dropping primes of a CKKS ciphertext
  keeps the message, the scale and the noise exactly, and needs no key). Whether the sum fits
  that level is known only from the data, so each client encrypts, beside ``[w*x, w, 1]``, the
  bound slot ``peak / 2^bound_shift_bits`` (``peak = max(|w*x|, w, 1)``): the decrypted bound
  slot is the sum of the contributors' peaks, an upper bound on every slot of the sum. A client
  decrypts the switched sum only when that bound fits the level's capacity, and fetches the sum
  at the upload level otherwise (``<sum blob>/full``). The default cannot pick the one-prime
  *upload* by itself: CKKS clients do not clip their values (unlike secagg), and with weights up
  to the round's ``max_weight`` (1e6 by default) no bound of ``w*x`` that one prime can hold is
  known before encryption; a federation that knows one (for example client-level DP: weights 1,
  updates L2-clipped to S, so ``max_abs = n * max(S, 1)``) sets ``max_abs`` and gets it.
- **Precision.** Fresh symmetric encryption plus a sum of up to ~100 ciphertexts leaves an error
  of about 2^12 units of 2^-scale_bits (measured ~2^11.5 for 10 clients at N = 8192). Decrypted
  sums are rounded to multiples of 2^-round_bits, so ``scale_bits - round_bits`` must leave
  :data:`NOISE_MARGIN_BITS` bits above that noise; this is what rules out the small-N chains such
  as N = 4096 with [40, 20, 40] and scale 2^20.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedcore.common.errors import ConfigError

#: SEAL's 128-bit security limit on sum(coeff_mod_bit_sizes), by poly_modulus_degree.
MAX_LOG_Q_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: bits between the rounding grid and one unit of the scale: ~12 bits of noise + a 4-bit margin.
NOISE_MARGIN_BITS = 16
#: SEAL accepts primes of 2..60 bits; a prime = 1 mod 2N needs more bits than log2(2N).
MAX_PRIME_BITS = 60
#: the served sum is switched down to the lowest level whose capacity is at least 2^this.
MIN_DOWNLOAD_CAPACITY_BITS = 10

#: the keys a ckks settings table may hold (parameters + protocol), with their meaning.
SETTINGS_KEYS: dict[str, str] = {
    "poly_modulus_degree": "ring degree N (power of two, 1024..32768)",
    "coeff_mod_bit_sizes": "bit sizes of the coefficient primes; the last one is SEAL's special prime",
    "scale_bits": "log2 of the CKKS scale",
    "round_bits": "decrypted sums are rounded to multiples of 2^-round_bits before leaving a client",
    "max_abs": "bound on |any slot of the sum|; picks the encryption level",
    "key_holder": "client that generates the secret key (default: first participant in sorted order)",
    "min_clients": "fewest contributors a round may have; each client refuses to decrypt fewer (>= 2; default 3)",
    "max_weight": "clients clip their weight to this (default: the round's max_weight)",
    "members": "optional list of client ids the key holder may share the key with",
}


@dataclass(frozen=True)
class CkksParams:
    poly_modulus_degree: int = 8192  # N; N/2 complex = N real slots
    coeff_mod_bit_sizes: tuple[int, ...] = (57, 40, 60)  # last prime: SEAL's special prime
    scale_bits: int = 40  # scale 2^40
    round_bits: int = 22  # grid 2^-22 ~ 2.4e-7 for returned sums
    max_abs: float = 2.0**40  # any slot of the sum stays below this
    _level: int = field(default=-1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))
        problems = self.problems()
        if problems:
            raise ConfigError(problems, source="ckks parameters")
        object.__setattr__(self, "_level", self._pick_level())

    # ---- derived -----------------------------------------------------------------------------

    @property
    def reals_per_ciphertext(self) -> int:
        """Real values per ciphertext: N/2 complex slots, two reals each."""
        return self.poly_modulus_degree

    @property
    def data_bit_sizes(self) -> tuple[int, ...]:
        """Primes of the top data level (the special prime is dropped when there are several)."""
        c = self.coeff_mod_bit_sizes
        return c[:-1] if len(c) > 1 else c

    @property
    def level_primes(self) -> int:
        """How many primes the ciphertexts keep: the fewest that fit ``max_abs``."""
        return self._level

    @property
    def capacity_bits(self) -> int:
        """log2 of the largest |value| a slot can hold at the chosen level, with one bit of margin."""
        return self.capacity_bits_at(self._level)

    def capacity_bits_at(self, primes: int) -> int:
        """log2 of the largest |value| a slot can hold with the first ``primes`` data primes."""
        return _level_bits(self.data_bit_sizes[:primes]) - self.scale_bits - 2

    @property
    def download_level(self) -> int:
        """Primes the served sum keeps: the fewest whose capacity is >= 2^MIN_DOWNLOAD_CAPACITY_BITS
        (never more than the upload level)."""
        for k in range(1, self._level):
            if self.capacity_bits_at(k) >= MIN_DOWNLOAD_CAPACITY_BITS:
                return k
        return self._level

    @property
    def bound_shift_bits(self) -> int:
        """The bound slot holds ``peak / 2^this``, so that its sum (<= max_abs) fits the download level."""
        return max(0, math.ceil(math.log2(self.max_abs)) - self.capacity_bits_at(self.download_level))

    @property
    def bound_slack(self) -> float:
        """What CKKS noise (< 2^(NOISE_MARGIN_BITS - 2) units of 2^-scale_bits) can add to a decrypted
        bound slot, in units of the peaks: a client compares ``bound + bound_slack`` with the capacity."""
        return 2.0 ** (NOISE_MARGIN_BITS - 2 - self.scale_bits + self.bound_shift_bits)

    def frame_length(self, vector_length: int) -> int:
        """Reals a client encrypts for a vector of ``vector_length``: ``[w*x, w, 1, bound]``."""
        return vector_length + 3

    def num_ciphertexts(self, length: int) -> int:
        return max(1, math.ceil(length / self.reals_per_ciphertext))

    def ciphertexts_for(self, vector_length: int) -> int:
        """Ciphertexts of one client's input (and of the sum) for a vector of ``vector_length``."""
        return self.num_ciphertexts(self.frame_length(vector_length))

    def fingerprint(self) -> bytes:
        """16 bytes naming these parameters and level; both sides compare it before using a key."""
        text = (
            f"fedpsyau/ckks/v2|N={self.poly_modulus_degree}|q={list(self.coeff_mod_bit_sizes)}"
            f"|scale={self.scale_bits}|round={self.round_bits}|level={self._level}"
            f"|download={self.download_level}|shift={self.bound_shift_bits}"
        )
        return hashlib.sha256(text.encode()).digest()[:16]

    # ---- validation --------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every problem with these parameters (empty when they are usable)."""
        out: list[str] = []
        n, chain = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if n not in MAX_LOG_Q_128:
            out.append(f"poly_modulus_degree must be one of {sorted(MAX_LOG_Q_128)} (got {n})")
        min_bits = int(math.log2(2 * n)) + 1 if n in MAX_LOG_Q_128 else 2
        if not chain:
            out.append("coeff_mod_bit_sizes must name at least one prime (got [])")
        bad = [b for b in chain if not min_bits <= b <= MAX_PRIME_BITS]
        if bad:
            out.append(f"coeff_mod_bit_sizes entries must be in [{min_bits}, {MAX_PRIME_BITS}] for N={n} (got {bad})")
        if n in MAX_LOG_Q_128 and sum(chain) > MAX_LOG_Q_128[n]:
            out.append(
                f"coeff_mod_bit_sizes {list(chain)} total {sum(chain)} bits, above SEAL's 128-bit "
                f"security limit of {MAX_LOG_Q_128[n]} bits for N={n}"
            )
        if not 20 <= self.scale_bits <= MAX_PRIME_BITS:
            out.append(f"scale_bits must be in [20, {MAX_PRIME_BITS}] (got {self.scale_bits})")
        if self.round_bits < 0:
            out.append(f"round_bits must be >= 0 (got {self.round_bits})")
        if self.scale_bits - self.round_bits < NOISE_MARGIN_BITS:
            out.append(
                f"round_bits ({self.round_bits}) must be at most scale_bits - {NOISE_MARGIN_BITS} = "
                f"{self.scale_bits - NOISE_MARGIN_BITS}: CKKS noise (~2^12 units of 2^-scale_bits) must "
                f"stay far below the rounding grid, or the scale is too small for this precision"
            )
        if not (isinstance(self.max_abs, (int, float)) and math.isfinite(self.max_abs) and self.max_abs > 0):
            out.append(f"max_abs must be a positive finite number (got {self.max_abs!r})")
        else:
            need = self.scale_bits + math.ceil(math.log2(self.max_abs)) + 2
            have = _level_bits(self.data_bit_sizes) if chain else 0
            if chain and not bad and need > have:
                out.append(
                    f"max_abs {self.max_abs:g} needs a data modulus of at least {need} bits at scale 2^"
                    f"{self.scale_bits}; the data primes {list(self.data_bit_sizes)} give {have}"
                )
            if math.log2(self.max_abs) + self.round_bits > 62:
                out.append(
                    f"max_abs * 2^round_bits must stay below 2^62 so rounded sums fit int64 "
                    f"(got 2^{math.log2(self.max_abs) + self.round_bits:.1f})"
                )
        return out

    def _pick_level(self) -> int:
        need = self.scale_bits + math.ceil(math.log2(self.max_abs)) + 2
        for k in range(1, len(self.data_bit_sizes) + 1):
            if _level_bits(self.data_bit_sizes[:k]) >= need:
                return k
        raise AssertionError("unreachable: problems() checked the top level")  # pragma: no cover

    # ---- settings ----------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CkksParams:
        """Parameters from a mode's settings table; unknown keys are reported with the known ones."""
        check_settings(settings)
        kw: dict[str, Any] = {}
        problems = []
        for key, convert in (
            ("poly_modulus_degree", int),
            ("scale_bits", int),
            ("round_bits", int),
            ("max_abs", float),
            ("coeff_mod_bit_sizes", lambda v: tuple(int(b) for b in v)),
        ):
            if key in settings:
                try:
                    if isinstance(settings[key], (bool, str, bytes)):
                        raise TypeError
                    kw[key] = convert(settings[key])
                except (TypeError, ValueError, OverflowError):
                    problems.append(
                        f"{key} must be a number{' list' if key == 'coeff_mod_bit_sizes' else ''} "
                        f"(got {settings[key]!r})"
                    )
        if problems:
            raise ConfigError(problems, source="ckks settings")
        return cls(**kw)


def _level_bits(bit_sizes: tuple[int, ...]) -> int:
    """A lower bound on log2 of the product of primes of these sizes (a b-bit prime is >= 2^(b-1))."""
    return sum(b - 1 for b in bit_sizes)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every unknown or ill-typed key of a ckks settings table."""
    problems = [f"unknown setting {k!r}; known: {', '.join(SETTINGS_KEYS)}" for k in settings if k not in SETTINGS_KEYS]
    if "min_clients" in settings:
        mc = settings["min_clients"]
        if not isinstance(mc, int) or isinstance(mc, bool) or mc < 2:
            problems.append(
                f"min_clients must be an integer >= 2: with one contributor the coordinator "
                f"would learn that client's update (got {mc!r})"
            )
    if "members" in settings and not all(isinstance(m, str) for m in settings["members"]):
        problems.append(f"members must be a list of client ids (got {settings['members']!r})")
    if "key_holder" in settings and not isinstance(settings["key_holder"], str):
        problems.append(f"key_holder must be a client id string (got {settings['key_holder']!r})")
    if problems:
        raise ConfigError(problems, source="ckks settings")
