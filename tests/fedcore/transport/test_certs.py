"""The federation CA: issuance, verification, SANs, key-file permissions, CSR enrolment and a real
mTLS handshake."""

import datetime as dt
import ipaddress
import os
import stat
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedcore.common.errors import ConfigError
from fedcore.transport.certs import (
    CertificateError,
    Credentials,
    CsrRefused,
    common_name,
    create_ca,
    issue_client,
    issue_server,
    load_credentials,
    make_csr,
    server_names,
    sign_csr,
    verify_issued_by,
    write_certificate,
    write_private_key,
)


@pytest.fixture(scope="module")
def ca():
    return create_ca()


@pytest.fixture(scope="module")
def other_ca():
    return create_ca()  # same default CN: only the signature tells them apart


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
        issue_client(server, "site-3")  # an end-entity certificate cannot issue


def test_ca_key_must_match_ca_certificate(ca, other_ca):
    with pytest.raises(CertificateError, match="does not belong"):
        issue_client(Credentials(ca.cert_pem, other_ca.key_pem), "site-4")


def test_credentials_repr_hides_the_key(ca):
    assert b"PRIVATE KEY" in ca.key_pem
    assert "PRIVATE KEY" not in repr(ca)


def test_key_files_are_0600_and_not_overwritten_silently(tmp_path, ca):
    old = os.umask(0o000)  # the most permissive umask must not widen the key's mode
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
    creds = grpc.ssl_server_credentials(
        [(server.key_pem, server.cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True
    )
    port = srv.add_secure_port("127.0.0.1:0", creds)
    assert port > 0
    srv.start()
    yield port
    srv.stop(grace=None)


def check(port, ca_pem, client: Credentials | None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )
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
    wrong = issue_server(ca, ("coordinator.example.org",))  # no 127.0.0.1 in its SANs
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), srv)
    port = srv.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(wrong.key_pem, wrong.cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True
        ),
    )
    srv.start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            check(port, ca.cert_pem, issue_client(ca, "site-1"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop(grace=None)


# -- enrolment: CSRs made by the client, signed by the CA ----------------------------------------
def _csr(cn="site-9", key=None, extensions=(), subject=None) -> tuple[bytes, bytes]:
    """(CSR PEM, key PEM) built with cryptography directly, with the given requested extensions."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    csr = b.sign(key, hashes.SHA256())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM), pem


def test_signed_csr_gives_a_client_certificate_that_a_real_mtls_server_accepts(mtls_port, ca):
    enrolment = make_csr("site-7")  # on the client's machine
    cert_pem = sign_csr(Credentials(ca.cert_pem, ca.key_pem), enrolment.cert_pem)  # at the CA: no client key
    cert = x509.load_pem_x509_certificate(cert_pem)
    verify_issued_by(cert_pem, ca.cert_pem)
    assert common_name(cert_pem) == "site-7"
    assert cert.public_key() == serialization.load_pem_private_key(enrolment.key_pem, None).public_key()
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    reply = check(mtls_port, ca.cert_pem, Credentials(cert_pem, enrolment.key_pem))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_csr_with_a_bad_signature_is_refused(ca):
    csr_pem, _ = _csr("site-9")
    csr = x509.load_pem_x509_csr(csr_pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # flip a bit inside the signature
    bad = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrRefused, match="signature does not verify"):
        sign_csr(ca, bad)


def test_csr_whose_subject_was_swapped_after_signing_is_refused(ca):
    """A CSR for one name with the subject of another pasted in: the signature no longer covers it."""
    good = x509.load_pem_x509_csr(_csr("site-9")[0]).public_bytes(serialization.Encoding.DER)
    forged = good.replace(b"site-9", b"site-8")
    with pytest.raises(CsrRefused, match="signature does not verify"):
        sign_csr(ca, x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    "extension,match",
    [
        (x509.BasicConstraints(ca=True, path_length=None), "CA:TRUE"),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), r"extended key usage \['serverAuth'\]"),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]), "codeSigning"),
        (x509.SubjectAlternativeName([x509.DNSName("coordinator.example.org")]), "subjectAltName"),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            "keyCertSign",
        ),
        (x509.OCSPNoCheck(), "never carries"),
    ],
)
def test_csr_requesting_more_than_a_client_certificate_is_refused(ca, extension, match):
    csr_pem, _ = _csr("site-9", extensions=[(extension, False)])
    with pytest.raises(CsrRefused, match=match):
        sign_csr(ca, csr_pem)


def test_csr_requesting_only_client_auth_is_signed(ca):
    csr_pem, _ = _csr(
        "site-9",
        extensions=[
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
        ],
    )
    assert common_name(sign_csr(ca, csr_pem)) == "site-9"


def test_csr_for_an_issued_name_a_server_name_or_a_bad_name_is_refused(ca, server):
    with pytest.raises(CsrRefused, match="'site-1' was already issued"):
        sign_csr(ca, _csr("site-1")[0], issued={"site-1"})
    names = server_names(server.cert_pem)
    assert {"localhost", "127.0.0.1"} <= names
    with pytest.raises(CsrRefused, match="'localhost' is a name of the coordinator"):
        sign_csr(ca, _csr("localhost")[0], server_names=names)
    with pytest.raises(CsrRefused, match="1-64 characters"):
        sign_csr(ca, _csr("bad id!")[0])
    two = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "site-2"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org")]
    )
    with pytest.raises(CsrRefused, match="exactly CN=<client id>"):
        sign_csr(ca, _csr(subject=two)[0])


def test_csr_refusal_lists_every_problem_and_non_p256_keys(ca):
    key = ec.generate_private_key(ec.SECP384R1())
    csr_pem, _ = _csr("site-1", key=key, extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    with pytest.raises(CsrRefused) as info:
        sign_csr(ca, csr_pem, issued={"site-1"})
    text = str(info.value)
    assert "P-256" in text and "secp384r1" in text and "CA:TRUE" in text and "already issued" in text
    with pytest.raises(CsrRefused, match="not a PEM certificate signing request"):
        sign_csr(ca, b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
