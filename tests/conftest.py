"""Fixtures shared by every test: certificates in temporary folders and free ports.

``pki`` is a federation CA with a server certificate (localhost, 127.0.0.1) and client
certificates for alice, bob, carol and dave, plus a *foreign* CA that issued its own "alice"
(for the tests that a certificate from another CA is refused). Made once per session with
:mod:`fedcore.transport.certs`. Shared helpers (scripted clients, a tiny workload, an in-process
coordinator) are in ``tests/fedcore/fedcore_testkit.py``.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Helper modules shared by tests (tests/fedcore/fedcore_testkit.py, tests/e2e/e2e_kit.py,
# tests/mer/data/me_fixtures.py, ...) are plain modules beside the tests; pytest runs with
# --import-mode=importlib (test basenames repeat across folders), which puts no test folder on
# sys.path, so every folder holding such a helper is added here. Helper names must be unique.
for _helper in sorted(Path(__file__).resolve().parent.rglob("*.py")):
    if _helper.name.startswith("test_") or _helper.name in ("conftest.py", "__init__.py"):
        continue
    if str(_helper.parent) not in sys.path:
        sys.path.insert(0, str(_helper.parent))

CLIENTS = ("alice", "bob", "carol", "dave")


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca_pem: bytes
    server: object  # fedcore.transport.certs.Credentials
    clients: dict  # id -> Credentials
    foreign_ca_pem: bytes
    foreign_alice: object

    def tls(self, who: str, *, foreign: bool = False):
        """TlsMaterial for a client ("alice", ...) or the server ("server")."""
        from fedcore.transport.tls import TlsMaterial

        if who == "server":
            return TlsMaterial(self.ca_pem, self.server.cert_pem, self.server.key_pem)
        creds = self.foreign_alice if foreign else self.clients[who]
        return TlsMaterial(self.foreign_ca_pem if foreign else self.ca_pem, creds.cert_pem, creds.key_pem)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    from fedcore.transport.certs import (
        create_ca,
        issue_client,
        issue_server,
        write_certificate,
        write_private_key,
    )

    folder = tmp_path_factory.mktemp("pki")
    ca = create_ca("test federation CA")
    server = issue_server(ca, ["localhost", "127.0.0.1"])
    clients = {cid: issue_client(ca, cid) for cid in CLIENTS}
    foreign = create_ca("some other CA")
    write_certificate(folder / "ca.pem", ca.cert_pem)
    write_certificate(folder / "server.pem", server.cert_pem)
    write_private_key(folder / "server.key", server.key_pem)
    for cid, creds in clients.items():
        write_certificate(folder / f"{cid}.pem", creds.cert_pem)
        write_private_key(folder / f"{cid}.key", creds.key_pem)
    return Pki(folder, ca.cert_pem, server, clients, foreign.cert_pem, issue_client(foreign, "alice"))


def free_port() -> int:
    """A TCP port that was free a moment ago (prefer binding port 0 where the server allows)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()
