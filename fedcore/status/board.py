"""The status board: a thread that keeps the newest snapshot of the engine and ``run_dir/status.json``.

Readers (the HTTP handlers, ``/metrics``) never take the engine's lock: they get the board's
last snapshot, which is at most ``interval`` old. The board takes the lock with a timeout, so a
long tick (an aggregation) delays the page by a moment and never the other way round.

``version`` goes up whenever the snapshot's :func:`~fedcore.status.snapshot.fingerprint` changes;
:meth:`StatusBoard.wait` lets a request wait for the next version (the page's long poll).
``run_dir/status.json`` (the ``status`` command's source when no endpoint is served) is rewritten
on every new version and at least every :data:`FILE_EVERY` seconds, by write-then-rename, so a
reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcore.status.snapshot import fingerprint, take

if TYPE_CHECKING:
    from fedcore.coordinator.engine import RoundEngine

log = logging.getLogger(__name__)

#: status.json is rewritten at least this often (seconds), so its age tells whether the coordinator lives
FILE_EVERY = 5.0
STATUS_FILE = "status.json"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` by write-then-rename (no fsync: a status file, not a record)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class StatusBoard:
    def __init__(self, engine: RoundEngine, run_dir: Path, interval: float = 0.5):
        self.engine = engine
        self.path = Path(run_dir) / STATUS_FILE
        self.interval = interval
        self.stop_request = ""  # set by the daemon when a stop was asked for
        self.page = ""  # the status page's URL, when one is served
        self.version = 0
        self.snapshot: dict[str, Any] = {}
        self._print: tuple | None = None
        self._written = 0.0
        self._cond = threading.Condition()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self, block: bool = False) -> bool:
        """Take a new snapshot if the engine's lock is free within a moment; True when taken."""
        lock = self.engine.lock
        if not lock.acquire(timeout=-1 if block else 0.5):
            return False
        try:
            snap = take(self.engine, stop_request=self.stop_request, page=self.page)
        finally:
            lock.release()
        mark = fingerprint(snap)
        with self._cond:
            changed = mark != self._print
            if changed:
                self.version += 1
                self._print = mark
            snap["version"] = self.version
            self.snapshot = snap
            self._cond.notify_all()
        if changed or time.monotonic() - self._written >= FILE_EVERY:
            try:
                write_json(self.path, snap)
                self._written = time.monotonic()
            except OSError as exc:
                log.warning("cannot write %s: %s", self.path, exc)
        return True

    def current(self) -> dict[str, Any]:
        with self._cond:
            return dict(self.snapshot)

    def wait(self, since: int, timeout: float) -> dict[str, Any]:
        """The snapshot once its version differs from ``since`` (or after ``timeout`` seconds)."""
        end = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self.version == since and not self._halt.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return dict(self.snapshot)

    def start(self) -> StatusBoard:
        self.refresh(block=True)
        self._thread = threading.Thread(target=self._run, name="status-board", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # a status bug must never stop the federation
                log.exception("status snapshot failed")

    def close(self) -> None:
        """Stop the thread after one last snapshot (the final state stays in status.json)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.refresh(block=True)
        except Exception:
            log.exception("final status snapshot failed")
        with self._cond:
            self._cond.notify_all()
