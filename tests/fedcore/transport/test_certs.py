"""The federation CA: issuance, verification, SANs, key-file permissions and a real mTLS handshake."""

import datetime as dt
import ipaddress
import os
import stat
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedcore.common.errors import ConfigError
from fedcore.transport.certs import (
    CertificateError,
    Credentials,
    common_name,
    create_ca,
    issue_client,
    issue_server,
    load_credentials,
    verify_issued_by,
    write_certificate,
    write_private_key,
)


@pytest.fixture(scope="module")
def ca():
    return create_ca()


@pytest.fixture(scope="module")
def other_ca():
    return create_ca()          # same default CN: only the signature tells them apart


@pytest.fixture(scope="module")
def server(ca):
    return issue_server(ca, ("localhost", "127.0.0.1"))


def cert(pem):
    return x509.load_pem_x509_certificate(pem)


def test_issued_certificates_verify_against_their_ca_only(ca, other_ca, server):
    client = issue_client(ca, "site-1")
    for creds in (server, client):
        verify_issued_by(creds.cert_pem, ca.cert_pem)
        with pytest.raises(CertificateError, match="was not issued by CA"):
            verify_issued_by(creds.cert_pem, other_ca.cert_pem)


def test_keys_are_p256_and_signatures_sha256(ca, server):
    for creds in (ca, server):
        c = cert(creds.cert_pem)
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
        assert c.public_key().curve.name == "secp256r1"
        assert c.signature_hash_algorithm.name == "sha256"


def test_server_sans_contain_hosts_as_dns_and_ip(ca):
    creds = issue_server(ca, ["coordinator.example.org", "10.1.2.3", "::1"])
    san = cert(creds.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coordinator.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("::1")]
    assert common_name(creds.cert_pem) == "coordinator.example.org"
    eku = cert(creds.cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cn_is_its_id_with_client_auth_only(ca):
    creds = issue_client(ca, "hospital_A.v2-1")
    assert common_name(creds.cert_pem) == "hospital_A.v2-1"
    c = cert(creds.cert_pem)
    assert list(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize("bad", ["", "a" * 65, "site 1", "site/1", "CN=x,O=y", "ünï", "a\n", 42])
def test_bad_client_ids_are_refused(ca, bad):
    with pytest.raises(ConfigError, match="client id must be 1-64 characters"):
        issue_client(ca, bad)


def test_longest_allowed_client_id_is_accepted(ca):
    assert common_name(issue_client(ca, "a" * 64).cert_pem) == "a" * 64


@pytest.mark.parametrize("hosts", [(), ("",), ("bad host",)])
def test_bad_server_hosts_are_refused(ca, hosts):
    with pytest.raises(ConfigError, match="hosts must be"):
        issue_server(ca, hosts)


def test_expired_and_not_yet_valid_certificates_are_refused(ca):
    creds = issue_client(ca, "site-2", days=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(CertificateError, match="expired"):
        verify_issued_by(creds.cert_pem, ca.cert_pem, now=future)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with pytest.raises(CertificateError, match="not valid before"):
        verify_issued_by(creds.cert_pem, ca.cert_pem, now=past)


def test_malformed_pem_and_non_ca_issuer_are_refused(ca, server):
    with pytest.raises(CertificateError, match="not a PEM X.509 certificate"):
        verify_issued_by(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ca.cert_pem)
    with pytest.raises(CertificateError, match="not a PEM X.509 certificate"):
        common_name(b"garbage")
    with pytest.raises(CertificateError, match="not a CA certificate"):
        verify_issued_by(server.cert_pem, server.cert_pem)
    with pytest.raises(CertificateError, match="not a CA certificate"):
        issue_client(server, "site-3")       # an end-entity certificate cannot issue


def test_ca_key_must_match_ca_certificate(ca, other_ca):
    with pytest.raises(CertificateError, match="does not belong"):
        issue_client(Credentials(ca.cert_pem, other_ca.key_pem), "site-4")


def test_credentials_repr_hides_the_key(ca):
    assert b"PRIVATE KEY" in ca.key_pem
    assert "PRIVATE KEY" not in repr(ca)


def test_key_files_are_0600_and_not_overwritten_silently(tmp_path, ca):
    old = os.umask(0o000)             # the most permissive umask must not widen the key's mode
    try:
        path = tmp_path / "ca.key"
        write_private_key(path, ca.key_pem)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == ca.key_pem
        with pytest.raises(FileExistsError):
            write_private_key(path, b"other")
        write_private_key(path, b"replacement", overwrite=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == b"replacement"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key"]
    finally:
        os.umask(old)


def test_load_credentials_checks_the_pair(tmp_path, ca, server):
    write_certificate(tmp_path / "server.crt", server.cert_pem)
    write_private_key(tmp_path / "server.key", server.key_pem)
    write_private_key(tmp_path / "ca.key", ca.key_pem)
    assert load_credentials(tmp_path / "server.crt", tmp_path / "server.key") == server
    with pytest.raises(CertificateError, match="is not the key of the certificate"):
        load_credentials(tmp_path / "server.crt", tmp_path / "ca.key")


# -- a real TLS handshake ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mtls_port(ca, server):
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), srv)
    creds = grpc.ssl_server_credentials([(server.key_pem, server.cert_pem)], root_certificates=ca.cert_pem,
                                        require_client_auth=True)
    port = srv.add_secure_port("127.0.0.1:0", creds)
    assert port > 0
    srv.start()
    yield port
    srv.stop(grace=None)


def check(port, ca_pem, client: Credentials | None):
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem,
                                         private_key=client.key_pem if client else None,
                                         certificate_chain=client.cert_pem if client else None)
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_client_with_federation_certificate_completes_mtls_handshake(mtls_port, ca):
    reply = check(mtls_port, ca.cert_pem, issue_client(ca, "site-1"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_client_with_foreign_certificate_is_refused(mtls_port, ca, other_ca):
    with pytest.raises(grpc.RpcError) as info:
        check(mtls_port, ca.cert_pem, issue_client(other_ca, "site-1"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_without_certificate_is_refused(mtls_port, ca):
    with pytest.raises(grpc.RpcError) as info:
        check(mtls_port, ca.cert_pem, None)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_server_from_another_ca(mtls_port, ca, other_ca):
    with pytest.raises(grpc.RpcError) as info:
        check(mtls_port, other_ca.cert_pem, issue_client(ca, "site-1"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_certificate_without_the_target_host_is_refused(ca):
    wrong = issue_server(ca, ("coordinator.example.org",))     # no 127.0.0.1 in its SANs
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), srv)
    port = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(wrong.key_pem, wrong.cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True))
    srv.start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            check(port, ca.cert_pem, issue_client(ca, "site-1"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop(grace=None)
