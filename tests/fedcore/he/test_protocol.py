"""The ckks mode end to end through the in-process driver: set-up, rounds, dropouts, refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest
from google.protobuf import any_pb2

from fedcore.common.aggregation import AggregationContext, ClientJob
from fedcore.common.errors import (
    AggregationAborted,
    ConfigError,
    InvalidPayload,
    NotAuthorized,
    ProtocolAbort,
)
from fedcore.common.stages import Stage
from fedcore.crypto import recipes
from fedcore.he.client import CkksClient
from fedcore.he.context import SecretContext
from fedcore.he.driver import InProcessDriver
from fedcore.he.params import CkksParams
from fedcore.he.relay import choose_holder
from fedcore.he.server import CkksServer, agreed_units
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

L = 300


def _rel(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _rewrite(msg_cls, edit):
    """A tamper hook body: parse the Any as msg_cls, let edit() change it, re-pack."""
    def apply(data: bytes) -> bytes:
        packed = any_pb2.Any.FromString(data)
        msg = msg_cls()
        packed.Unpack(msg)
        edit(msg)
        packed.Pack(msg)
        return packed.SerializeToString()
    return apply


def test_round_sum_of_ten_clients_is_precise(ca, h):
    _server, clients, drv = h.make_federation(ca, 10)
    drv.setup()
    jobs = h.make_jobs(clients, L)
    res, _ = drv.run_round(1, jobs)
    want, weight = h.expected_sum(jobs)
    assert _rel(res.weighted_sum, want) <= 1e-6
    assert res.total_weight == pytest.approx(weight, abs=1e-6) and res.num_contributors == 10
    # every client learnt the same rounded sum as the coordinator
    for cid in clients:
        np.testing.assert_array_equal(jobs[cid].result.weighted_sum, res.weighted_sum)
        assert jobs[cid].result.total_weight == res.total_weight


def test_every_client_holds_the_same_key_and_the_coordinator_none(ca, h):
    server, clients, drv = h.make_federation(ca, 4, record=True)
    drv.setup()
    ids = {tuple(c.key_ids) for c in clients.values()}
    assert len(ids) == 1 and server._key.key_id == ids.pop()[0]
    assert not server.public.is_private() and not hasattr(server.public, "decrypt")
    secret = next(iter(clients.values()))._keys[server._key.key_id].secret_bytes()
    # the secret key (or any 64-byte window of it) never appears in what the coordinator received
    seen = b"".join(drv.server_received)
    assert all(secret[i:i + 64] not in seen for i in range(16, len(secret) - 64, 4096))
    assert not any(isinstance(v, SecretContext) for v in vars(server).values())


def test_dropout_at_input_is_excluded_and_sum_of_rest_correct(ca, h):
    _server, clients, drv = h.make_federation(ca, 5)
    drv.setup()
    jobs = h.make_jobs(clients, L, seed=3)
    res, stats = drv.run_round(1, jobs, dropouts={Stage.CKKS_ENCRYPTED_INPUT: ["client-02"]})
    rest = {c: j for c, j in jobs.items() if c != "client-02"}
    want, weight = h.expected_sum(rest)
    assert _rel(res.weighted_sum, want) <= 1e-6 and res.total_weight == pytest.approx(weight)
    assert res.num_contributors == 4 and res.notes["dropped"] == ["client-02"]
    assert stats[0].refused == {"client-02": "dropped out"}


def test_dropout_at_decrypt_still_gives_the_sum(ca, h):
    _server, clients, drv = h.make_federation(ca, 4)
    drv.setup()
    jobs = h.make_jobs(clients, L, seed=4)
    res, _ = drv.run_round(1, jobs, dropouts={Stage.CKKS_DECRYPT: ["client-00", "client-03"]})
    want, _ = h.expected_sum(jobs)
    assert _rel(res.weighted_sum, want) <= 1e-6 and res.num_contributors == 4
    assert res.notes["decryptors"] == ["client-01", "client-02"]


def test_key_holder_absent_at_setup_another_is_chosen(ca, h):
    server, _clients, drv = h.make_federation(ca, 4)
    stats = drv.setup(dropouts={Stage.CKKS_KEY_ADVERTISE: ["client-00"]})
    assert server.setup_done()
    assert stats[0].refused == {"client-00": "dropped out"}
    holders = server._key.holders
    assert "client-00" not in holders and holders == {"client-01", "client-02", "client-03"}
    res, _ = drv.run_round(1, h.make_jobs(["client-01", "client-02", "client-03"], L))
    assert res.num_contributors == 3


def test_key_holder_gone_after_setup_is_no_problem(ca, h):
    _server, clients, drv = h.make_federation(ca, 4)
    drv.setup()
    drv.dead.add("client-00")  # the holder
    res, _ = drv.run_round(1, h.make_jobs(clients, L, seed=5))
    assert res.num_contributors == 3


def test_keys_rotate_with_each_coordinator_run(ca, h):
    _, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    first = drv.server._key.key_id
    server2 = CkksServer(h.FEDERATION, {})
    InProcessDriver(server2, clients).setup()
    assert server2._key.key_id != first


def test_tampered_envelope_refused_by_peer(ca, h):
    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down" and cid == "client-02":
            def flip(m):
                m.envelope = m.envelope[:-1] + bytes([m.envelope[-1] ^ 1])
            return _rewrite(ckpb.CkksKeyReceiveTask, flip)(data)
        return data
    server, clients, drv = h.make_federation(ca, 3, tamper=tamper)
    stats = drv.setup()
    assert "does not open" in stats[2].refused["client-02"]
    assert clients["client-02"].key_ids == [] and "client-02" not in server._key.holders


def test_envelope_moved_to_another_peer_refused(ca, h):
    envelopes = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down":
            def swap(m):
                envelopes[cid] = m.envelope
                if cid == "client-02":
                    m.envelope = envelopes["client-01"]
            return _rewrite(ckpb.CkksKeyReceiveTask, swap)(data)
        return data
    _server, clients, drv = h.make_federation(ca, 3, tamper=tamper)
    stats = drv.setup()
    assert "client-02" in stats[2].refused and clients["client-01"].key_ids


def test_peer_with_wrong_certificate_gets_no_key(ca, other_ca, h):
    server = CkksServer(h.FEDERATION, {})
    clients = {cid: CkksClient(ca.identity(cid), h.FEDERATION, {}) for cid in h.client_ids(3)}
    clients["client-03"] = CkksClient(other_ca.identity("client-03"), h.FEDERATION, {})  # foreign CA
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_DISTRIBUTE and direction == "up":
            any_pb2.Any.FromString(data).Unpack(seen.setdefault("dist", ckpb.CkksKeyDistribution()))
        return data
    drv = InProcessDriver(server, clients, tamper=tamper)
    stats = drv.setup()
    assert "not issued by the federation CA" in seen["dist"].rejected["client-03"]
    assert stats[1].refused == {} and "client-03" not in server.expected(Stage.CKKS_KEY_RECEIVE)
    assert "client-03" not in server._key.holders
    assert clients["client-03"].key_ids == []


def test_swapped_holder_key_refused_by_peer(ca, h):
    # the coordinator replaces the holder's advertisement key with its own: the signature breaks
    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down":
            def swap(m):
                m.holder.x25519_public = recipes.new_keypair()[1]
            return _rewrite(ckpb.CkksKeyReceiveTask, swap)(data)
        return data
    _, _clients, drv = h.make_federation(ca, 3, tamper=tamper)
    stats = drv.setup()
    assert all("signature" in why for why in stats[2].refused.values()) and len(stats[2].refused) == 2


def _garble(stage_wanted, victim, edit):
    def tamper(stage, cid, direction, data):
        if stage == stage_wanted and direction == "up" and cid == victim:
            return _rewrite(ckpb.CkksEncryptedInput, edit)(data)
        return data
    return tamper


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.ciphertexts.__setitem__(0, b"\x00" * 100), "SEAL"),
    (lambda m: m.ciphertexts.__setitem__(0, m.ciphertexts[0][:5000]), "declares|SEAL"),
    (lambda m: m.ciphertexts.append(m.ciphertexts[0]), "expected 1 ciphertexts"),
    (lambda m: setattr(m, "key_id", b"x" * 16), "key"),
], ids=["garbage", "truncated", "wrong-count", "wrong-key-id"])
def test_bad_input_drops_that_client_and_round_goes_on(ca, edit, needle, h):
    _server, clients, drv = h.make_federation(ca, 4, tamper=_garble(Stage.CKKS_ENCRYPTED_INPUT, "client-01", edit))
    drv.setup()
    jobs = h.make_jobs(clients, L, seed=6)
    res, stats = drv.run_round(1, jobs)
    assert stats[0].refused.keys() == {"client-01"}
    assert re.search(needle, stats[0].refused["client-01"])
    want, _ = h.expected_sum({c: j for c, j in jobs.items() if c != "client-01"})
    assert _rel(res.weighted_sum, want) <= 1e-6 and res.num_contributors == 3


def test_input_under_other_parameters_refused(ca, h):
    other = SecretContext(CkksParams(poly_modulus_degree=16384))

    def edit(m):
        m.ciphertexts[0] = other.encrypt(np.ones(10))[0]
    _server, clients, drv = h.make_federation(ca, 4, tamper=_garble(Stage.CKKS_ENCRYPTED_INPUT, "client-03", edit))
    drv.setup()
    res, stats = drv.run_round(1, h.make_jobs(clients, L))
    assert "client-03" in stats[0].refused and res.num_contributors == 3


def test_too_few_inputs_abort_the_round(ca, h):
    _server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    with pytest.raises(AggregationAborted, match="at least 3"):
        drv.run_round(1, h.make_jobs(clients, L), dropouts={Stage.CKKS_ENCRYPTED_INPUT: ["client-00"]})


def test_identical_resubmission_ignored_different_refused(ca, h):
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    jobs = h.make_jobs(clients, L)
    drv.run_round(1, jobs)
    server.begin(AggregationContext(h.FEDERATION, 2, 0, tuple(sorted(clients)), L))
    task = server.task(Stage.CKKS_ENCRYPTED_INPUT, "client-00")
    job = ClientJob(2, 0, jobs["client-00"].vector, 3.0)
    body = clients["client-00"].handle(Stage.CKKS_ENCRYPTED_INPUT, task, job, None)
    server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client-00", body)
    before = server.public.dump_ciphertexts(server._round.total)
    server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client-00", body)  # identical: ignored
    assert server.public.dump_ciphertexts(server._round.total) == before and server._round.input_bytes > 0
    other = clients["client-00"].handle(Stage.CKKS_ENCRYPTED_INPUT, task, ClientJob(2, 0, job.vector, 2.0), None)
    with pytest.raises(InvalidPayload, match="already in the sum"):
        server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client-00", other)
    assert server.public.dump_ciphertexts(server._round.total) == before


def test_client_refuses_decrypt_without_input_and_a_second_decrypt(ca, h):
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    jobs = h.make_jobs(clients, L)
    drv.run_round(1, jobs)
    c = clients["client-00"]
    key_id = server._key.key_id
    task = ckpb.CkksDecryptTask(key_id=key_id, sum_blob="x", vector_length=L, num_ciphertexts=1,
                                num_contributors=3, round_bits=c.params.round_bits)
    with pytest.raises(ProtocolAbort, match="already decrypted"):
        c.handle(Stage.CKKS_DECRYPT, task, jobs["client-00"], lambda n: b"")
    with pytest.raises(ProtocolAbort, match="sent no input"):
        c.handle(Stage.CKKS_DECRYPT, task, ClientJob(9, 0, jobs["client-00"].vector, 1.0), lambda n: b"")


def _serve_one_clients_ciphertext(server, claimed: int):
    """A tamper hook for a coordinator that serves client-00's input alone as "the sum" (switched
    to the download level, as an honest sum is), claiming ``claimed`` contributors in both the task
    and the blob (with a matching SHA-256)."""
    import hashlib
    fake = {}
    public = server.public

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_ENCRYPTED_INPUT and direction == "up" and cid == "client-00":
            m = ckpb.CkksEncryptedInput()
            any_pb2.Any.FromString(data).Unpack(m)
            cts = public.load_ciphertexts(list(m.ciphertexts), count=len(m.ciphertexts),
                                          max_bytes=public.max_input_bytes, what="fake")
            fake["cts"] = public.dump_ciphertexts(public.switch_down(cts, public.params.download_level))
        if stage == Stage.CKKS_DECRYPT and direction == "down":
            s = ckpb.CkksEncryptedSum.FromString(server._round.blob)
            del s.ciphertexts[:]
            s.ciphertexts.extend(fake["cts"])
            s.num_contributors = claimed
            fake["blob"] = s.SerializeToString()

            def fix(t):
                t.sum_sha256 = hashlib.sha256(fake["blob"]).digest()
                t.num_contributors = claimed
            return _rewrite(ckpb.CkksDecryptTask, fix)(data)
        if direction == "blob":
            return fake["blob"]
        return data
    return tamper


def test_client_refuses_a_single_ciphertext_whose_coordinator_claims_three(ca, h):
    # the claim passes min_clients, but the count slot inside the ciphertext says 1, not 3
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    drv.tamper = _serve_one_clients_ciphertext(server, claimed=3)
    with pytest.raises(AggregationAborted, match="no client returned"):
        drv.run_round(1, h.make_jobs(clients, L))
    refusals = drv.last_stats[1].refused
    assert len(refusals) == 3 and all("count slot" in why for why in refusals.values())


def test_client_refuses_a_single_ciphertext_with_an_honest_count_of_one(ca, h):
    # an honest count of 1 (task, blob and count slot agree) is still below every client's min_clients
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    drv.tamper = _serve_one_clients_ciphertext(server, claimed=1)
    with pytest.raises(AggregationAborted, match="no client returned"):
        drv.run_round(1, h.make_jobs(clients, L))
    refusals = drv.last_stats[1].refused
    assert len(refusals) == 3 and all("fewer than this client's min_clients 3" in why for why in refusals.values())


def test_client_min_clients_is_its_own_and_never_below_two(ca, h):
    # a coordinator configured with min_clients 2 cannot lower a client's floor of 3
    server = CkksServer(h.FEDERATION, {"min_clients": 2})
    clients = {c: CkksClient(ca.identity(c), h.FEDERATION, {}) for c in h.client_ids(3)}
    drv = InProcessDriver(server, clients)
    drv.setup()
    with pytest.raises(AggregationAborted, match="no client returned"):
        drv.run_round(1, h.make_jobs(clients, L), dropouts={Stage.CKKS_ENCRYPTED_INPUT: ["client-02"]})
    assert all("min_clients 3" in why for why in drv.last_stats[1].refused.values())
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ConfigError, match="min_clients must be an integer >= 2"):
            CkksClient(ca.identity("client-00"), h.FEDERATION, {"min_clients": bad})


def test_decrypt_retry_of_the_same_sum_gives_the_same_answer(ca, h):
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and cid == "client-00":
            seen[direction] = data
        return data
    drv.tamper = tamper
    jobs = h.make_jobs(clients, L)
    drv.run_round(1, jobs)
    again = clients["client-00"].handle(Stage.CKKS_DECRYPT, any_pb2.Any.FromString(seen["down"]), jobs["client-00"],
                                        lambda name: server.blob(name, "client-00"))
    first = ckpb.CkksDecryptedSum()
    any_pb2.Any.FromString(seen["up"]).Unpack(first)
    assert again == first


def test_capacity_overflow_refused_by_client(ca, h):
    _server, clients, drv = h.make_federation(ca, 3, settings={"max_abs": 1.0e5, "min_clients": 2})
    drv.setup()
    jobs = h.make_jobs(clients, L)
    jobs["client-01"].vector[0] = 1e6
    res, stats = drv.run_round(1, jobs)
    assert "max_abs" in stats[0].refused["client-01"] and res.num_contributors == 2


def test_late_joiner_sits_out_until_next_setup(ca, h):
    server, clients, drv = h.make_federation(ca, 3)
    drv.setup()
    late = CkksClient(ca.identity("client-09"), h.FEDERATION, {})
    drv.clients["client-09"] = late
    jobs = h.make_jobs(list(clients) + ["client-09"], L)
    res, _ = drv.run_round(1, jobs)
    assert res.num_contributors == 3 and "client-09" not in server.expected(Stage.CKKS_DECRYPT)


def test_blob_only_for_contributors(ca, h):
    server, clients, drv = h.make_federation(ca, 4)
    drv.setup()
    _res, _ = drv.run_round(1, h.make_jobs(clients, L), dropouts={Stage.CKKS_ENCRYPTED_INPUT: ["client-03"]})
    name = "ckks/sum/1/0"
    assert server.blob(name, "client-00")
    with pytest.raises(NotAuthorized):
        server.blob(name, "client-03")
    with pytest.raises(KeyError):
        server.blob("ckks/sum/0/0", "client-00")


def test_majority_decides_and_minority_is_named():
    good = np.arange(5, dtype=np.int64)
    units, agree, disagree = agreed_units({"a": good, "b": good + np.array([0, 1, 0, 0, 0]), "c": good + 50})
    np.testing.assert_array_equal(units, good)
    assert agree == ["a", "b"] and disagree == ["c"]
    with pytest.raises(AggregationAborted, match="disagree"):
        agreed_units({"a": good, "b": good + 50})


def test_plain_mode_runs_through_the_same_driver(h):
    from fedcore.plain import PlainClient, PlainServer
    server = PlainServer(h.FEDERATION, {})
    clients = {cid: PlainClient(None, h.FEDERATION, {}) for cid in h.client_ids(3)}
    jobs = h.make_jobs(clients, L)
    res, _ = InProcessDriver(server, clients).run_round(1, jobs)
    want, _ = h.expected_sum(jobs)
    np.testing.assert_allclose(res.weighted_sum, want)


def test_key_holder_dying_at_distribute_retries_with_another(ca, h):
    server, _clients, drv = h.make_federation(ca, 4, settings={"key_holder": "client-02"})
    stats = drv.setup(dropouts={Stage.CKKS_KEY_DISTRIBUTE: ["client-02"]})
    assert "did not distribute" in stats[1].aborted
    assert server.setup_done() and server._key.holders == {"client-00", "client-01", "client-03"}


def test_holder_choice_prefers_setting_and_skips_failed_holders():
    assert choose_holder(("a", "b", "c"), "b") == "b"
    assert choose_holder(("a", "b", "c"), "z") == "a"
    assert choose_holder(("a", "b", "c"), "b", frozenset({"b", "a"})) == "c"
    assert choose_holder(("a",), None, frozenset({"a"})) == "a"  # nobody else left


def test_duplicated_peer_advertisement_is_sealed_once(ca, h):
    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_DISTRIBUTE and direction == "down":
            def dup(m):
                m.peers.append(m.peers[0])
                m.peers.append(m.peers[0])
            return _rewrite(ckpb.CkksKeyDistributeTask, dup)(data)
        return data
    server, clients, drv = h.make_federation(ca, 3, tamper=tamper)
    drv.setup()
    assert server._key.holders == set(clients)


def test_decrypt_stage_keeps_one_copy_of_identical_decryptions(ca, h):
    """Streaming at CKKS_DECRYPT: identical decryptions are kept once (by SHA-256); a client's
    identical resubmission is ignored and a different one refused."""
    server, clients, drv = h.make_federation(ca, 5)
    drv.setup()
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and direction == "up":
            if "first" not in seen:
                seen["first"] = (cid, data)
            elif cid == "client-04":
                r = server._round
                assert len(r.groups) == 1 and len(r.decrypted_by) == 4
                first_cid, first = seen["first"]
                msg = ckpb.CkksDecryptedSum()
                any_pb2.Any.FromString(first).Unpack(msg)
                server.accept(Stage.CKKS_DECRYPT, first_cid, msg)  # identical: ignored
                other = ckpb.CkksDecryptedSum()
                other.CopyFrom(msg)
                units = np.frombuffer(msg.units.data, "<i8").copy()
                units[0] += 5
                other.units.data = units.tobytes()
                with pytest.raises(InvalidPayload, match="different decryption"):
                    server.accept(Stage.CKKS_DECRYPT, first_cid, other)
                assert len(r.groups) == 1 and len(r.decrypted_by) == 4
                seen["checked"] = True
        return data
    drv.tamper = tamper
    jobs = h.make_jobs(clients, L)
    res, _ = drv.run_round(1, jobs)
    want, _ = h.expected_sum(jobs)
    assert seen.get("checked") and _rel(res.weighted_sum, want) <= 1e-6 and len(res.notes["decryptors"]) == 5
    assert server._round.groups == {}  # freed once the stage closed
