"""Certificates and clients for the CKKS tests: an ECDSA P-256 CA and one certificate per client."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcore.common.aggregation import ClientIdentity, ClientJob
from fedcore.he.client import CkksClient
from fedcore.he.driver import InProcessDriver
from fedcore.he.server import CkksServer

FEDERATION = "fed-test"


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class FederationCA:
    """A federation CA that issues client certificates with CN = client id (ECDSA P-256 by default)."""

    def __init__(self, name: str = "fedpsyau test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, key=None, eku=ExtendedKeyUsageOID.CLIENT_AUTH,
              valid_days: float = 1.0) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) for ``common_name``."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=valid_days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    def identity(self, client_id: str, key=None) -> ClientIdentity:
        cert, key_pem = self.issue(client_id, key)
        return ClientIdentity(client_id, cert, key_pem, self.pem)


@pytest.fixture(scope="session")
def ca() -> FederationCA:
    return FederationCA()


@pytest.fixture(scope="session")
def other_ca() -> FederationCA:
    return FederationCA("a foreign CA")


def client_ids(n: int) -> list[str]:
    return [f"client-{i:02d}" for i in range(n)]


def make_federation(ca: FederationCA, n: int, settings: dict | None = None, **driver_kw):
    """(server, {id: client}, driver) for ``n`` clients sharing ``settings``."""
    settings = dict(settings or {})
    server = CkksServer(FEDERATION, settings)
    clients = {cid: CkksClient(ca.identity(cid), FEDERATION, settings) for cid in client_ids(n)}
    return server, clients, InProcessDriver(server, clients, **driver_kw)


def make_jobs(ids, length: int, round_: int = 1, seed: int = 0, attempt: int = 0) -> dict[str, ClientJob]:
    rng = np.random.default_rng(seed)
    return {cid: ClientJob(round_, attempt, rng.normal(size=length), float(rng.integers(5, 300))) for cid in ids}


def expected_sum(jobs) -> tuple[np.ndarray, float]:
    total = sum(j.weight * np.asarray(j.vector, np.float64) for j in jobs.values())
    return total, sum(j.weight for j in jobs.values())


class Helpers:
    """What the tests use besides the CA fixtures (tests cannot import conftest under importlib mode)."""
    FEDERATION = FEDERATION
    client_ids = staticmethod(client_ids)
    make_federation = staticmethod(make_federation)
    make_jobs = staticmethod(make_jobs)
    expected_sum = staticmethod(expected_sum)


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    return Helpers
