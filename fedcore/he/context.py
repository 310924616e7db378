"""CKKS contexts: the coordinator's public one (add only) and the clients' secret one.

.. warning:: Raw primitive. Protocol code (:mod:`fedcore.he.server`, :mod:`fedcore.he.client`)
   uses these classes; nothing else should build SEAL objects.

Built on SEAL through TenSEAL's bundled bindings (``tenseal.sealapi``) rather than
``ts.CKKSVector``, because only they expose the three things that cut the bytes on the wire:

- **symmetric, seeded encryption**: ``Encryptor.encrypt_symmetric(plain)`` returns a
  ``Serializable`` ciphertext whose second polynomial is replaced by a PRNG seed, halving it.
  TenSEAL's ``ENCRYPTION_TYPE.SYMMETRIC`` encrypts with the secret key too, but into a full
  ``Ciphertext``, so ``CKKSVector.serialize()`` is as large as the public-key form (measured
  57.3 vs 57.4 bytes per parameter with [60, 40, 60]);
- **complex packing**: N/2 complex slots carry N reals (TenSEAL's vectors are real-only);
- **the encryption level**: encoding at a lower level drops primes (TenSEAL encrypts at the top).

The coordinator's :class:`PublicContext` holds only the encryption parameters: there is no
public key (encryption is symmetric), no relinearisation or Galois key, and no secret key, so it
can add ciphertexts and nothing else; ``is_private()`` is False and it has no ``decrypt``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tenseal import sealapi

from fedcore.common.errors import InvalidPayload
from fedcore.crypto.recipes import hkdf
from fedcore.he import pack
from fedcore.he.params import CkksParams
from fedcore.he.sealio import Scratch, guarded_load

KEY_ID_LABEL = b"fedpsyau/ckks/v1/key-id"
_META = 1024  # SEAL header, ciphertext metadata, PRNG seed and zstd frame overhead, generously


def _seal_context(params: CkksParams) -> sealapi.SEALContext:
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(params.poly_modulus_degree, list(params.coeff_mod_bit_sizes)))
    ctx = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise InvalidPayload(f"SEAL rejected the CKKS parameters {params}: {ctx.parameters_error_message()}")
    return ctx


class PublicContext:
    """Parameters only: deserialise, check and add ciphertexts. Cannot encrypt or decrypt."""

    def __init__(self, params: CkksParams):
        self.params = params
        self.seal = _seal_context(params)
        self._parms_ids: dict[int, list[int]] = {}  # primes kept -> SEAL parms_id of that level
        data = self.seal.first_context_data()
        while data is not None:
            self._parms_ids[len(data.parms().coeff_modulus())] = data.parms_id()
            data = data.next_context_data()
        self.parms_id = self._parms_ids[params.level_primes]  # inputs are encrypted here
        self.download_parms_id = self._parms_ids[params.download_level]  # the sum is served here
        self.scale = 2.0**params.scale_bits
        self._evaluator = sealapi.Evaluator(self.seal)
        n, k = params.poly_modulus_degree, params.level_primes
        self.max_input_bytes = math.ceil(n * k * 8 * 1.01) + _META  # seeded: one polynomial
        self.max_sum_bytes = self.sum_bytes_limit(k)  # the sum at the upload level
        self.max_key_bytes = math.ceil(n * len(params.coeff_mod_bit_sizes) * 8 * 1.01) + _META

    def sum_bytes_limit(self, primes: int) -> int:
        """The most bytes one ciphertext of a sum (two polynomials) at ``primes`` primes can take."""
        return math.ceil(2 * self.params.poly_modulus_degree * primes * 8 * 1.01) + _META

    def is_private(self) -> bool:
        return False

    # ---- the "public context" on the wire: SEAL EncryptionParameters, nothing else ------------

    def public_bytes(self) -> bytes:
        with Scratch() as s:
            return s.save(self.seal.key_context_data().parms())

    def check_public_bytes(self, data: bytes, what: str = "public context") -> None:
        """Raise :class:`InvalidPayload` unless ``data`` are exactly these encryption parameters."""
        with Scratch() as s:
            theirs = guarded_load(
                s, sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS), data, (), max_size=64 * 1024, what=what
            )
        if theirs != self.seal.key_context_data().parms():
            raise InvalidPayload(f"{what}: encryption parameters differ from this federation's {self.params}")

    # ---- ciphertexts ---------------------------------------------------------------------------

    def load_ciphertexts(
        self, blobs: Sequence[bytes], *, count: int, max_bytes: int, what: str, primes: int | None = None
    ) -> list[sealapi.Ciphertext]:
        """Deserialise exactly ``count`` ciphertexts of this context at the level of ``primes``
        primes (default: the upload level), each checked: SEAL header first, then parameters and
        level (parms_id), size, NTT form and scale."""
        if len(blobs) != count:
            raise InvalidPayload(f"{what}: expected {count} ciphertexts (got {len(blobs)})")
        primes = self.params.level_primes if primes is None else primes
        want = list(self._parms_ids[primes])
        out = []
        with Scratch() as s:
            for i, blob in enumerate(blobs):
                name = f"{what}, ciphertext {i}"
                ct = guarded_load(s, sealapi.Ciphertext(), blob, (self.seal,), max_size=max_bytes, what=name)
                if list(ct.parms_id()) != want:
                    raise InvalidPayload(
                        f"{name}: encrypted at another level or under other parameters "
                        f"(expected {primes} of the {len(self.params.data_bit_sizes)} data primes, "
                        f"got {ct.coeff_modulus_size()})"
                    )
                if ct.size() != 2 or not ct.is_ntt_form() or ct.scale != self.scale:
                    raise InvalidPayload(
                        f"{name}: expected a fresh 2-polynomial ciphertext at scale 2^"
                        f"{self.params.scale_bits} (got size {ct.size()}, scale {ct.scale:g})"
                    )
                out.append(ct)
        return out

    def add_into(self, acc: list[sealapi.Ciphertext] | None, cts: list[sealapi.Ciphertext]) -> list[sealapi.Ciphertext]:
        """Element-wise ``acc += cts`` (``acc`` None starts a sum); returns the sum."""
        if acc is None:
            return list(cts)
        for a, c in zip(acc, cts, strict=True):
            self._evaluator.add_inplace(a, c)
        return acc

    def switch_down(self, cts: Sequence[sealapi.Ciphertext], primes: int) -> list[sealapi.Ciphertext]:
        """Copies of ``cts`` modulus-switched to ``primes`` primes (SEAL ``mod_switch_to``; no key).

        For CKKS this drops the residues of the other primes: message, scale and noise are kept
        exactly, so the copies decrypt to the same values as long as they fit the smaller modulus
        (``|value| < 2^capacity_bits_at(primes)``; the caller checks that with the bound slot).
        """
        target = self._parms_ids[primes]
        out = []
        for ct in cts:
            dst = sealapi.Ciphertext()
            self._evaluator.mod_switch_to(ct, target, dst)
            out.append(dst)
        return out

    def dump_ciphertexts(self, cts: Sequence) -> list[bytes]:
        """Serialise ciphertexts (or seeded ``Serializable`` ones) with SEAL's default compression."""
        with Scratch() as s:
            return [s.save(ct) for ct in cts]


class SecretContext(PublicContext):
    """The clients' context: holds the shared secret key; encrypts (seeded) and decrypts."""

    def __init__(self, params: CkksParams, secret_key_bytes: bytes | None = None):
        super().__init__(params)
        if secret_key_bytes is None:
            secret = sealapi.KeyGenerator(self.seal).secret_key()
            with Scratch() as s:
                secret_key_bytes = s.save(secret)
        else:
            with Scratch() as s:
                secret = guarded_load(
                    s,
                    sealapi.SecretKey(),
                    secret_key_bytes,
                    (self.seal,),
                    max_size=self.max_key_bytes,
                    what="CKKS secret key",
                )
        self._secret_bytes = bytes(secret_key_bytes)
        self.key_id = key_id(self._secret_bytes)
        self._encoder = sealapi.CKKSEncoder(self.seal)
        self._encryptor = sealapi.Encryptor(self.seal, secret)
        self._decryptor = sealapi.Decryptor(self.seal, secret)

    def is_private(self) -> bool:
        return True

    def secret_bytes(self) -> bytes:
        """The serialized secret key. Only ever sealed to a verified peer (see :mod:`fedcore.he.keys`)."""
        return self._secret_bytes

    def public(self) -> PublicContext:
        return PublicContext(self.params)

    def encrypt(self, values: np.ndarray) -> list[bytes]:
        """Encrypt a real vector (any length) into seeded ciphertexts, serialised (zstd by SEAL)."""
        return self.dump_ciphertexts(self.encrypt_objects(values))

    def encrypt_objects(self, values: np.ndarray) -> list:
        """Encode and encrypt into SEAL ``Serializable`` ciphertexts (seeded: save them to send)."""
        out = []
        for chunk in pack.to_complex_chunks(values, self.params.reals_per_ciphertext):
            plain = sealapi.Plaintext()
            self._encoder.encode(chunk.tolist(), self.parms_id, self.scale, plain)
            out.append(self._encryptor.encrypt_symmetric(plain))
        return out

    def decrypt(self, cts: Sequence[sealapi.Ciphertext], length: int) -> np.ndarray:
        """Decrypt ciphertexts (already loaded and checked) into a float64 vector of ``length``."""
        chunks = []
        for ct in cts:
            plain = sealapi.Plaintext()
            self._decryptor.decrypt(ct, plain)
            chunks.append(np.asarray(self._encoder.decode_complex(plain), dtype=np.complex128))
        return pack.from_complex_chunks(chunks, length, self.params.reals_per_ciphertext)


def key_id(secret_key_bytes: bytes) -> bytes:
    """16 bytes naming a secret key: HKDF of its serialization (one-way; safe to publish)."""
    return hkdf(secret_key_bytes, KEY_ID_LABEL, 16)
