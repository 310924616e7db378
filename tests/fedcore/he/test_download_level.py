"""The served sum is switched down to one prime (<= 16 bytes per parameter); clients check the
level they receive, read the bound slot and fetch the upload-level sum when it does not fit."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from google.protobuf import any_pb2

from fedcore.common.aggregation import ClientJob
from fedcore.common.errors import AggregationAborted
from fedcore.common.stages import Stage
from fedcore.he.params import CkksParams
from fedcore.he.server import FULL_SUFFIX
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

R = CkksParams().reals_per_ciphertext


def _rel(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _sum_message(server) -> ckpb.CkksEncryptedSum:
    return ckpb.CkksEncryptedSum.FromString(server._round.blob)


def _primes(server, blob_cts) -> set[int]:
    cts = server.public.load_ciphertexts(list(blob_cts), count=len(blob_cts), max_bytes=server.public.max_sum_bytes,
                                         what="served", primes=server.params.download_level)
    return {ct.coeff_modulus_size() for ct in cts}


def test_served_sum_is_one_prime_and_at_most_16_bytes_per_parameter(ca, h):
    server, clients, drv = h.make_federation(ca, 4)
    drv.setup()
    length = 4 * R - 3  # the frame fills four ciphertexts: no padding in the figure
    rng = np.random.default_rng(0)
    jobs = {c: ClientJob(1, 0, rng.normal(scale=0.01, size=length), float(rng.integers(20, 300))) for c in clients}
    res, stats = drv.run_round(1, jobs)
    want, weight = h.expected_sum(jobs)
    assert _rel(res.weighted_sum, want) <= 1e-6 and res.total_weight == pytest.approx(weight, abs=1e-5)
    assert res.notes["download_primes"] == 1 and res.notes["full_sum_fetches"] == []
    assert _primes(server, _sum_message(server).ciphertexts) == {1}
    assert res.notes["sum_bytes_per_param"] <= 16.0
    assert stats[1].bytes_down / (4 * length) <= 16.0  # task + sum, per client and parameter


def test_sum_beyond_one_prime_is_decrypted_at_the_upload_level(ca, h):
    # weights of 20000: the bound slot (sum of peaks > 60000) exceeds one prime's 2^14
    _server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    rng = np.random.default_rng(1)
    jobs = {c: ClientJob(1, 0, rng.normal(size=R + 10), 20000.0) for c in clients}
    res, _ = drv.run_round(1, jobs)
    want, weight = h.expected_sum(jobs)
    assert _rel(res.weighted_sum, want) <= 1e-6 and res.total_weight == pytest.approx(weight, abs=1e-5)
    assert res.notes["full_sum_fetches"] == sorted(clients)
    assert res.notes["full_sum_bytes_per_param"] > res.notes["sum_bytes_per_param"]
    for cid in clients:
        assert jobs[cid].result.notes["sum_primes"] == 2
        np.testing.assert_array_equal(jobs[cid].result.weighted_sum, res.weighted_sum)


def test_sum_that_fits_is_never_fetched_in_full(ca, h):
    _server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    res, _ = drv.run_round(1, h.make_jobs(clients, 50))
    assert res.notes["full_sum_fetches"] == [] and res.notes["full_sum_bytes_per_param"] is None


def _serve_primary(server, make_blob):
    """A tamper hook: the decrypt task and the primary blob replaced by make_blob(honest sum)."""
    fake = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and direction == "down":
            fake["blob"] = make_blob(server)
            packed = any_pb2.Any.FromString(data)
            task = ckpb.CkksDecryptTask()
            packed.Unpack(task)
            task.sum_sha256 = hashlib.sha256(fake["blob"]).digest()
            packed.Pack(task)
            return packed.SerializeToString()
        if direction == "blob" and data == server._round.blob:
            return fake["blob"]
        return data
    return tamper


def test_client_refuses_a_sum_served_at_an_undeclared_level(ca, h):
    # the coordinator serves the upload-level sum where the one-prime sum is declared
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()

    def full(server):
        return server._sum_message(server._round, server._round.total)
    drv.tamper = _serve_primary(server, full)
    with pytest.raises(AggregationAborted, match="no client returned"):
        drv.run_round(1, h.make_jobs(clients, 50))
    refusals = drv.last_stats[1].refused
    # the size bound of a one-prime ciphertext refuses it before SEAL parses it; the level (parms_id)
    # check behind it refuses what fits the size (tests/fedcore/he/test_context.py)
    assert len(refusals) == 3 and all("exceeds" in why or "another level" in why for why in refusals.values())


def test_client_refuses_a_full_sum_that_is_not_the_served_one(ca, h):
    # large weights force the full fetch; the coordinator swaps two ciphertexts of the full sum
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()

    def tamper(stage, cid, direction, data):
        if direction == "blob" and data == server._round.full_blob:
            s = ckpb.CkksEncryptedSum.FromString(data)
            cts = list(s.ciphertexts)
            del s.ciphertexts[:]
            s.ciphertexts.extend(cts[::-1])
            return s.SerializeToString()
        return data
    drv.tamper = tamper
    rng = np.random.default_rng(2)
    jobs = {c: ClientJob(1, 0, rng.normal(size=R + 10), 20000.0) for c in clients}
    with pytest.raises(AggregationAborted, match="no client returned"):
        drv.run_round(1, jobs)
    refusals = drv.last_stats[1].refused
    assert len(refusals) == 3 and all("not the sum of" in why for why in refusals.values())


def test_full_sum_only_for_contributors_and_only_when_it_exists(ca, h):
    from fedcore.common.errors import NotAuthorized
    server, clients, drv = h.make_federation(ca, 4)
    drv.setup()
    drv.run_round(1, h.make_jobs(clients, 50), dropouts={Stage.CKKS_ENCRYPTED_INPUT: ["client-03"]})
    with pytest.raises(KeyError):  # the decrypt stage closed: nothing is kept
        server.blob("ckks/sum/1/0" + FULL_SUFFIX, "client-00")
    # one prime all the way (max_abs <= 2^14): no fuller sum exists
    server, clients, drv = h.make_federation(ca, 3, settings={"max_abs": 2.0 ** 14})
    drv.setup()
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and direction == "down" and "checked" not in seen:
            seen["checked"] = True
            with pytest.raises(KeyError):
                server.blob(server._round.blob_name + FULL_SUFFIX, cid)
            with pytest.raises(NotAuthorized):
                server.blob(server._round.blob_name, "client-09")
        return data
    drv.tamper = tamper
    res, _ = drv.run_round(1, h.make_jobs(clients, 50))
    assert seen and res.notes["level_primes"] == 1 and res.notes["download_primes"] == 1
