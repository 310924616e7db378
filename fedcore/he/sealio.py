"""Bytes in and out of SEAL objects, and a guard for untrusted SEAL bytes.

.. warning:: Low-level. Protocol code uses :mod:`fedcore.he.context`, which calls this module.

TenSEAL ships SEAL's own Python bindings (``tenseal.sealapi``), whose ``save``/``load`` only take a
file path. We give them the path of an anonymous in-memory file (Linux ``memfd_create``, opened
through ``/proc/self/fd``), so nothing — secret keys included — reaches a file system; elsewhere a
0600 file in a fresh 0700 temporary directory is used and removed at once.

Untrusted bytes are checked here before SEAL sees them (:func:`check_header`): SEAL's 16-byte
header (magic 0xA15E, header size 16, version 4.x, a compression mode this build supports, the
reserved field zero) must declare exactly the length received, and that length must be within
the caller's bound. SEAL then validates the metadata (parameter id, size, degree) and the
coefficients (< their prime) as it decompresses; a fuzz test (tests/fedcore/he/test_sealio.py)
checks that garbage, truncation and bit flips raise rather than crash (a slow variant runs 3000
corrupted ciphertexts and keys in a child process). Decompression bombs do not expand: SEAL
inflates as it reads and stops at the object's end; measured, a 32 KB body of zstd RLE blocks
declaring 1 GB (after a valid ciphertext or in place of one) loads or fails in < 20 ms with no
growth in memory. Trailing bytes inside the declared size are ignored by SEAL; the input bound
caps them.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from typing import Any, Self

from tenseal import sealapi

from fedcore.common.errors import InvalidPayload

SEAL_MAGIC = 0xA15E
HEADER = struct.Struct("<HBBBBHQ")  # magic, header_size, version major, minor, compr_mode, reserved, size
SEAL_VERSION_MAJOR = 4
_USE_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


class Scratch:
    """A private in-memory file that SEAL objects are saved to and loaded from.

    Use as a context manager; one instance is not shared between threads.
    """

    def __enter__(self) -> Self:
        if _USE_MEMFD:
            self._dir = None
            self._fd = os.memfd_create("fedpsyau-ckks", os.MFD_CLOEXEC)
            self.path = f"/proc/self/fd/{self._fd}"
        else:  # pragma: no cover - non-Linux fallback
            self._dir = tempfile.mkdtemp(prefix="fedpsyau-ckks-")
            self.path = os.path.join(self._dir, "obj")
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)
        if self._dir is not None:  # pragma: no cover
            shutil.rmtree(self._dir, ignore_errors=True)

    def save(self, obj: Any) -> bytes:
        """``obj.save(path)`` (any SEAL object or Serializable), returned as bytes."""
        os.ftruncate(self._fd, 0)
        obj.save(self.path)
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0)
        os.ftruncate(self._fd, 0)  # do not keep a copy of what was saved (it may be a secret key)
        return data

    def load(self, obj: Any, data: bytes, *args: Any) -> Any:
        """``obj.load(*args, path)`` from ``data``; returns ``obj``. Call :func:`check_header` first."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        try:
            obj.load(*args, self.path)
        finally:
            os.ftruncate(self._fd, 0)
        return obj


def save_bytes(obj: Any) -> bytes:
    with Scratch() as s:
        return s.save(obj)


def check_header(data: bytes, *, max_size: int, what: str) -> None:
    """Refuse bytes that are not one well-formed SEAL object of at most ``max_size`` bytes.

    Raises :class:`InvalidPayload` naming ``what`` and the first property that is off.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidPayload(f"{what}: expected bytes (got {type(data).__name__})")
    if len(data) < HEADER.size:
        raise InvalidPayload(f"{what}: {len(data)} bytes is shorter than SEAL's {HEADER.size}-byte header")
    if len(data) > max_size:
        raise InvalidPayload(f"{what}: {len(data)} bytes exceeds the {max_size} bytes this object can take")
    magic, hsize, major, _minor, compr, reserved, size = HEADER.unpack_from(data)
    if magic != SEAL_MAGIC or hsize != HEADER.size:
        raise InvalidPayload(f"{what}: not a SEAL object (magic {magic:#06x}, header size {hsize})")
    if major != SEAL_VERSION_MAJOR:
        raise InvalidPayload(f"{what}: SEAL format version {major} (expected {SEAL_VERSION_MAJOR})")
    if compr not in supported_compression() or reserved != 0:
        raise InvalidPayload(f"{what}: unsupported compression mode {compr} or reserved field {reserved}")
    if size != len(data):
        raise InvalidPayload(f"{what}: header declares {size} bytes but {len(data)} arrived (truncated or padded)")


def supported_compression() -> frozenset[int]:
    """Compression modes (0 none, 1 zlib, 2 zstd) this SEAL build can read."""
    modes = sealapi.COMPR_MODE_TYPE
    return frozenset(
        int(m) for m in (modes.NONE, modes.ZLIB, modes.ZSTD) if sealapi.Serialization.IsSupportedComprMode(m)
    )


def guarded_load(scratch: Scratch, obj: Any, data: bytes, args: tuple, *, max_size: int, what: str) -> Any:
    """:func:`check_header`, then ``scratch.load``; any SEAL error becomes :class:`InvalidPayload`."""
    check_header(data, max_size=max_size, what=what)
    try:
        return scratch.load(obj, bytes(data), *args)
    except Exception as exc:  # noqa: BLE001 - SEAL maps std::exception subclasses to several Python types
        raise InvalidPayload(f"{what}: SEAL refused the bytes ({type(exc).__name__}: {exc})") from None
