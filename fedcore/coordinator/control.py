"""Talking to a running coordinator through its run folder: who runs it, and asking it to stop.

- ``run_dir/coordinator.pid``: the running coordinator's pid, held under an exclusive ``flock``
  for as long as it runs (:class:`RunLock`). A second coordinator on the same run folder is
  refused before it touches anything (two would write the same checkpoints), and
  :func:`running_pid` tells a live coordinator from a stale file by trying the lock.
- ``run_dir/stop.request``: written by ``stop`` (:func:`request_stop`); the daemon polls for it,
  ends the federation after the round in flight, and removes it. A request left from before a
  start is dropped at start-up (logged), so a restart never stops at once.

File-based rather than an endpoint, so that ``stop`` works whether or not ``[status]`` serves
a page, needs no token, and only someone who may write the run folder can use it.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import time
from pathlib import Path
from typing import Any

from fedcore.common.errors import ConfigError

PID_FILE = "coordinator.pid"
STOP_FILE = "stop.request"


class RunLock:
    """The exclusive hold of a run folder by one coordinator process."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / PID_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"run_dir {self.path.parent} is in use by another coordinator (pid {other}); "
                f"stop it first, or give this one another [server] run_dir",
                "[server] run_dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing drops the lock
                self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def running_pid(run_dir: Path) -> int | None:
    """The pid of the coordinator running on ``run_dir``, or None when none holds it."""
    path = Path(run_dir) / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def request_stop(run_dir: Path, reason: str = "") -> Path:
    """Ask the coordinator on ``run_dir`` to stop after the current round; the request file."""
    path = Path(run_dir) / STOP_FILE
    doc = {"reason": reason or f"fedcore stop by {_user()}", "requested_at": time.time(), "pid": os.getpid()}
    tmp = path.with_name(f".{STOP_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, path)
    return path


def read_stop(run_dir: Path) -> dict[str, Any] | None:
    """The pending stop request, or None. An unreadable file still counts (reason says so)."""
    path = Path(run_dir) / STOP_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"reason": f"a stop request that cannot be read ({exc})"}
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else {"reason": "a stop request"}
    except ValueError:
        return {"reason": "a stop request (not JSON)"}


def clear_stop(run_dir: Path) -> bool:
    try:
        (Path(run_dir) / STOP_FILE).unlink()
        return True
    except FileNotFoundError:
        return False


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
