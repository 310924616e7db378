"""Exit codes of fedcore's commands (documented in :mod:`fedcore.cli`; a test checks the table)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # finished: every round completed (or the command succeeded)
    INTERNAL = 1  # an unexpected error (a bug): see the log
    CONFIG = 2  # usage or configuration error (every problem is listed)
    TLS = 3  # certificate/key missing, unreadable or not PEM
    ABORTED = 4  # the federation aborted (too few clients after all retries, ...)
    UNREACHABLE = 5  # the coordinator stayed unreachable for the reconnect timeout (status/stop: none runs)
    REFUSED = 6  # the coordinator refused this client (wrong identity or federation)
    STOPPED = 7  # stopped on request (`stop`) after a completed round; restart to resume
    INTERRUPTED = 130  # stopped by SIGINT/SIGTERM before finishing
