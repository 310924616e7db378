"""Shared pieces of the hostile-input tests: profiles, a fake gRPC context, message mutators.

Profiles: ``fast`` (200 examples per property, the default suite) and ``full`` (10,000 per
property, marked slow). ``FEDPSYAU_FUZZ=full`` runs the full count in the default selection too.
Set ``FEDPSYAU_FUZZ_LOG=path`` to append ``{"test": ..., "cases": n}`` per property run (the case
counts of the full pass in docs/SECURITY.md come from there).

:class:`FakeContext` stands in for ``grpc.ServicerContext``: it reports a certificate common name
the way gRPC's auth context does and turns ``abort`` into :class:`Aborted`, so a servicer method
can be called directly, thousands of times a second, with exactly the checks of a real call.
"""

from __future__ import annotations

import json
import os
import random

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fedcore.common.stages import Stage

COUNTS = {"fast": 200, "full": 10_000}
PROFILES = ["fast", pytest.param("full", marks=pytest.mark.slow)]
#: the statuses a refusal may carry; INTERNAL (or an escaped exception) is a bug
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
    }
)


def examples(profile: str) -> int:
    return COUNTS["full" if os.environ.get("FEDPSYAU_FUZZ") == "full" else profile]


def run_property(prop, profile: str, name: str) -> int:
    """Run the @given property ``prop`` under ``profile``; return how many cases ran."""
    counter = {"n": 0}
    inner = prop.hypothesis.inner_test

    def counted(*args, **kwargs):
        counter["n"] += 1
        return inner(*args, **kwargs)

    prop.hypothesis.inner_test = counted
    settings(
        max_examples=examples(profile),
        deadline=None,
        derandomize=profile == "fast",
        database=None,
        suppress_health_check=list(HealthCheck),
    )(prop)()
    path = os.environ.get("FEDPSYAU_FUZZ_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"test": name, "profile": profile, "cases": counter["n"]}) + "\n")
    return counter["n"]


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """``auth_context`` with one certificate common name (or none); ``abort`` raises :class:`Aborted`."""

    def __init__(self, cn: str | None):
        self.cn = cn

    def auth_context(self):
        return {"x509_common_name": [self.cn.encode()]} if self.cn is not None else {}

    def abort(self, code, details):
        raise Aborted(code, details)


def call(fn, request, cn: str | None):
    """Call a servicer method like gRPC would (draining a server stream); the reply or Aborted."""
    out = fn(request, FakeContext(cn))
    return list(out) if hasattr(out, "__next__") else out


# -- strategies -----------------------------------------------------------------------------------
STAGES = [int(s) for s in Stage]
names = st.sampled_from(["alice", "bob", "carol", "dave", "", "mallory", "alice\x00", "ALICE"])
small = st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1))
stages = st.one_of(st.sampled_from(STAGES), st.integers(-(2**31), 2**31 - 1))
big = st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1))


def mutate(data: bytes, seed: int, flips: int = 3) -> bytes:
    """``data`` with a few random byte flips, insertions, deletions or a truncation."""
    rng = random.Random(seed)
    buf = bytearray(data)
    for _ in range(rng.randint(1, flips)):
        op = rng.randrange(4)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        elif op == 2 and buf:
            del buf[rng.randrange(len(buf))]
        elif buf:
            del buf[rng.randint(0, len(buf) - 1) :]
    return bytes(buf)
