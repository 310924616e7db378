"""Untrusted SEAL bytes: the header pre-check, and bit flips / garbage that must raise, not crash."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from tenseal import sealapi

from fedcore.common.errors import InvalidPayload
from fedcore.he import sealio
from fedcore.he.context import PublicContext, SecretContext
from fedcore.he.params import CkksParams


@pytest.fixture(scope="module")
def pair():
    secret = SecretContext(CkksParams())
    return secret, PublicContext(secret.params), secret.encrypt(np.linspace(-1, 1, 100))[0]


def _header(**over) -> bytes:
    fields = {"magic": sealio.SEAL_MAGIC, "hsize": 16, "major": 4, "minor": 3, "compr": 2, "reserved": 0, "size": 16}
    fields.update(over)
    return sealio.HEADER.pack(*fields.values())


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"magic": 0x1234}, "not a SEAL object"),
        ({"hsize": 17}, "not a SEAL object"),
        ({"major": 3}, "version"),
        ({"compr": 9}, "compression"),
        ({"reserved": 1}, "reserved"),
        ({"size": 999}, "declares"),
    ],
)
def test_header_precheck_names_the_problem(over, needle):
    with pytest.raises(InvalidPayload, match=needle):
        sealio.check_header(_header(**over), max_size=1000, what="x")


def test_oversized_input_refused_before_parsing():
    with pytest.raises(InvalidPayload, match="exceeds"):
        sealio.check_header(_header(size=5000) + bytes(4984), max_size=4000, what="x")


def test_header_of_real_ciphertext_passes(pair):
    _, _, blob = pair
    sealio.check_header(blob, max_size=len(blob), what="x")
    magic, *_, size = struct.unpack_from("<HBBBBHQ", blob)
    assert magic == sealio.SEAL_MAGIC and size == len(blob)


def test_bit_flips_and_garbage_raise_invalid_payload_or_load(pair):
    """Random corruption anywhere either fails cleanly or loads as some valid ciphertext; never a crash."""
    _, public, blob = pair
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(60):  # flips in the metadata region and anywhere
        b = bytearray(blob)
        for _ in range(int(rng.integers(1, 8))):
            i = int(rng.integers(16, 300)) if rng.random() < 0.7 else int(rng.integers(0, len(b)))
            b[i] = int(rng.integers(0, 256))
        cases.append(bytes(b))
    cases += [blob[:16] + rng.bytes(len(blob) - 16) for _ in range(10)]
    refused = 0
    for data in cases:
        try:
            public.load_ciphertexts([data], count=1, max_bytes=public.max_input_bytes, what="fuzz")
        except InvalidPayload:
            refused += 1
    assert refused >= len(cases) // 2  # most corruptions are caught; the rest are valid-looking noise


def test_scratch_keeps_no_copy_and_closes(pair):
    secret, _, _ = pair
    with sealio.Scratch() as s:
        fd = s._fd
        key = s.save(sealapi.KeyGenerator(secret.seal).secret_key())
        assert len(key) > 1000 and os.fstat(fd).st_size == 0  # the secret is not left in the file
    with pytest.raises(OSError):
        os.fstat(fd)


FUZZ = r"""
import sys
import numpy as np
from fedcore.common.errors import InvalidPayload
from fedcore.he.context import PublicContext, SecretContext
from fedcore.he.params import CkksParams
secret = SecretContext(CkksParams()); public = PublicContext(secret.params)
blob = secret.encrypt(np.ones(50))[0]
full = public.dump_ciphertexts(public.load_ciphertexts([blob], count=1, max_bytes=public.max_input_bytes, what="x"))[0]
key = secret.secret_bytes()
rng = np.random.default_rng(int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    src = (blob, full, key)[i % 3]
    b = bytearray(src)
    for _ in range(int(rng.integers(1, 30))):
        b[int(rng.integers(0, min(len(b), 400 if rng.random() < 0.5 else len(b))))] = int(rng.integers(0, 256))
    if rng.random() < 0.2:
        b = b[: int(rng.integers(0, len(b)))]
    try:
        if src is key:
            SecretContext(secret.params, bytes(b))
        else:
            public.load_ciphertexts([bytes(b)], count=1, max_bytes=len(full) + 1, what="f")
    except InvalidPayload:
        pass
print("ok")
"""


@pytest.mark.slow
def test_fuzzed_seal_bytes_never_crash_or_hang_the_process():
    """Thousands of corrupted ciphertexts and secret keys in a child process: it must exit 0 (an
    abort or segfault inside SEAL would kill it) within the timeout (a hang would time out)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", FUZZ, "11", "3000"], check=False, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
