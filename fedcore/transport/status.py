"""Domain errors -> gRPC status codes, in one place.

========================  ===================  ===============================================
error                     status               meaning
========================  ===================  ===============================================
PayloadTooLarge           RESOURCE_EXHAUSTED   a stream announced more bytes than the limit
InvalidPayload            INVALID_ARGUMENT     malformed body, shape, dtype, NaN/Inf, hash;
                                               the submission is discarded
WrongStage                FAILED_PRECONDITION  stale/replayed/out-of-order round, stage or
                                               attempt; a second, different submission; a
                                               client that has not joined
NotAuthorized             PERMISSION_DENIED    certificate name differs from the claimed id,
                                               or a foreign federation id
Busy                      RESOURCE_EXHAUSTED   too many clients or concurrent transfers
KeyError (unknown blob)   NOT_FOUND            a Download names no current blob
========================  ===================  ===============================================

A :class:`Busy` refusal may carry ``retry_after`` (seconds): it travels as the trailing metadata
:data:`RETRY_AFTER_KEY` (milliseconds), and a client waits at least that long before its retry
(:func:`retry_hint`; :meth:`fedcore.client.connection.Connection.call`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import grpc

from fedcore.common.errors import FedError, InvalidPayload, NotAuthorized, WrongStage
from fedcore.transport.chunks import PayloadTooLarge

log = logging.getLogger(__name__)


#: trailing metadata of a retryable refusal: how long to wait before the retry, in milliseconds
RETRY_AFTER_KEY = "fedpsyau-retry-after-ms"


class Busy(FedError):
    """The server is at a configured limit (clients, concurrent transfers, the upload budget);
    retry later, after ``retry_after`` seconds when it is given."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def retry_hint(exc: BaseException) -> float | None:
    """The wait (seconds) a refusal asks for in its trailing metadata, or None."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        pairs = trailing() if callable(trailing) else None
    except Exception:  # noqa: BLE001 - a call object without metadata: no hint
        return None
    for key, value in pairs or ():
        if key == RETRY_AFTER_KEY:
            try:
                ms = float(value)
            except (TypeError, ValueError):
                return None
            return ms / 1000 if 0 <= ms < 3.6e6 else None
    return None


class UnknownBlob(FedError, KeyError):
    """A Download names a blob that does not exist now."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidPayload, grpc.StatusCode.INVALID_ARGUMENT),
    (WrongStage, grpc.StatusCode.FAILED_PRECONDITION),
    (NotAuthorized, grpc.StatusCode.PERMISSION_DENIED),
    (Busy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnknownBlob, grpc.StatusCode.NOT_FOUND),
)


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code for a domain error, or None for an unexpected exception."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return None


#: what a client makes of a refusal (the status codes it does not retry)
CLIENT_ERRORS: dict[grpc.StatusCode, type[FedError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: WrongStage,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidPayload,
    grpc.StatusCode.PERMISSION_DENIED: NotAuthorized,
    grpc.StatusCode.UNAUTHENTICATED: NotAuthorized,
    grpc.StatusCode.NOT_FOUND: InvalidPayload,
}
#: the status codes a client retries with backoff (a restarting coordinator, a limit reached)
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


def client_error(exc: BaseException) -> type[FedError] | None:
    """The error a client raises for the engine's refusal ``exc`` after its trip through a status
    code (the in-memory transport uses this; over gRPC the connection maps the code itself), or
    None when the client would retry or the error has no status (INTERNAL)."""
    code = status_for(exc)
    return CLIENT_ERRORS.get(code) if code is not None else None


def maps_errors(method: Callable) -> Callable:
    """Decorate a servicer method: domain errors abort the RPC with their status and message;
    anything else is logged with its traceback and becomes INTERNAL (without internals)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except FedError as exc:
            code = status_for(exc)
            if code is None:
                log.exception("%s failed", method.__name__)
                context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            log.info("%s refused with %s: %s", method.__name__, code.name, exc)
            _hint(context, exc)
            context.abort(code, str(exc))

    return wrapper


def _hint(context, exc: BaseException) -> None:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(max(0, round(retry_after * 1000)))),))


def streams_errors(method: Callable) -> Callable:
    """Like :func:`maps_errors` for server-streaming methods (generators)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            yield from method(self, request, context)
        except FedError as exc:
            code = status_for(exc) or grpc.StatusCode.INTERNAL
            log.info("%s refused with %s: %s", method.__name__, code.name, exc)
            context.abort(code, str(exc))

    return wrapper
