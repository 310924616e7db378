"""CKKS test harness: certificates, and whole federations over the in-memory transport.

A protocol test runs the real coordinator engine and client daemons
(:func:`fedcore.simulation_memory.memory_federation`) on the known-updates workload
(:mod:`fedcore.examples.updates`), so every sum can be checked exactly. :class:`CkksRun` adds what
the tests read besides the federation itself: which client refused what (the daemon logs a
refusal without its id: :class:`Refusals` tags each log record with the client whose turn it is),
and the sums the run should produce.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcore.common.aggregation import ClientIdentity
from fedcore.common.stages import Stage
from fedcore.coordinator.checkpoint import CheckpointStore
from fedcore.examples import updates
from fedcore.simulation_memory import MemoryFederation, memory_federation

FEDERATION = "fedpsyau"  # the federation id memory_federation provisions
WORKLOAD = "fedcore.examples.updates:workload"


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class FederationCA:
    """A federation CA that issues client certificates with CN = client id (ECDSA P-256 by default)."""

    def __init__(self, name: str = "fedpsyau test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, common_name: str, key=None, eku=ExtendedKeyUsageOID.CLIENT_AUTH, valid_days: float = 1.0
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) for ``common_name``."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
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


# -- federations over the in-memory transport --------------------------------------------------
class Refusals(logging.Handler):
    """Every ERROR a client daemon logs during its turn, by client id: the daemon's "cannot
    answer" for a task its mode refused (ProtocolAbort) or a submission the coordinator refused
    (InvalidPayload, which reaches the client as over gRPC), and its "failed" for anything else."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.current: str | None = None
        self.by_client: dict[str, list[str]] = defaultdict(list)

    def emit(self, record: logging.LogRecord) -> None:
        if self.current is None:
            return
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.by_client[self.current].append(text)

    def watch(self, fed: MemoryFederation) -> None:
        """Tag each daemon's steps with its id (the daemons' log lines do not name the client)."""
        for cid, daemon in fed.daemons.items():
            inner = daemon.step

            def step(wait: float = 0.0, _cid=cid, _inner=inner):
                self.current = _cid
                try:
                    return _inner(wait)
                finally:
                    self.current = None

            daemon.step = step


@dataclass
class CkksRun:
    """One federation (not started) and what the tests read from it."""

    fed: MemoryFederation
    settings: dict  # the updates workload's settings (the coordinator's)
    client_settings: list[dict] = field(default_factory=list)
    refusals_log: Refusals = field(default_factory=Refusals)

    @property
    def ids(self) -> list[str]:
        return list(self.fed.daemons)

    @property
    def server(self):
        """The coordinator's ServerMode (a CkksServer)."""
        return self.fed.engine.mode

    def client(self, cid: str):
        """That client's ClientMode (exists once it joined)."""
        return self.fed.daemons[cid].handlers.mode

    def job(self, cid: str, round_: int = 1, attempt: int | None = None):
        """That client's job of ``round_`` (its latest attempt unless given)."""
        jobs = self.fed.daemons[cid].handlers.jobs
        attempt = max(a for r, a in jobs if r == round_) if attempt is None else attempt
        return jobs[(round_, attempt)]

    @property
    def refusals(self) -> dict[str, list[str]]:
        return dict(self.refusals_log.by_client)

    def result(self):
        """The coordinator's AggregateResult of the latest aggregation."""
        return self.server.result()

    def metrics(self) -> list[dict]:
        path = self.fed.engine.records.metrics_path
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def model(self) -> np.ndarray | None:
        ckpt = CheckpointStore(self.fed.cfg.server.run_dir / "checkpoints").load_latest()
        return None if ckpt is None else ckpt.params

    def _settings_of(self, i: int) -> dict:
        return {**self.settings, **(self.client_settings[i] if self.client_settings else {})}

    def index(self, cid: str) -> int:
        return self.ids.index(cid)

    def expected_sum(self, cids, round_: int = 1) -> tuple[np.ndarray, float]:
        """(sum of weight * update, sum of weights) of ``cids`` in ``round_``."""
        idx = [self.index(c) for c in cids]
        total = sum(
            updates.weight(self._settings_of(i), i) * updates.update(self._settings_of(i), i, round_) for i in idx
        )
        return total, float(sum(updates.weight(self._settings_of(i), i) for i in idx))

    def expected_mean(self, cids, round_: int = 1) -> np.ndarray:
        total, weight = self.expected_sum(cids, round_)
        return total / weight

    def stage_open(self, stage: Stage, round_: int | None = None):
        """A run_until condition: ``stage`` (of ``round_``) is open."""

        def cond(engine) -> bool:
            st = engine.state
            return st.stage is not None and st.stage.stage == stage and (round_ is None or st.round == round_)

        return cond

    def run_until(self, cond) -> bool:
        return self.fed.run_until(cond)

    def run(self) -> int:
        return self.fed.run()


@pytest.fixture
def ckks_run(tmp_path):
    """``ckks_run(n, *, size=300, rounds=1, scale=1.0, ...)``: a ckks federation of ``n`` clients
    over the in-memory transport, not started. ``settings`` adds to the updates workload's
    settings, ``client_settings[i]`` to client i's; every other keyword goes to
    :func:`memory_federation` (``ckks``, ``faults``, ``tamper``, ``record``, ``deadlines``,
    ``federation``, ``aggregation``)."""
    made: list[CkksRun] = []
    names = itertools.count()
    logger = logging.getLogger("fedcore.client")

    def make(
        n: int,
        *,
        size: int = 300,
        rounds: int = 1,
        scale: float = 1.0,
        settings: dict | None = None,
        client_settings: list[dict] | None = None,
        aggregation: str = "ckks",
        **kwargs,
    ) -> CkksRun:
        ws = {"size": size, "scale": scale, "seed": 11, **dict(settings or {})}
        fed = memory_federation(
            n,
            rounds,
            Path(tmp_path) / f"run{next(names)}",
            aggregation=aggregation,
            workload=WORKLOAD,
            workload_settings=ws,
            client_settings=client_settings,
            **kwargs,
        )
        run = CkksRun(fed, ws, list(client_settings or []))
        run.refusals_log.watch(fed)
        logger.addHandler(run.refusals_log)
        made.append(run)
        return run

    yield make
    for run in made:
        logger.removeHandler(run.refusals_log)
        run.fed.close()


class Helpers:
    """What the tests use besides the fixtures (tests cannot import conftest under importlib mode)."""

    FEDERATION = FEDERATION
    WORKLOAD = WORKLOAD


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    return Helpers
