"""SecAgg+'s advertised keys are signed with the client certificate and checked by every receiver."""

from __future__ import annotations

import pytest
import secagg_signed_kit as kit

from fedcore.common.aggregation import ClientIdentity
from fedcore.common.errors import ProtocolAbort
from fedcore.crypto.recipes import new_keypair
from fedcore.secagg import auth

FED = "fed-signed"


def _identity(pki, cid: str) -> ClientIdentity:
    creds = pki.clients[cid]
    return ClientIdentity(cid, creds.cert_pem, creds.key_pem, pki.ca_pem)


def _verify(pki, peer: str, c_pk: bytes, s_pk: bytes, sig: bytes, cert: bytes, round_: int = 3, attempt: int = 1):
    auth.verify_peer_keys(
        peer, c_pk, s_pk, sig, cert, ca_pem=pki.ca_pem, federation_id=FED, round_=round_, attempt=attempt
    )


def test_signed_keys_verify_and_every_substitution_is_refused(pki):
    alice = _identity(pki, "alice")
    c_pk, s_pk = new_keypair()[1], new_keypair()[1]
    sig = auth.sign_keys(alice, FED, 3, 1, c_pk, s_pk)
    _verify(pki, "alice", c_pk, s_pk, sig, alice.cert_pem)
    other = new_keypair()[1]
    cases = {
        "channel key swapped": ("alice", other, s_pk, sig, alice.cert_pem, 3, 1),
        "mask key swapped": ("alice", c_pk, other, sig, alice.cert_pem, 3, 1),
        "keys swapped with each other": ("alice", s_pk, c_pk, sig, alice.cert_pem, 3, 1),
        "replayed into another round": ("alice", c_pk, s_pk, sig, alice.cert_pem, 4, 1),
        "replayed into another attempt": ("alice", c_pk, s_pk, sig, alice.cert_pem, 3, 2),
        "claimed by bob": ("bob", c_pk, s_pk, sig, alice.cert_pem, 3, 1),
    }
    for why, args in cases.items():
        with pytest.raises(auth.PeerKeyRefused):
            _verify(pki, *args)
        assert issubclass(auth.PeerKeyRefused, ProtocolAbort), why
    with pytest.raises(auth.PeerKeyRefused, match="without a signature"):
        _verify(pki, "alice", c_pk, s_pk, b"", b"")
    foreign = pki.foreign_alice  # an "alice" certificate from another CA, with its own key
    forged = auth.sign_keys(ClientIdentity("alice", foreign.cert_pem, foreign.key_pem), FED, 3, 1, c_pk, s_pk)
    with pytest.raises(auth.PeerKeyRefused, match="not issued by the federation CA"):
        _verify(pki, "alice", c_pk, s_pk, forged, foreign.cert_pem)
    bob = _identity(pki, "bob")  # a federation member signing keys under alice's name
    with pytest.raises(auth.PeerKeyRefused, match="common name"):
        _verify(pki, "alice", c_pk, s_pk, auth.sign_keys(bob, FED, 3, 1, c_pk, s_pk), bob.cert_pem)


def test_ckks_and_secagg_share_one_signing_helper():
    from fedcore.crypto import signing
    from fedcore.he import keys

    assert issubclass(keys.KeyExchangeRefused, signing.IdentityRefused)
    assert keys.transcript is signing.transcript and keys.MAX_CERT_BYTES == signing.MAX_CERT_BYTES


def test_a_coordinator_substituting_keys_makes_the_client_abort_before_using_them(pki, tmp_path):
    """Through the real client and server: with the signed-keys wire fields, an honest round
    completes and a substituted key for bob aborts alice with PeerKeyRefused before she derives a
    channel key for anyone."""
    if auth.WIRE_SUPPORT:
        out = kit.substitution_scenario(pki.folder)
    else:  # the committed secagg_pb2 predates the fields: run with them generated (kit.PROTO_CHANGE)
        out = kit.run_patched(tmp_path, pki.folder)
    assert out["wire_support"] is True
    assert out["honest_sum"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
    assert out["signed"] == list(kit.CLIENTS)
    assert out["refused"] and "bob" in out["refused"] and "signature does not verify" in out["refused"]
    assert out["aborted"] and out["alice_channel_keys"] == []
