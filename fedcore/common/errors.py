"""Typed errors shared by the coordinator, the clients and the aggregation modes.

Each maps to one gRPC status code (see :mod:`fedcore.transport.status`), so a handler can raise
the domain error and the servicer turns it into the right status with the message intact.
"""

from __future__ import annotations

#: a client's refusal that starts with this says it cannot take part at all (its workload or data
#: is broken): the coordinator aborts at once instead of retrying (:mod:`fedcore.coordinator.refusals`)
STARTUP_PREFIX = "cannot take part: "


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


class BudgetExhausted(FedError, RuntimeError):
    """Training (or a release) would spend more than the client's privacy budget: the one
    exception for it, raised by the ledger (:meth:`fedcore.dp.ledger.PrivacyLedger.check`) and let
    through by a workload's ``fit``, which attaches the state to report (:meth:`with_privacy`).

    Attributes: ``spent`` (epsilon so far), ``target`` (the budget), ``would_spend`` (epsilon after
    the refused training, if known), ``round``, and ``privacy``: the workload's
    :class:`~fedcore.common.workload.PrivacyState` for the refusal report (None until attached).
    The client daemon reports a refusal and the coordinator excludes the client from later rounds.
    """

    def __init__(
        self,
        message: str,
        privacy=None,
        *,
        spent: float | None = None,
        target: float | None = None,
        would_spend: float | None = None,
        round: int | None = None,
    ):
        super().__init__(message)
        self.privacy, self.spent, self.target, self.would_spend, self.round = privacy, spent, target, would_spend, round

    @classmethod
    def over_budget(
        cls, spent: float, target: float, would_spend: float | None = None, round: int | None = None
    ) -> BudgetExhausted:
        """The ledger's refusal, with the standard message."""
        after = "" if would_spend is None else f"; this round would bring it to {would_spend:.4g}"
        where = "" if round is None else f"round {round}: "
        return cls(
            f"{where}privacy budget exhausted: epsilon spent {spent:.4g} of target {target:.4g}{after}",
            spent=spent,
            target=target,
            would_spend=would_spend,
            round=round,
        )

    def with_privacy(self, privacy) -> BudgetExhausted:
        """This refusal with the state a workload reports (returns self, for ``raise exc.with_privacy(s)``)."""
        self.privacy = privacy
        return self
