"""Typed errors shared by the coordinator, the clients and the aggregation modes.

Each maps to one gRPC status code (see :mod:`fedcore.transport.status`), so a handler can raise
the domain error and the servicer turns it into the right status with the message intact.
"""

from __future__ import annotations


class FedError(Exception):
    """Base class of every error fedcore raises on purpose."""


class ConfigError(FedError, ValueError):
    """A configuration file or value is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str] | str, source: str = "config"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class InvalidPayload(FedError, ValueError):
    """A message or payload is malformed: wrong type, shape, dtype, size, NaN/Inf, bad hash.

    Maps to INVALID_ARGUMENT; the submission is discarded and nothing else changes.
    """


class WrongStage(FedError):
    """A message names a round, stage or attempt that is not the current one (stale, replayed or
    out of order). Maps to FAILED_PRECONDITION; nothing changes."""


class NotAuthorized(FedError):
    """The caller's certificate identity is not allowed to do this (PERMISSION_DENIED)."""


class AggregationAborted(FedError):
    """A round's aggregation cannot complete (e.g. fewer survivors than the threshold). The
    coordinator logs it and retries or skips the round; no partial result is used."""


class ProtocolAbort(FedError):
    """A client refuses to continue a protocol run because the server asked for something unsafe
    or illegal (an illegal stage change, both shares of one peer, a re-key within a round)."""
