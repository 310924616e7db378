"""``client --config client.toml``: join, ask for tasks, answer them, until the federation ends.

The loop: Join (identity = certificate), then GetTask repeatedly as a long poll (``wait_up_to`` =
:data:`LONG_POLL`): the coordinator answers as soon as it has a task for this client, so no sleep
sits between one stage's end and the next one's start. WAIT -> ask again at once when it came
after a held call (``retry_after`` 0), else sleep ``retry_after`` (a coordinator without long
polls, or one at its limit of held calls); DONE -> exit (0 when the federation completed, 4 when
it aborted); any other stage -> answer it and Submit the result. A heartbeat thread, separate
from the task calls, keeps the client alive in the coordinator's eyes.
When the coordinator goes away the RPCs back off and retry (capped, jittered); a GetTask refused
with FAILED_PRECONDITION (a restarted coordinator does not know this client) triggers a new Join.
A result whose submission fails for a transient reason is kept and resubmitted byte for byte, so
the coordinator sees a duplicate, never a second, different answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import grpc
import numpy as np
from google.protobuf import any_pb2

from fedcore.client.cache import UpdateCache
from fedcore.client.connection import Connection, CoordinatorUnreachable
from fedcore.client.handlers import StageHandlers
from fedcore.client.privacy import derived_seed
from fedcore.common.aggregation import ClientIdentity, client_mode
from fedcore.common.errors import (
    InvalidPayload,
    NotAuthorized,
    ProtocolAbort,
    WrongStage,
)
from fedcore.common.stages import Stage
from fedcore.common.workload import load_workload, statistics_sensitivity
from fedcore.config.client import ClientConfig
from fedcore.exitcodes import ExitCode
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport.settings import from_config
from fedcore.transport.tls import TlsMaterial

log = logging.getLogger("fedcore.client")
VERSION = "fedcore/1"
#: seconds a GetTask may be held by the coordinator (it caps this at its own bound)
LONG_POLL = 10.0


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


class ClientDaemon:
    """One client. ``connection`` replaces the gRPC one (the in-memory transport: the same stage
    handlers over :class:`fedcore.transport.memory.MemoryConnection`); ``sleep`` is what a pause
    between polls calls (a simulation with its own clock passes a no-op); ``trainer`` replaces the
    one the workload would make from the config (a simulation whose data is already in memory)."""

    def __init__(
        self,
        cfg: ClientConfig,
        stop: threading.Event | None = None,
        *,
        connection=None,
        sleep: Callable[[float], object] | None = None,
        trainer=None,
    ):
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.sleep = sleep or self.stop.wait
        c = cfg.client
        self.tls = None if cfg.tls.insecure else TlsMaterial.from_files(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
        self.conn = connection or Connection(
            c.coordinator,
            self.tls,
            client_id=c.id,
            federation_id=c.federation,
            insecure=cfg.tls.insecure,
            server_name=cfg.tls.server_name,
            reconnect_timeout=c.reconnect_timeout,
            backoff_max=c.backoff_max,
            max_payload_bytes=c.max_payload_bytes,
        )
        self.identity = ClientIdentity(
            c.id, *(b"", b"", b"") if self.tls is None else (self.tls.cert_pem, self.tls.key_pem, self.tls.ca_pem)
        )
        self.workload = load_workload(cfg.workload.path)
        c.workdir.mkdir(parents=True, exist_ok=True)
        self.trainer = (
            trainer
            if trainer is not None
            else self.workload.make_trainer(cfg.workload.settings, c.id, c.workdir, resolve_device(c.device))
        )
        self.cache = UpdateCache(c.workdir / "cache")
        self.handlers: StageHandlers | None = None
        self.heartbeat_interval = 5.0
        self.poll_interval = 0.5
        self._pending: tuple[tuple[int, int, int], bytes] | None = None  # unsent (or unconfirmed) result
        self._skip: set[tuple[int, int, int]] = set()
        self._last = pb.Header()  # the header of the last task answered (sent with GetTask)
        self.idle = False  # the last step found nothing to do (WAIT, or a task it skips)
        self.retry_after = 0.0  # after an idle step: how long to pause before asking again

    # -- joining ------------------------------------------------------------------------------
    def join(self) -> None:
        reply = self.conn.join(VERSION)
        settings = from_config(reply.settings)
        self.heartbeat_interval = float(reply.heartbeat_interval or 5.0)
        self.poll_interval = float(settings.get("poll_interval", 0.5))
        name = settings.get("aggregation", "")
        if settings.get("workload") and settings["workload"] != self.cfg.workload.path:
            log.warning(
                "the coordinator's workload is %s, this client runs %s", settings["workload"], self.cfg.workload.path
            )
        run_id = str(settings["run_id"]) if settings.get("run_id") else None
        if self.handlers is None or self.handlers.mode.name != name:
            mode = client_mode(name)(self.identity, self.cfg.client.federation, settings.get("mode_settings", {}))
            seed = self.cfg.client.seed
            if seed is not None:
                mode.seed_randomness(np.random.default_rng(derived_seed(seed, "mode")))
                log.warning(
                    "[client] seed is set: training seeds, rounding and client-side noise are reproducible "
                    "draws from it, NOT secret randomness (benchmarks and tests only)"
                )
            self.handlers = StageHandlers(
                self.trainer,
                mode,
                self.conn,
                self.cache,
                self.cfg.privacy,
                federation=self.cfg.client.federation,
                run_id=run_id,
                workdir=self.cfg.client.workdir,
                seed=seed,
                stats_sensitivity=statistics_sensitivity(self.workload, self.cfg.workload.settings),
            )
            if run_id is None:
                log.info(
                    "the coordinator sends no run id: cached updates are resent only within this client session (%s)",
                    self.handlers.run_id,
                )
        elif run_id is not None and run_id != self.handlers.run_id:
            log.info("the coordinator's run id is now %s (was %s)", run_id, self.handlers.run_id)
            self.handlers.run_id = run_id
            if name == "plain":
                log.warning("aggregation 'plain': this client's updates reach the coordinator in the clear")
        log.info(
            "joined federation %r as %s (aggregation %s, %s rounds)",
            self.cfg.client.federation,
            self.cfg.client.id,
            name,
            settings.get("rounds"),
        )

    def _heartbeats(self) -> None:
        while not self.stop.wait(self.heartbeat_interval):
            try:
                self.conn.heartbeat(timeout=min(self.conn.rpc_timeout, max(1.0, 2 * self.heartbeat_interval)))
            except grpc.RpcError as exc:
                log.debug("heartbeat failed: %s", exc.code() if hasattr(exc, "code") else exc)

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> int:
        beats = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        try:
            self.join()
            beats.start()
            return self._loop()
        except CoordinatorUnreachable as exc:
            log.error("%s", exc)
            return ExitCode.UNREACHABLE
        except NotAuthorized as exc:
            log.error("refused by the coordinator: %s", exc)
            return ExitCode.REFUSED
        finally:
            self.stop.set()
            if beats.is_alive():
                beats.join(timeout=self.conn.rpc_timeout)  # never close the channel under a call in flight
            self.conn.close()

    def _loop(self) -> int:
        while not self.stop.is_set():
            code = self.step(LONG_POLL)
            if code is not None:
                return code
            if self.idle and self.retry_after > 0:  # the call was not held: poll
                self.sleep(self.retry_after)
        return ExitCode.INTERRUPTED

    def step(self, wait: float = 0.0) -> int | None:
        """Ask for the next task (a long poll of up to ``wait`` s) and answer it. Returns the exit
        code once the federation is over, else None; :attr:`idle` then says whether there was
        nothing to do (and :attr:`retry_after` how long to pause)."""
        self.idle, self.retry_after = True, 0.0
        try:
            task = self.conn.get_task(self._last, wait=wait, stop=self.stop)
        except WrongStage as exc:
            log.info("re-joining: %s", exc)
            self.join()
            return None
        if task is None:  # stopped while the call was held
            return None
        stage = Stage(task.header.stage)
        if stage == Stage.DONE:
            done = pb.DoneTask()
            task.body.Unpack(done)
            log.info("federation over (%s): %s", "completed" if done.success else "ABORTED", done.reason)
            return ExitCode.OK if done.success else ExitCode.ABORTED
        if stage == Stage.WAIT:
            self.retry_after = task.retry_after
            return None
        self._last = task.header
        self._answer(task)
        return None

    def _answer(self, task: pb.Task) -> None:
        h = task.header
        key = (h.round, h.stage, h.attempt)
        if key in self._skip:
            self.retry_after = self.poll_interval
            return
        self.idle = False
        try:
            started = time.monotonic()
            if self._pending is not None and self._pending[0] == key:
                payload = self._pending[1]
                log.info("resubmitting the kept result for round %d stage %s", h.round, Stage(h.stage).name)
            else:
                if self.handlers is None:
                    raise WrongStage("a task arrived before this client joined")
                body = any_pb2.Any()
                body.Pack(self.handlers.handle(task))
                payload = body.SerializeToString()
            answered = time.monotonic()
            self._pending = (key, payload)
            reply = self.conn.submit(h, payload)
            log.info(
                "round %d attempt %d stage %s answered in %.3f s, submitted in %.3f s",
                h.round,
                h.attempt,
                Stage(h.stage).name,
                answered - started,
                time.monotonic() - answered,
            )
            if reply.duplicate:
                log.info("round %d stage %s: coordinator already had this result", h.round, Stage(h.stage).name)
            self._pending = None
        except WrongStage as exc:
            log.info("stale task (round %d stage %s): %s", h.round, Stage(h.stage).name, exc)
            self._pending = None
        except (InvalidPayload, ProtocolAbort) as exc:
            log.error("round %d stage %s: cannot answer: %s", h.round, Stage(h.stage).name, exc)
            self._skip.add(key)
            self._pending = None
        except (CoordinatorUnreachable, NotAuthorized):
            raise
        except Exception:  # a workload or mode bug: skip this task, stay in the federation
            log.exception("round %d stage %s: failed", h.round, Stage(h.stage).name)
            self._skip.add(key)
            self._pending = None


def run_client(cfg: ClientConfig, stop: threading.Event | None = None) -> int:
    return ClientDaemon(cfg, stop).run()
