"""The ckks mode end to end through the coordinator's engine and the client daemons (in-memory
transport): set-up, rounds, dropouts, refusals. Client i contributes the known update of
:mod:`fedcore.examples.updates`, so every sum is checked exactly; the key holder is the first
client in sorted order (``client1``) unless a test names another."""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
import pytest
from google.protobuf import any_pb2

from fedcore.common.aggregation import ClientJob
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
from fedcore.he.params import CkksParams
from fedcore.he.relay import choose_holder
from fedcore.he.server import agreed_units
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb
from fedcore.simulation_memory import Faults, MemoryFederation

L = 300
ONE_TRY = {"max_round_retries": 0}  # a failed round attempt aborts the run (no retry to wait through)


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


def _setup_done(engine) -> bool:
    return engine.state.setup_done


def _check_sum(run, cids, round_=1):
    """The coordinator's result is the weighted sum of ``cids``' updates, and the model took its mean."""
    res = run.result()
    want, weight = run.expected_sum(cids, round_)
    assert _rel(res.weighted_sum, want) <= 1e-6
    assert res.total_weight == pytest.approx(weight, abs=1e-5) and res.num_contributors == len(cids)
    assert _rel(run.model(), run.expected_mean(cids, round_)) <= 1e-6
    return res


def test_round_sum_of_ten_clients_is_precise(ckks_run):
    run = ckks_run(10, size=L)
    assert run.run() == 0
    res = _check_sum(run, run.ids)
    assert run.refusals == {}
    # every client learnt the same rounded sum as the coordinator
    for cid in run.ids:
        mine = run.job(cid).result
        np.testing.assert_array_equal(mine.weighted_sum, res.weighted_sum)
        assert mine.total_weight == res.total_weight


def test_every_client_holds_the_same_key_and_the_coordinator_none(ckks_run):
    run = ckks_run(4, size=L, record=True)
    assert run.run() == 0
    server = run.server
    ids = {tuple(run.client(c).key_ids) for c in run.ids}
    assert len(ids) == 1 and server._key.key_id == ids.pop()[0]
    assert not server.public.is_private() and not hasattr(server.public, "decrypt")
    secret = run.client("client1")._keys[server._key.key_id].secret_bytes()
    # the secret key (or any 64-byte window of it) never appears in what the coordinator received
    seen = b"".join(run.fed.server_received)
    assert run.fed.server_received and all(secret[i : i + 64] not in seen for i in range(16, len(secret) - 64, 4096))
    assert not any(isinstance(v, SecretContext) for v in (*vars(server).values(), *vars(server._relay).values()))
    # nor a client's update, raw or weighted, in float64 or float32
    for cid in run.ids:
        raw, weight = run.expected_sum([cid])
        for v in (raw, raw / weight):
            for dtype in (np.float64, np.float32):
                assert v.astype(dtype).tobytes()[:64] not in seen


def test_dropout_at_input_is_excluded_and_sum_of_rest_correct(ckks_run):
    run = ckks_run(5, size=L, faults=Faults(silent_at={("CKKS_ENCRYPTED_INPUT", 1): {"client3"}}))
    assert run.run() == 0
    rest = [c for c in run.ids if c != "client3"]
    res = _check_sum(run, rest)
    assert res.notes["dropped"] == ["client3"] and run.metrics()[0]["contributors"] == 4
    assert run.fed.silent == {"client3"} and "client3" not in run.fed.timings[(1, 0, "CKKS_ENCRYPTED_INPUT")].client_s


def test_dropout_at_decrypt_still_gives_the_sum(ckks_run):
    run = ckks_run(4, size=L, faults=Faults(silent_at={("CKKS_DECRYPT", 1): {"client1", "client4"}}))
    assert run.run() == 0
    res = _check_sum(run, run.ids)
    assert res.notes["decryptors"] == ["client2", "client3"]


def test_key_holder_absent_at_setup_another_is_chosen(ckks_run):
    run = ckks_run(4, size=L, faults=Faults(silent_at={"CKKS_KEY_ADVERTISE": {"client1"}}))
    assert run.run() == 0
    assert run.fed.engine.state.setup_done and run.fed.silent == {"client1"}
    assert (0, 1, "CKKS_KEY_ADVERTISE") in run.fed.timings  # the set-up's second attempt ...
    assert set(run.fed.timings[(0, 1, "CKKS_KEY_DISTRIBUTE")].client_s) == {"client2"}  # ... with a new holder
    assert run.server._key.holders == {"client2", "client3", "client4"}
    _check_sum(run, ["client2", "client3", "client4"])


def test_key_holder_gone_after_setup_is_no_problem(ckks_run):
    run = ckks_run(4, size=L, faults=Faults(silent_at={("TRAIN", 1): {"client1"}}))
    assert run.run() == 0
    assert set(run.fed.timings[(0, 0, "CKKS_KEY_DISTRIBUTE")].client_s) == {"client1"}  # it was the holder
    _check_sum(run, ["client2", "client3", "client4"])


def test_keys_rotate_with_each_coordinator_run(ckks_run):
    run = ckks_run(3, size=L, rounds=2)
    assert run.run_until(lambda engine: engine.state.model_round == 1)
    first = run.server._key.key_id
    run.fed.close()
    # the coordinator restarts on the same folder (resuming at round 2) and its clients with it
    again = MemoryFederation(run.fed.cfg, [d.cfg for d in run.fed.daemons.values()])
    try:
        assert again.run() == 0
        assert again.engine.mode._key.key_id != first
    finally:
        again.close()
    notes = [m["notes"]["key_id"] for m in run.metrics()]
    assert len(notes) == 2 and notes[0] == first.hex()[:16] and notes[1] != notes[0]


def test_tampered_envelope_refused_by_peer(ckks_run):
    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down" and cid == "client2":

            def flip(m):
                m.envelope = m.envelope[:-1] + bytes([m.envelope[-1] ^ 1])

            return _rewrite(ckpb.CkksKeyReceiveTask, flip)(data)
        return data

    run = ckks_run(3, size=L, tamper=tamper)
    assert run.run_until(_setup_done)
    assert run.refusals.keys() == {"client2"} and "does not open" in run.refusals["client2"][0]
    assert run.client("client2").key_ids == [] and "client2" not in run.server._key.holders
    assert "client2" not in run.fed.engine.state.setup_members


def test_envelope_moved_to_another_peer_refused(ckks_run):
    envelopes = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down":

            def swap(m):
                envelopes.setdefault(cid, m.envelope)
                if cid == "client3":
                    m.envelope = envelopes["client2"]

            return _rewrite(ckpb.CkksKeyReceiveTask, swap)(data)
        return data

    run = ckks_run(3, size=L, tamper=tamper)
    assert run.run_until(_setup_done)
    assert run.refusals.keys() == {"client3"} and run.client("client2").key_ids
    assert run.client("client3").key_ids == [] and run.server._key.holders == {"client1", "client2"}


def test_peer_with_wrong_certificate_gets_no_key(ckks_run, other_ca):
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_DISTRIBUTE and direction == "up":
            any_pb2.Any.FromString(data).Unpack(seen.setdefault("dist", ckpb.CkksKeyDistribution()))
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down":
            seen.setdefault("receivers", set()).add(cid)
        return data

    run = ckks_run(4, size=L, tamper=tamper)
    run.fed.daemons["client4"].identity = other_ca.identity("client4")  # a certificate of a foreign CA
    assert run.run_until(_setup_done)
    assert "not issued by the federation CA" in seen["dist"].rejected["client4"]
    assert run.refusals == {} and seen["receivers"] == {"client2", "client3"}
    assert "client4" not in run.server._key.holders and run.client("client4").key_ids == []


def test_swapped_holder_key_refused_by_peer(ckks_run):
    # the coordinator replaces the holder's advertisement key with its own: the signature breaks
    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_RECEIVE and direction == "down":

            def swap(m):
                m.holder.x25519_public = recipes.new_keypair()[1]

            return _rewrite(ckpb.CkksKeyReceiveTask, swap)(data)
        return data

    run = ckks_run(3, size=L, tamper=tamper)
    assert run.run_until(_setup_done)
    refusals = run.refusals
    assert refusals.keys() == {"client2", "client3"} and all("signature" in w[0] for w in refusals.values())


def _garble(stage_wanted, victim, edit):
    def tamper(stage, cid, direction, data):
        if stage == stage_wanted and direction == "up" and cid == victim:
            return _rewrite(ckpb.CkksEncryptedInput, edit)(data)
        return data

    return tamper


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda m: m.ciphertexts.__setitem__(0, b"\x00" * 100), "SEAL"),
        (lambda m: m.ciphertexts.__setitem__(0, m.ciphertexts[0][:5000]), "declares|SEAL"),
        (lambda m: m.ciphertexts.append(m.ciphertexts[0]), "expected 1 ciphertexts"),
        (lambda m: setattr(m, "key_id", b"x" * 16), "key"),
    ],
    ids=["garbage", "truncated", "wrong-count", "wrong-key-id"],
)
def test_bad_input_drops_that_client_and_round_goes_on(ckks_run, edit, needle):
    run = ckks_run(4, size=L, tamper=_garble(Stage.CKKS_ENCRYPTED_INPUT, "client2", edit))
    assert run.run() == 0
    assert run.refusals.keys() == {"client2"}
    (why,) = run.refusals["client2"]
    assert "Submit" in why and re.search(needle, why)  # the coordinator refused it
    _check_sum(run, ["client1", "client3", "client4"])


def test_input_under_other_parameters_refused(ckks_run):
    other = SecretContext(CkksParams(poly_modulus_degree=16384))

    def edit(m):
        m.ciphertexts[0] = other.encrypt(np.ones(10))[0]

    run = ckks_run(4, size=L, tamper=_garble(Stage.CKKS_ENCRYPTED_INPUT, "client4", edit))
    assert run.run() == 0
    assert run.refusals.keys() == {"client4"}
    _check_sum(run, ["client1", "client2", "client3"])


def test_too_few_inputs_abort_the_round(ckks_run):
    run = ckks_run(3, size=L, deadlines=ONE_TRY, faults=Faults(silent_at={("CKKS_ENCRYPTED_INPUT", 1): {"client1"}}))
    assert run.run() == 4
    assert re.search("at least 3", run.fed.engine.state.outcome) and run.model() is None


def test_identical_resubmission_ignored_different_refused(ckks_run):
    run = ckks_run(3, size=L, rounds=2)
    assert run.run_until(run.stage_open(Stage.CKKS_ENCRYPTED_INPUT, 2))
    server, client, job = run.server, run.client("client1"), run.job("client1", 2)
    task = server.task(Stage.CKKS_ENCRYPTED_INPUT, "client1")
    body = client.handle(Stage.CKKS_ENCRYPTED_INPUT, task, job, None)
    server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client1", body)
    before = server.public.dump_ciphertexts(server._round.total)
    server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client1", body)  # identical: ignored
    assert server.public.dump_ciphertexts(server._round.total) == before and server._round.input_bytes > 0
    other = client.handle(Stage.CKKS_ENCRYPTED_INPUT, task, ClientJob(job.round, job.attempt, job.vector, 2.0), None)
    with pytest.raises(InvalidPayload, match="already in the sum"):
        server.accept(Stage.CKKS_ENCRYPTED_INPUT, "client1", other)
    assert server.public.dump_ciphertexts(server._round.total) == before


def test_client_refuses_decrypt_without_input_and_a_second_decrypt(ckks_run):
    run = ckks_run(3, size=L)
    assert run.run() == 0
    c, job = run.client("client1"), run.job("client1")
    task = ckpb.CkksDecryptTask(
        key_id=run.server._key.key_id,
        sum_blob="x",
        vector_length=L,
        num_ciphertexts=1,
        num_contributors=3,
        round_bits=c.params.round_bits,
    )
    with pytest.raises(ProtocolAbort, match="already decrypted"):
        c.handle(Stage.CKKS_DECRYPT, task, job, lambda n: b"")
    with pytest.raises(ProtocolAbort, match="sent no input"):
        c.handle(Stage.CKKS_DECRYPT, task, ClientJob(9, 0, job.vector, 1.0), lambda n: b"")


def _serve_one_clients_ciphertext(run_box: dict, claimed: int):
    """A tamper hook for a coordinator that serves client1's input alone as "the sum" (switched
    to the download level, as an honest sum is), claiming ``claimed`` contributors in both the task
    and the blob (with a matching SHA-256). ``run_box["run"]`` is the run (made after the hook)."""
    fake = {}

    def tamper(stage, cid, direction, data):
        server = run_box["run"].server
        public = server.public
        if stage == Stage.CKKS_ENCRYPTED_INPUT and direction == "up" and cid == "client1":
            m = ckpb.CkksEncryptedInput()
            any_pb2.Any.FromString(data).Unpack(m)
            cts = public.load_ciphertexts(
                list(m.ciphertexts), count=len(m.ciphertexts), max_bytes=public.max_input_bytes, what="fake"
            )
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
        if stage == Stage.CKKS_DECRYPT and direction == "blob":
            return fake["blob"]
        return data

    return tamper


def test_client_refuses_a_single_ciphertext_whose_coordinator_claims_three(ckks_run):
    # the claim passes min_clients, but the count slot inside the ciphertext says 1, not 3
    box = {}
    run = box["run"] = ckks_run(3, size=L, deadlines=ONE_TRY, tamper=_serve_one_clients_ciphertext(box, claimed=3))
    assert run.run() == 4
    assert "no client returned" in run.fed.engine.state.outcome and run.model() is None
    refusals = run.refusals
    assert len(refusals) == 3 and all("count slot" in w[0] for w in refusals.values())


def test_client_refuses_a_single_ciphertext_with_an_honest_count_of_one(ckks_run):
    # an honest count of 1 (task, blob and count slot agree) is still below every client's min_clients
    box = {}
    run = box["run"] = ckks_run(3, size=L, deadlines=ONE_TRY, tamper=_serve_one_clients_ciphertext(box, claimed=1))
    assert run.run() == 4
    assert "no client returned" in run.fed.engine.state.outcome
    refusals = run.refusals
    assert len(refusals) == 3 and all("fewer than this client's min_clients 3" in w[0] for w in refusals.values())


def test_client_min_clients_is_its_own_and_never_below_two(ckks_run, ca, h):
    # a client mode made with its own settings (min_clients 3 by default): a coordinator configured
    # with min_clients 2 cannot lower that floor
    run = ckks_run(
        3,
        size=L,
        ckks={"min_clients": 2},
        deadlines=ONE_TRY,
        faults=Faults(silent_at={("CKKS_ENCRYPTED_INPUT", 1): {"client3"}}),
    )
    run.fed.start()
    for daemon in run.fed.daemons.values():
        daemon.handlers.mode = CkksClient(daemon.identity, h.FEDERATION, {})
    assert run.run() == 4
    assert "no client returned" in run.fed.engine.state.outcome
    refusals = run.refusals
    assert refusals.keys() == {"client1", "client2"} and all("min_clients 3" in w[0] for w in refusals.values())
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ConfigError, match="min_clients must be an integer >= 2"):
            CkksClient(ca.identity("client1"), h.FEDERATION, {"min_clients": bad})


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="the client daemon builds its ckks mode from the coordinator's JoinReply "
    "mode_settings: a client has no min_clients of its own (no [ckks] in client.toml), "
    "so a coordinator configured with min_clients 2 lowers every client's floor to 2",
)
def test_the_client_daemon_keeps_its_own_min_clients_floor(ckks_run):
    run = ckks_run(
        3,
        size=L,
        ckks={"min_clients": 2},
        deadlines=ONE_TRY,
        faults=Faults(silent_at={("CKKS_ENCRYPTED_INPUT", 1): {"client3"}}),
    )
    rc = run.run()
    assert rc == 4 and all("min_clients 3" in w[0] for w in run.refusals.values())


def test_decrypt_retry_of_the_same_sum_gives_the_same_answer(ckks_run):
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and cid == "client1":
            seen.setdefault(direction, data)
        return data

    run = ckks_run(3, size=L, tamper=tamper)
    assert run.run() == 0
    again = run.client("client1").handle(
        Stage.CKKS_DECRYPT, any_pb2.Any.FromString(seen["down"]), run.job("client1"), lambda name: seen["blob"]
    )
    first = ckpb.CkksDecryptedSum()
    any_pb2.Any.FromString(seen["up"]).Unpack(first)
    assert again == first


def test_capacity_overflow_refused_by_client(ckks_run):
    # client2's update is 1e5 times larger: its peak times 3 participants exceeds max_abs
    run = ckks_run(3, size=L, ckks={"max_abs": 1.0e5, "min_clients": 2}, client_settings=[{}, {"scale": 1.0e5}, {}])
    assert run.run() == 0
    assert run.refusals.keys() == {"client2"} and "max_abs" in run.refusals["client2"][0]
    _check_sum(run, ["client1", "client3"])


def test_late_joiner_sits_out_until_next_setup(ckks_run):
    handed = set()

    def tamper(stage, cid, direction, data):
        if direction == "down":
            handed.add((cid, stage))
        return data

    run = ckks_run(4, size=L, tamper=tamper)
    late = run.fed.daemons.pop("client4")
    del run.fed.exit_codes["client4"]
    assert run.run_until(_setup_done)
    run.fed.daemons["client4"] = late  # joins after the key exchange
    run.fed.exit_codes["client4"] = None
    late.join()
    assert run.run() == 0
    _check_sum(run, ["client1", "client2", "client3"])
    assert run.metrics()[0]["clients"] == ["client1", "client2", "client3"]
    assert {s for c, s in handed if c == "client4"} == {Stage.EVALUATE} and late.handlers.mode.key_ids == []


def test_blob_only_for_contributors(ckks_run):
    run = ckks_run(4, size=L, faults=Faults(silent_at={("CKKS_ENCRYPTED_INPUT", 1): {"client4"}}))
    assert run.run_until(run.stage_open(Stage.CKKS_DECRYPT, 1))
    st = run.fed.engine.state
    name = f"ckks/sum/1/{st.attempt}"

    def download(cid, blob):
        conn = run.fed.daemons[cid].conn
        return conn.download(conn.header(st.round, int(st.stage.stage), st.attempt), blob)

    assert download("client1", name)
    with pytest.raises(NotAuthorized):  # PERMISSION_DENIED over gRPC
        download("client4", name)
    with pytest.raises(InvalidPayload, match="no blob"):  # NOT_FOUND over gRPC
        download("client1", "ckks/sum/0/0")
    assert run.run() == 0
    assert run.result().notes["dropped"] == ["client4"]


def test_majority_decides_and_minority_is_named():
    good = np.arange(5, dtype=np.int64)
    units, agree, disagree = agreed_units({"a": good, "b": good + np.array([0, 1, 0, 0, 0]), "c": good + 50})
    np.testing.assert_array_equal(units, good)
    assert agree == ["a", "b"] and disagree == ["c"]
    with pytest.raises(AggregationAborted, match="disagree"):
        agreed_units({"a": good, "b": good + 50})


def test_plain_mode_runs_through_the_same_engine(ckks_run):
    run = ckks_run(3, size=L, aggregation="plain")
    assert run.run() == 0
    want, weight = run.expected_sum(run.ids)
    np.testing.assert_allclose(run.result().weighted_sum, want)
    np.testing.assert_allclose(run.model(), want / weight, rtol=1e-6)


def test_key_holder_dying_at_distribute_retries_with_another(ckks_run, caplog):
    run = ckks_run(
        4, size=L, ckks={"key_holder": "client3"}, faults=Faults(silent_at={"CKKS_KEY_DISTRIBUTE": {"client3"}})
    )
    with caplog.at_level(logging.WARNING, logger="fedcore.coordinator.phases"):
        assert run.run_until(_setup_done)
    assert any("attempt 0 failed" in r.getMessage() and "did not distribute" in r.getMessage() for r in caplog.records)
    assert run.server._key.holders == {"client1", "client2", "client4"}
    assert set(run.fed.timings[(0, 1, "CKKS_KEY_DISTRIBUTE")].client_s) == {"client1"}


def test_holder_choice_prefers_setting_and_skips_failed_holders():
    assert choose_holder(("a", "b", "c"), "b") == "b"
    assert choose_holder(("a", "b", "c"), "z") == "a"
    assert choose_holder(("a", "b", "c"), "b", frozenset({"b", "a"})) == "c"
    assert choose_holder(("a",), None, frozenset({"a"})) == "a"  # nobody else left


def test_duplicated_peer_advertisement_is_sealed_once(ckks_run):
    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_KEY_DISTRIBUTE and direction == "down":

            def dup(m):
                m.peers.append(m.peers[0])
                m.peers.append(m.peers[0])

            return _rewrite(ckpb.CkksKeyDistributeTask, dup)(data)
        return data

    run = ckks_run(3, size=L, tamper=tamper)
    assert run.run_until(_setup_done)
    assert run.server._key.holders == set(run.ids) and run.refusals == {}


def test_decrypt_stage_keeps_one_copy_of_identical_decryptions(ckks_run):
    """Streaming at CKKS_DECRYPT: identical decryptions are kept once (by SHA-256); a client's
    identical resubmission is ignored and a different one refused."""
    seen = {}

    def tamper(stage, cid, direction, data):
        if stage == Stage.CKKS_DECRYPT and direction == "up":
            if "first" not in seen:
                seen["first"] = (cid, data)
            elif cid == "client5":
                server = run.server
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

    run = ckks_run(5, size=L, tamper=tamper)
    assert run.run() == 0
    assert seen.get("checked"), run.refusals
    res = _check_sum(run, run.ids)
    assert len(res.notes["decryptors"]) == 5
    assert run.server._round.groups == {}  # freed once the stage closed
