"""Reconnect backoff and giving up on an unreachable coordinator."""

from __future__ import annotations

import random

import pytest

from fedcore.client.connection import Connection, CoordinatorUnreachable, backoff_delays


def test_backoff_doubles_and_is_capped_with_jitter():
    delays = backoff_delays(cap=2.0, base=0.2, rng=random.Random(1))
    got = [next(delays) for _ in range(10)]
    for i, d in enumerate(got):
        nominal = min(2.0, 0.2 * 2**i)
        assert 0.75 * nominal <= d <= 1.25 * nominal
    assert max(got) <= 2.5


def test_unreachable_coordinator_gives_up_after_the_reconnect_timeout(pki, port):
    conn = Connection(
        f"127.0.0.1:{port}",
        pki.tls("alice"),
        client_id="alice",
        federation_id="f",
        reconnect_timeout=1.0,
        backoff_max=0.2,
        rpc_timeout=0.5,
    )
    with pytest.raises(CoordinatorUnreachable, match="unreachable for 1 s"):
        conn.join("t")
