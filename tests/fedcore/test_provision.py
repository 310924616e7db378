"""Provisioning: certificates chained to the federation CA, private keys 0600, configs that load."""

from __future__ import annotations

import ipaddress
import stat

import pytest
from cryptography import x509

from fedcore.common.errors import ConfigError
from fedcore.config import load_client_config, load_coordinator_config
from fedcore.provision import provision
from fedcore.transport.certs import common_name, verify_issued_by


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_certificates_and_key_permissions(tmp_path):
    out = tmp_path / "fed"
    res = provision(
        out,
        ["alice", "bob", "carol"],
        server_names=["coord.example.org"],
        address="10.0.0.5:6000",
        aggregation="plain",
        rounds=4,
    )
    ca = (out / "ca.pem").read_bytes()
    for key in [
        out / "ca.key",
        out / "server.key",
        *(out / "clients" / c / "key.pem" for c in ("alice", "bob", "carol")),
    ]:
        assert _mode(key) == 0o600, key
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "coord.example.org"} <= set(sans.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.5")} <= set(
        sans.get_values_for_type(x509.IPAddress)
    )
    verify_issued_by((out / "server.pem").read_bytes(), ca)
    for cid in ("alice", "bob", "carol"):
        cert = (out / "clients" / cid / "cert.pem").read_bytes()
        verify_issued_by(cert, ca)
        assert common_name(cert) == cid
        assert (out / "clients" / cid / "ca.pem").read_bytes() == ca
    coord = load_coordinator_config(res.coordinator_config)
    assert coord.federation.rounds == 4 and coord.federation.aggregation == "plain"
    assert coord.server.address == "0.0.0.0:6000" and coord.federation.min_clients == 3
    bob = load_client_config(res.client_configs["bob"])
    assert bob.client.coordinator == "10.0.0.5:6000" and bob.client.id == "bob"
    assert bob.workload.settings["client_index"] == 1 and bob.workload.settings["num_clients"] == 3


def test_client_folder_is_self_contained(tmp_path):
    res = provision(tmp_path / "fed", ["alice"], aggregation="plain")
    moved = tmp_path / "elsewhere"
    (tmp_path / "fed" / "clients" / "alice").rename(moved)
    cfg = load_client_config(moved / "client.toml")
    assert cfg.tls.key == moved / "key.pem" and cfg.tls.key.exists()
    assert res.client_configs["alice"].name == "client.toml"


def test_bad_requests_are_refused_with_every_problem(tmp_path):
    with pytest.raises(ConfigError) as exc:
        provision(tmp_path / "x", ["a", "a"], address="nohost", client_settings=[{}])
    text = str(exc.value)
    assert "unique" in text and "HOST:PORT" in text and "client_settings has 1 entries" in text
    with pytest.raises(ConfigError, match="1-64 characters"):
        provision(tmp_path / "y", ["bad id!"])


# -- enrolment: each institution makes its own key ------------------------------------------------
def test_enrolled_client_joins_a_real_coordinator_and_the_operator_never_held_its_key(tmp_path):
    from fedcore_testkit import TinyWorkload, make_engine

    from fedcore.config.client import load_client_config
    from fedcore.coordinator.servicer import FederationServicer
    from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
    from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
    from fedcore.provision import enroll, sign
    from fedcore.transport.channel import open_channel
    from fedcore.transport.server import serve
    from fedcore.transport.tls import TlsMaterial

    fed, site, reply = tmp_path / "fed", tmp_path / "alice-site", tmp_path / "reply"
    provision(fed, [], address="127.0.0.1:6000", aggregation="plain", federation_id="fed-test")
    assert not (fed / "clients").exists()
    done = enroll("alice", site)  # at the institution
    assert _mode(done.key) == 0o600 and done.csr.name == "alice.csr"
    signed = sign(done.csr, fed, reply)  # at the operator: CSR only
    assert sorted(p.name for p in reply.iterdir()) == ["alice.pem", "ca.pem", "client.toml"]
    assert (fed / "issued" / "alice.pem").exists() and signed.client_id == "alice"
    assert not list(fed.rglob("*alice*.key")) and not list(reply.rglob("*.key"))
    for f in reply.iterdir():  # the reply travels back
        (site / f.name).write_bytes(f.read_bytes())
    cfg = load_client_config(site / "client.toml")
    assert cfg.client.id == "alice" and cfg.client.federation == "fed-test"
    assert cfg.client.coordinator == "127.0.0.1:6000" and cfg.tls.key == site / "alice.key"

    engine = make_engine(tmp_path / "run", workload=TinyWorkload(stats=False))
    bound = serve(
        FederationServicer(engine),
        "127.0.0.1:0",
        TlsMaterial.from_files(fed / "ca.pem", fed / "server.pem", fed / "server.key"),
    )
    try:
        tls = TlsMaterial.from_files(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
        with open_channel(f"127.0.0.1:{bound.port}", tls) as channel:
            reply_msg = pb_grpc.FederationStub(channel).Join(
                pb.JoinRequest(header=pb.Header(federation_id="fed-test", client_id="alice")), timeout=10
            )
        assert reply_msg.header.client_id == "alice" and "alice" in engine.registry
    finally:
        bound.stop(grace=None)


def test_sign_refuses_a_second_certificate_for_a_name(tmp_path):
    from fedcore.provision import enroll, sign
    from fedcore.transport.certs import CsrRefused

    fed = tmp_path / "fed"
    provision(fed, ["bob"], aggregation="plain")  # bob provisioned on this machine
    sign(enroll("alice", tmp_path / "a").csr, fed, tmp_path / "r1")
    with pytest.raises(CsrRefused, match="'alice' was already issued"):
        sign(enroll("alice", tmp_path / "a2").csr, fed, tmp_path / "r2")
    with pytest.raises(CsrRefused, match="'bob' was already issued"):
        sign(enroll("bob", tmp_path / "b").csr, fed, tmp_path / "r3")
    with pytest.raises(CsrRefused, match="'localhost' is a name of the coordinator"):
        sign(enroll("localhost", tmp_path / "l").csr, fed, tmp_path / "r4")
    assert not (tmp_path / "r2").exists()


def test_enroll_never_replaces_a_key(tmp_path):
    from fedcore.provision import enroll

    first = enroll("alice", tmp_path).key.read_bytes()
    with pytest.raises(ConfigError, match="never replaces a key"):
        enroll("alice", tmp_path)
    assert (tmp_path / "alice.key").read_bytes() == first
