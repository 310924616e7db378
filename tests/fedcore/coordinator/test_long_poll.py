"""GetTask as a long poll: held until the client's task exists, refused at once, bounded, compatible.

The engine runs on a fake clock (deadlines never pass by themselves); holds are measured in real
time, so a held call returns only when a tick opens a stage for the caller, the run ends, the
caller goes away or ``wait_up_to`` passes. No assertion here depends on how fast the machine is:
"at once" means "long before the hold bound would have ended the call".
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from fedcore_testkit import FED, ScriptedClient, TinyWorkload, make_engine

from fedcore.common.stages import Stage
from fedcore.coordinator import phases
from fedcore.coordinator.servicer import FederationServicer
from fedcore.coordinator.state import Phase
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.proto.fedpsyau.v1 import federation_pb2_grpc as pb_grpc
from fedcore.transport.channel import open_channel
from fedcore.transport.server import serve

LONG = 60.0  # a hold bound no test may wait out


@pytest.fixture
def served(tmp_path, pki):
    """A plain engine (fake clock, min 2 clients, no statistics) behind TLS; servicer options by param."""
    made = []

    def make(**options):
        engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
        servicer = FederationServicer(engine, **options)
        bound = serve(servicer, "127.0.0.1:0", pki.tls("server"))
        made.append(bound)
        return engine, servicer, bound.port

    yield make
    for bound in made:
        bound.stop(grace=None)


class Peer:
    def __init__(self, pki, who, port):
        self.channel = open_channel(f"127.0.0.1:{port}", pki.tls(who))
        self.stub = pb_grpc.FederationStub(self.channel)
        self.cid = who

    def hdr(self) -> pb.Header:
        return pb.Header(federation_id=FED, client_id=self.cid)

    def join(self):
        return self.stub.Join(pb.JoinRequest(header=self.hdr()), timeout=10)

    def task(self, wait: float = 0.0, header: pb.Header | None = None, timeout: float = LONG + 30) -> pb.Task:
        req = pb.TaskRequest(header=header or self.hdr(), wait_up_to=wait)
        return self.stub.GetTask(req, timeout=timeout)

    def held(self, wait: float = LONG):
        """Start a long poll; returns the call future."""
        return self.stub.GetTask.future(pb.TaskRequest(header=self.hdr(), wait_up_to=wait), timeout=wait + 30)


def _until(cond, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def _holding(engine, n: int) -> None:
    """Wait until ``n`` GetTask calls are parked on the engine's feed."""
    _until(lambda: engine.holding >= n)


def test_held_task_call_returns_the_task_as_soon_as_its_stage_opens(served, pki):
    engine, _, port = served()
    alice, bob = Peer(pki, "alice", port), Peer(pki, "bob", port)
    alice.join()
    call = alice.held()
    _holding(engine, 1)
    assert not call.done()  # nothing to do yet (one client of two): held
    bob.join()
    engine.tick()  # opens TRAIN for both
    task = call.result(timeout=10)  # far before the 60 s bound
    assert task.header.stage == Stage.TRAIN and task.header.round == 1
    assert bob.task(wait=LONG).header.stage == Stage.TRAIN  # a task that exists is not held at all


def test_task_request_without_wait_is_answered_at_once_as_before(served, pki):
    """An older client (no wait_up_to) gets its WAIT at once, with the poll interval."""
    engine, _, port = served()
    alice = Peer(pki, "alice", port)
    alice.join()
    task = alice.task(timeout=10)
    assert task.header.stage == Stage.WAIT and task.retry_after == pytest.approx(engine.poll_interval)
    assert (
        pb.TaskRequest(header=alice.hdr()).SerializeToString()
        == b"\n" + bytes([alice.hdr().ByteSize()]) + alice.hdr().SerializeToString()
    )  # the field adds no bytes


def test_hold_ends_at_its_bound_with_wait_and_retry_after_zero(served, pki):
    engine, _, port = served()
    alice = Peer(pki, "alice", port)
    alice.join()
    task = alice.task(wait=0.3)
    assert task.header.stage == Stage.WAIT and task.retry_after == 0.0  # ask again at once
    assert engine.registry.clients["alice"].alive


def test_refusals_are_never_held(served, pki):
    _engine, _, port = served()
    alice = Peer(pki, "alice", port)
    with pytest.raises(grpc.RpcError) as exc:  # not joined
        alice.task(wait=LONG, timeout=10)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    alice.join()
    foreign = alice.hdr()
    foreign.federation_id = "other"
    with pytest.raises(grpc.RpcError) as exc:
        alice.task(wait=LONG, header=foreign, timeout=10)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    claim = alice.hdr()
    claim.client_id = "bob"
    with pytest.raises(grpc.RpcError) as exc:
        alice.task(wait=LONG, header=claim, timeout=10)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_beyond_the_hold_limit_a_client_is_told_to_poll(served, pki):
    engine, servicer, port = served(max_held_polls=1)
    alice, bob = Peer(pki, "alice", port), Peer(pki, "bob", port)
    alice.join()
    bob.join()  # (no tick: the run stays in JOINING, nothing to do)
    call = alice.held()
    _holding(engine, 1)
    task = bob.task(wait=LONG, timeout=10)  # the one hold is taken: answered at once, poll
    assert task.header.stage == Stage.WAIT and task.retry_after == pytest.approx(engine.poll_interval)
    call.cancel()
    _until(lambda: servicer.held == 0)  # the cancelled call ended at once and freed its slot
    assert bob.task(wait=0.2, timeout=10).retry_after == 0.0  # held again


def test_hold_never_outlasts_the_call_deadline(served, pki):
    _engine, _, port = served()
    alice = Peer(pki, "alice", port)
    alice.join()
    task = alice.task(wait=LONG, timeout=3.0)  # the server answers before the client's deadline
    assert task.header.stage == Stage.WAIT


def test_held_calls_learn_that_the_federation_ended(served, pki):
    engine, _, port = served()
    alice = Peer(pki, "alice", port)
    alice.join()
    call = alice.held()
    _holding(engine, 1)
    with engine.lock:
        phases.abort(engine, "test abort")
        engine.feed.notify_all()
    task = call.result(timeout=10)
    assert task.header.stage == Stage.DONE
    done = pb.DoneTask()
    task.body.Unpack(done)
    assert not done.success and done.reason == "test abort"


def test_engine_task_without_grpc_holds_and_wakes_on_tick(tmp_path):
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    alice, bob = ScriptedClient(engine, "alice"), ScriptedClient(engine, "bob")
    alice.join()
    got = []
    waiter = threading.Thread(target=lambda: got.append(engine.task("alice", alice.hdr(), wait=LONG)))
    waiter.start()
    _holding(engine, 1)
    bob.join()
    engine.tick()
    waiter.join(timeout=10)
    assert got and got[0].header.stage == Stage.TRAIN


def test_driver_closes_a_stage_when_its_last_report_lands_between_tick_and_wait(tmp_path):
    """The last report arriving right after a tick must wake the driver, not wait for its timer."""
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False))
    alice, bob = ScriptedClient(engine, "alice"), ScriptedClient(engine, "bob")
    for c in (alice, bob):
        c.join()
    engine.tick()
    for c in (alice, bob):
        c.step()
    engine.tick()
    assert engine.state.phase == Phase.AGGREGATE
    alice.step()  # one of two PLAIN_INPUTs in
    woke: list[bool] = []

    class Recording(threading.Condition):
        def wait(self, timeout=None):
            notified = super().wait(timeout)
            woke.append(notified)
            return notified

    engine.changed = Recording(engine.lock)
    tick = engine.tick

    def racing_tick():
        wait = tick()
        if not woke and engine.state.phase == Phase.AGGREGATE and len(engine.state.stage.pending) == 1:
            last = threading.Thread(target=bob.step)  # lands after this tick, before the driver waits
            last.start()
            last.join(timeout=0.3)
        return wait

    engine.tick = racing_tick
    stop = threading.Event()
    driver = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    driver.start()
    try:
        _until(lambda: engine.state.model_round == 1)
    finally:
        stop.set()
        with engine.changed:
            engine.changed.notify_all()
        driver.join(timeout=5)
    assert woke and woke[0] is True  # woken by the submission, not by the driver's timer
