"""Turning stage bodies (a message or a ``google.protobuf.Any``) into the expected message class."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message


def unpack_body(body: object, cls: type[Message], what: str, error: type[Exception]) -> Message:
    """``body`` as a ``cls`` message; an ``Any`` is unpacked after checking its type URL.

    Raises ``error`` (InvalidPayload on the coordinator, ProtocolAbort on a client) naming
    ``what``, the expected and the received type.
    """
    if isinstance(body, cls):
        return body
    if isinstance(body, any_pb2.Any):
        expected = cls.DESCRIPTOR.full_name
        got = body.type_url.rpartition("/")[2]
        if got != expected:
            raise error(f"{what}: expected a {expected} body (got {got or 'an empty Any'})")
        msg = cls()
        try:
            if not body.Unpack(msg):
                raise DecodeError("type mismatch")
        except DecodeError as exc:
            raise error(f"{what}: malformed {expected} body ({exc})") from None
        return msg
    raise error(f"{what}: expected a {cls.DESCRIPTOR.full_name} body (got {type(body).__name__})")


#: the coordinator serves the encrypted sum at the upload level under the sum's blob name plus this
#: (for clients whose bound slot says the sum does not fit the download level)
FULL_SUM_SUFFIX = "/full"
