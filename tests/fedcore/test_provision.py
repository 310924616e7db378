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
    res = provision(out, ["alice", "bob", "carol"], server_names=["coord.example.org"],
                    address="10.0.0.5:6000", aggregation="plain", rounds=4)
    ca = (out / "ca.pem").read_bytes()
    for key in [out / "ca.key", out / "server.key", *(out / "clients" / c / "key.pem" for c in ("alice", "bob", "carol"))]:
        assert _mode(key) == 0o600, key
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "coord.example.org"} <= set(sans.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.0.0.5")} <= set(
        sans.get_values_for_type(x509.IPAddress))
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
