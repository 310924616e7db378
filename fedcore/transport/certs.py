"""The federation's certificate authority: a CA, server and per-client certificates for mTLS.

Every key is ECDSA on P-256 and every certificate is signed with ECDSA-SHA256
(``cryptography.x509``). A client's identity in the federation is the common name (CN) of its
certificate, so :func:`issue_client` restricts it to ``[A-Za-z0-9_.-]{1,64}``. Certificates are
backdated by five minutes so that a peer whose clock runs slightly behind accepts them.

Private keys are PEM (PKCS#8, unencrypted: the daemons must start unattended) and are written
with :func:`write_private_key`, which creates the file with mode 0600 so that there is no moment
when another user can read it.

Enrolment keeps each client's private key where it was made: :func:`make_csr` makes a key and a
certificate signing request (CSR) on the client's machine, and the federation operator's
:func:`sign_csr` issues the certificate from the CSR alone -- the CA never sees the client key.
``sign_csr`` refuses (:class:`CsrRefused`, every problem listed) a CSR whose signature does not
verify, whose subject is not exactly ``CN=<client id>``, whose name is already issued or is one
of the server's names, whose key is not P-256, or that requests any extension a client
certificate does not get (CA:TRUE, subjectAltName, an extended key usage other than clientAuth,
certificate or CRL signing). What it issues is fixed here, not taken from the request: CA:FALSE,
digitalSignature, clientAuth only, no SANs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcore.common.errors import ConfigError, FedError

CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BACKDATE = dt.timedelta(minutes=5)


class CertificateError(FedError):
    """A certificate or key is malformed, expired, not yet valid, or not issued by the given CA."""


class CsrRefused(CertificateError):
    """A certificate signing request that the federation CA will not sign (the message lists why)."""


@dataclass(frozen=True)
class Credentials:
    """A PEM certificate and its PEM private key (the key is kept out of ``repr``)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{what} is not a PEM X.509 certificate ({exc})") from None


def _load_ca(ca: Credentials) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = _load_cert(ca.cert_pem, "CA certificate")
    try:
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"CA key is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"CA key must be an EC private key (got {type(key).__name__})")
    if key.public_key() != cert.public_key():
        raise CertificateError("CA key does not belong to the CA certificate")
    _require_ca(cert)
    return cert, key


def _require_ca(cert: x509.Certificate) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CertificateError(
            f"{cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints CA:TRUE missing)"
        )


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be an integer >= 1 (got {days!r})", source="certificate")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(subject_cn: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)  # positive, < 2^127
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def create_ca(common_name: str = "FED-PsyAU federation CA", days: int = 3650) -> Credentials:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    _check_days(days)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(common_name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Credentials(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue(
    ca: Credentials, cn: str, eku: x509.ObjectIdentifier, sans: list[x509.GeneralName], days: int
) -> Credentials:
    key = _new_key()
    return Credentials(_sign(ca, cn, key.public_key(), eku, sans, days), _key_pem(key))


def _sign(
    ca: Credentials, cn: str, public_key, eku: x509.ObjectIdentifier, sans: list[x509.GeneralName], days: int
) -> bytes:
    """An end-entity certificate for ``public_key`` (CA:FALSE, digitalSignature, ``eku`` only)."""
    _check_days(days)
    ca_cert, ca_key = _load_ca(ca)
    builder = (
        _builder(cn, ca_cert.subject, public_key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_server(ca: Credentials, hosts: Sequence[str] = ("localhost", "127.0.0.1"), days: int = 825) -> Credentials:
    """A server certificate for ``hosts`` (subjectAltName: IP addresses as IPs, the rest as DNS
    names; CN = the first host) with the serverAuth extended key usage."""
    if isinstance(hosts, str):
        hosts = (hosts,)
    bad = [h for h in hosts if not isinstance(h, str) or not h.strip() or any(c.isspace() for c in h)]
    if not hosts or bad:
        raise ConfigError(
            f"hosts must be a non-empty list of host names or IP addresses (got {list(hosts)!r})", source="issue_server"
        )
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _issue(ca, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans, days)


def issue_client(ca: Credentials, client_id: str, days: int = 825) -> Credentials:
    """A client certificate whose CN is ``client_id`` (the client's federation identity), with the
    clientAuth extended key usage."""
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise ConfigError(
            f"client id must be 1-64 characters of [A-Za-z0-9_.-] (got {client_id!r})", source="issue_client"
        )
    return _issue(ca, client_id, ExtendedKeyUsageOID.CLIENT_AUTH, [], days)


def make_csr(client_id: str) -> Credentials:
    """A new P-256 key and a CSR for ``CN=client_id`` signed with it, as (``cert_pem`` = the CSR
    PEM, ``key_pem``). Run on the client's own machine; only the CSR leaves it."""
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise ConfigError(f"client id must be 1-64 characters of [A-Za-z0-9_.-] (got {client_id!r})", source="enroll")
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_id)]))
        .sign(key, hashes.SHA256())
    )
    return Credentials(csr.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _csr_problems(csr: x509.CertificateSigningRequest, issued: set[str], server_names: set[str]) -> list[str]:
    problems = []
    if not csr.is_signature_valid:
        problems.append(
            "its signature does not verify with the public key it carries (altered, or not signed by that key)"
        )
    key = csr.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        got = f"{key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        problems.append(f"expected an ECDSA P-256 public key (got {got})")
    attrs = list(csr.subject)
    cn = str(attrs[0].value) if len(attrs) == 1 and attrs[0].oid == NameOID.COMMON_NAME else None
    if cn is None:
        problems.append(f"the subject must be exactly CN=<client id> (got {csr.subject.rfc4514_string()!r})")
    elif not CLIENT_ID.fullmatch(cn):
        problems.append(f"the CN must be a client id of 1-64 characters of [A-Za-z0-9_.-] (got {cn!r})")
    elif cn in server_names:
        problems.append(f"the CN {cn!r} is a name of the coordinator's server certificate")
    elif cn in issued:
        problems.append(f"a certificate for {cn!r} was already issued (revoke it and remove the record first)")
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        return [*problems, f"its requested extensions do not parse ({exc})"]
    for ext in extensions:
        v = ext.value
        if isinstance(v, x509.BasicConstraints):
            if v.ca:
                problems.append("it requests CA:TRUE (basicConstraints); a client certificate is never a CA")
        elif isinstance(v, x509.SubjectAlternativeName):
            problems.append(
                f"it requests subjectAltName {[str(n.value) for n in v]}; a client certificate carries only its CN"
            )
        elif isinstance(v, x509.ExtendedKeyUsage):
            other = [getattr(o, "_name", o.dotted_string) for o in v if o != ExtendedKeyUsageOID.CLIENT_AUTH]
            if other:
                problems.append(f"it requests extended key usage {other}; only clientAuth is issued")
        elif isinstance(v, x509.KeyUsage):
            if v.key_cert_sign or v.crl_sign:
                problems.append("it requests keyCertSign/cRLSign key usage; a client certificate signs no certificates")
        else:
            problems.append(
                f"it requests extension {ext.oid._name} ({ext.oid.dotted_string}), which a client "
                f"certificate never carries"
            )
    return problems


def csr_name(csr_pem: bytes) -> str:
    """The CN a CSR asks for (unchecked; for messages and file names after :func:`sign_csr`)."""
    csr = _load_csr(csr_pem)
    attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(csr_pem)
    except (ValueError, TypeError) as exc:
        raise CsrRefused(f"not a PEM certificate signing request ({exc})") from None


def sign_csr(ca: Credentials, csr_pem: bytes, *, issued=(), server_names=(), days: int = 825) -> bytes:
    """Check a client's CSR and issue its client certificate (PEM); see the module docstring.

    ``issued``: client ids that already hold a certificate of this CA; ``server_names``: the
    coordinator certificate's CN and SANs. Raises :class:`CsrRefused` listing every problem.
    The certificate takes only the CN and the public key from the CSR.
    """
    csr = _load_csr(csr_pem)
    problems = _csr_problems(csr, set(issued), set(server_names))
    if problems:
        raise CsrRefused(f"refusing to sign the CSR for {csr.subject.rfc4514_string()!r}: " + "; ".join(problems))
    cn = str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    return _sign(ca, cn, csr.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH, [], days)


def server_names(cert_pem: bytes) -> set[str]:
    """The CN and every subjectAltName (DNS names and IPs, as text) of a server certificate."""
    cert = _load_cert(cert_pem, "server certificate")
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= {str(v) for v in sans.get_values_for_type(x509.DNSName)}
        names |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        pass
    return names


def common_name(cert_pem: bytes) -> str:
    """The subject CN of a PEM certificate; CertificateError when malformed or absent."""
    cert = _load_cert(cert_pem, "certificate")
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise CertificateError(
            f"expected one subject common name (got {len(attrs)}) in {cert.subject.rfc4514_string()!r}"
        )
    return str(attrs[0].value)


def verify_issued_by(cert_pem: bytes, ca_pem: bytes, *, now: dt.datetime | None = None) -> None:
    """Check that ``cert_pem`` was signed by the CA ``ca_pem`` and is valid at ``now`` (default:
    the current time). Raises :class:`CertificateError` saying which check failed."""
    cert = _load_cert(cert_pem, "certificate")
    ca = _load_cert(ca_pem, "CA certificate")
    _require_ca(ca)
    subject = cert.subject.rfc4514_string()
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(
            f"certificate {subject!r} was not issued by CA {ca.subject.rfc4514_string()!r}"
        ) from None
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"certificate {subject!r} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"certificate {subject!r} expired on {cert.not_valid_after_utc.isoformat()}")


def write_private_key(path: Path, pem: bytes, *, overwrite: bool = False) -> None:
    """Write a private key to ``path`` with mode 0600 from the moment the file exists.

    The file is created with ``O_CREAT | O_EXCL`` and mode 0600 (then ``fchmod`` to 0600 in case
    the umask removed the owner's bits) before any byte is written. An existing file is an error
    unless ``overwrite``; then the key is written to a new 0600 file beside it and moved over it.
    """
    path = Path(path)
    target = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp") if overwrite else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def write_certificate(path: Path, pem: bytes) -> None:
    """Write a PEM certificate (public; mode 0644), replacing any existing file atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_credentials(cert_path: Path, key_path: Path) -> Credentials:
    """Read a certificate and its key, checking that they belong together."""
    creds = Credentials(Path(cert_path).read_bytes(), Path(key_path).read_bytes())
    cert = _load_cert(creds.cert_pem, str(cert_path))
    try:
        key = serialization.load_pem_private_key(creds.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{key_path} is not an unencrypted PEM private key ({exc})") from None
    if key.public_key() != cert.public_key():
        raise CertificateError(f"{key_path} is not the key of the certificate {cert_path}")
    return creds
