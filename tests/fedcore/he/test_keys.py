"""Signed advertisements, certificate checks and sealed envelopes of the CKKS key exchange."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedcore.common.aggregation import ClientIdentity
from fedcore.common.errors import ConfigError
from fedcore.crypto import recipes
from fedcore.he import keys
from fedcore.proto.fedpsyau.v1 import ckks_pb2 as ckpb

FED = "fed-keys"


def _setup() -> ckpb.CkksSetupHeader:
    return ckpb.CkksSetupHeader(setup_id=os.urandom(16), key_holder="alice", params_fingerprint=os.urandom(16))


def _advert(identity, setup):
    _, pk = recipes.new_keypair()
    return keys.make_advertisement(identity, FED, setup, pk)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["ecdsa-p256", "ed25519", "rsa-pss"],
)
def test_advertisement_verifies_for_each_key_type(ca, key):
    setup = _setup()
    adv = _advert(ca.identity("bob", key), setup)
    assert keys.verify_advertisement(adv, ca_pem=ca.pem, federation_id=FED, setup=setup) == adv.x25519_public


def test_unsupported_own_key_type_is_a_config_error(ca):
    from cryptography.hazmat.primitives.asymmetric import dsa

    ident = ca.identity("bob", dsa.generate_private_key(2048))
    with pytest.raises(ConfigError, match="cannot sign"):
        _advert(ident, _setup())


def test_key_not_matching_certificate_is_a_config_error(ca):
    cert, _ = ca.issue("bob")
    _, other_key = ca.issue("bob")
    with pytest.raises(ConfigError, match="does not match"):
        _advert(ClientIdentity("bob", cert, other_key, ca.pem), _setup())


def test_foreign_ca_certificate_refused(ca, other_ca):
    setup = _setup()
    adv = _advert(other_ca.identity("bob"), setup)
    with pytest.raises(keys.KeyExchangeRefused, match="not issued by the federation CA"):
        keys.verify_advertisement(adv, ca_pem=ca.pem, federation_id=FED, setup=setup)


def test_certificate_of_another_client_refused(ca):
    setup = _setup()
    adv = _advert(ca.identity("mallory"), setup)
    adv.client_id = "bob"  # claims to be bob with mallory's certificate (signature over "bob" fails too)
    with pytest.raises(keys.KeyExchangeRefused, match="common name"):
        keys.verify_advertisement(adv, ca_pem=ca.pem, federation_id=FED, setup=setup)


def test_server_certificate_refused_as_a_peer(ca):
    # the coordinator's own certificate (serverAuth) must not pass as a client's
    cert, key = ca.issue("coordinator", eku=ExtendedKeyUsageOID.SERVER_AUTH)
    setup = _setup()
    adv = _advert(ClientIdentity("coordinator", cert, key, ca.pem), setup)
    with pytest.raises(keys.KeyExchangeRefused, match="clientAuth"):
        keys.verify_advertisement(adv, ca_pem=ca.pem, federation_id=FED, setup=setup)


def test_expired_certificate_refused(ca):
    cert, _ = ca.issue("bob", valid_days=1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(keys.KeyExchangeRefused, match="not valid now"):
        keys.verify_certificate(cert, ca.pem, "bob", now=later)


@pytest.mark.parametrize("field", ["x25519_public", "signature", "setup", "federation"])
def test_tampered_advertisement_refused(ca, field):
    setup = _setup()
    adv = _advert(ca.identity("bob"), setup)
    fed = FED
    if field == "x25519_public":
        adv.x25519_public = recipes.new_keypair()[1]  # the coordinator swaps in its own key
    elif field == "signature":
        adv.signature = adv.signature[:-1] + bytes([adv.signature[-1] ^ 1])
    elif field == "setup":
        setup = _setup()  # replayed into another set-up
    else:
        fed = "another-federation"
    with pytest.raises(keys.KeyExchangeRefused):
        keys.verify_advertisement(adv, ca_pem=ca.pem, federation_id=fed, setup=setup)


def test_envelope_opens_only_for_its_peer_and_binding():
    setup = _setup()
    holder_sk, holder_pk = recipes.new_keypair()
    peer_sk, peer_pk = recipes.new_keypair()
    other_sk, _ = recipes.new_keypair()
    ad = keys.envelope_ad(FED, setup, "alice", "bob", b"k" * 16)
    env = keys.seal_secret(holder_sk, peer_pk, b"secret key bytes", ad)
    assert keys.open_secret(peer_sk, holder_pk, env, ad, "alice") == b"secret key bytes"
    with pytest.raises(keys.KeyExchangeRefused, match="does not open"):
        keys.open_secret(other_sk, holder_pk, env, ad, "alice")  # relayed to another client
    with pytest.raises(keys.KeyExchangeRefused):
        keys.open_secret(peer_sk, holder_pk, env, keys.envelope_ad(FED, setup, "alice", "carol", b"k" * 16), "alice")
    flipped = env[:-1] + bytes([env[-1] ^ 1])
    with pytest.raises(keys.KeyExchangeRefused):
        keys.open_secret(peer_sk, holder_pk, flipped, ad, "alice")


def test_transcript_is_unambiguous():
    assert keys.transcript(b"ab", b"c") != keys.transcript(b"a", b"bc")


def test_federation_provisioned_certificates_work_and_server_one_is_refused():
    """The certificates fedcore.transport.certs issues (ECDSA P-256, clientAuth / serverAuth)."""
    from fedcore.transport.certs import create_ca, issue_client, issue_server

    fed_ca = create_ca()
    cred = issue_client(fed_ca, "site-a")
    setup = _setup()
    adv = _advert(ClientIdentity("site-a", cred.cert_pem, cred.key_pem, fed_ca.cert_pem), setup)
    assert keys.verify_advertisement(adv, ca_pem=fed_ca.cert_pem, federation_id=FED, setup=setup)
    server = issue_server(fed_ca)
    adv = _advert(ClientIdentity("localhost", server.cert_pem, server.key_pem, fed_ca.cert_pem), setup)
    with pytest.raises(keys.KeyExchangeRefused, match="clientAuth"):
        keys.verify_advertisement(adv, ca_pem=fed_ca.cert_pem, federation_id=FED, setup=setup)
