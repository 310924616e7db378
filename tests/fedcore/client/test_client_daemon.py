"""Client daemons (in threads) against an in-process coordinator with its driver, over mTLS."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from fedcore_testkit import FED, make_engine, served_engine

from fedcore.client.daemon import LONG_POLL, ClientDaemon
from fedcore.config.client import parse_client
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.examples.softmax import workload as example
from fedcore.exitcodes import ExitCode
from fedcore.transport.server import serve


def _client_cfg(pki, cid, index, port, tmp_path, **client):
    data = {
        "client": {
            "id": cid,
            "federation": FED,
            "coordinator": f"127.0.0.1:{port}",
            "workdir": str(tmp_path / cid),
            "device": "cpu",
            "backoff_max": 0.2,
            **client,
        },
        "tls": {
            "ca": str(pki.folder / "ca.pem"),
            "cert": str(pki.folder / f"{cid}.pem"),
            "key": str(pki.folder / f"{cid}.key"),
        },
        "workload": {
            "path": "fedcore.examples.softmax:workload",
            "settings": {"client_index": index, "num_clients": 2},
        },
    }
    return parse_client(data, tmp_path)


def _run_clients(cfgs):
    codes = {}
    threads = [threading.Thread(target=lambda c=c: codes.__setitem__(c.client.id, ClientDaemon(c).run())) for c in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return codes


def test_two_client_daemons_finish_a_federation(tmp_path, pki):
    engine = make_engine(
        tmp_path / "run", time.monotonic, workload=example, federation={"workload": "fedcore.examples.softmax:workload"}
    )
    with served_engine(engine, pki, drive=True) as port:
        codes = _run_clients([_client_cfg(pki, cid, i, port, tmp_path) for i, cid in enumerate(("alice", "bob"))])
    assert codes == {"alice": ExitCode.OK, "bob": ExitCode.OK}
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    assert lines[-1]["eval"]["num_examples"] == 120 and 0 <= lines[-1]["eval"]["uf1"] <= 1
    assert set(lines[0]["train"]) == {"alice", "bob"}
    init, _ = example.initial_parameters({}, 0)
    assert not np.allclose(engine.state.params, init)  # the model moved


def test_client_gives_up_when_the_coordinator_never_answers(tmp_path, pki, port):
    cfg = _client_cfg(pki, "alice", 0, port, tmp_path, reconnect_timeout=1.0)
    assert ClientDaemon(cfg).run() == ExitCode.UNREACHABLE


def test_client_of_another_federation_is_refused(tmp_path, pki):
    engine = make_engine(tmp_path / "run", workload=example)
    with served_engine(engine, pki) as port:
        cfg = _client_cfg(pki, "alice", 0, port, tmp_path, federation="not-this-one")
        assert ClientDaemon(cfg).run() == ExitCode.REFUSED
    assert "alice" not in engine.registry


class _ServicerBeforeLongPolls(FederationServicer):
    """A coordinator from before the long poll: ignores ``wait_up_to`` and answers at once."""

    def GetTask(self, request, context):
        cid = self._identity(context, request.header)
        return self.engine.task(cid, request.header)


def test_client_daemons_finish_against_a_coordinator_without_long_polls(tmp_path, pki):
    """Wire compatibility: a new client polls with ``retry_after`` when its calls are not held."""
    engine = make_engine(
        tmp_path / "run", time.monotonic, workload=example, federation={"workload": "fedcore.examples.softmax:workload"}
    )
    bound = serve(_ServicerBeforeLongPolls(engine), "127.0.0.1:0", pki.tls("server"))
    stop = threading.Event()
    driver = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    driver.start()
    try:
        codes = _run_clients([_client_cfg(pki, cid, i, bound.port, tmp_path) for i, cid in enumerate(("alice", "bob"))])
    finally:
        stop.set()
        engine.wake_feed()
        driver.join(timeout=5)
        bound.stop(grace=None)
    assert codes == {"alice": ExitCode.OK, "bob": ExitCode.OK}
    assert engine.state.phase == Phase.DONE


def test_stopping_a_client_cancels_its_held_task_call(tmp_path, pki):
    engine = make_engine(
        tmp_path / "run", time.monotonic, workload=example, federation={"workload": "fedcore.examples.softmax:workload"}
    )
    with served_engine(engine, pki, drive=True) as port:  # min_clients 2: alone, alice has nothing to do
        stop = threading.Event()
        daemon = ClientDaemon(_client_cfg(pki, "alice", 0, port, tmp_path), stop)
        codes = []
        thread = threading.Thread(target=lambda: codes.append(daemon.run()))
        thread.start()
        deadline = time.monotonic() + 30
        while engine.holding < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.holding == 1  # its GetTask is held by the coordinator
        stop.set()
        thread.join(timeout=LONG_POLL / 2)  # well before the hold would have ended
        assert codes == [ExitCode.INTERRUPTED]
        deadline = time.monotonic() + 10
        while engine.holding and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.holding == 0  # the cancelled call left the coordinator too
