"""Settings through google.protobuf.Struct, and the error -> status code table."""

from __future__ import annotations

import grpc
import pytest

from fedcore.common.errors import InvalidPayload, NotAuthorized, WrongStage
from fedcore.transport import status
from fedcore.transport.chunks import PayloadTooLarge
from fedcore.transport.structs import from_struct, to_struct


def test_struct_round_trip_restores_integers_and_nesting():
    data = {
        "epochs": 2,
        "lr": 0.05,
        "name": "x",
        "on": True,
        "none": None,
        "privacy": {"target_epsilon": 8.0},
        "sizes": [1, 2.5],
    }
    back = from_struct(to_struct(data))
    assert back == {
        "epochs": 2,
        "lr": 0.05,
        "name": "x",
        "on": True,
        "none": None,
        "privacy": {"target_epsilon": 8},
        "sizes": [1, 2.5],
    }
    assert isinstance(back["epochs"], int)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_struct_refuses_values_that_cannot_travel(bad):
    with pytest.raises(InvalidPayload):
        to_struct({"x": bad})


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PayloadTooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (InvalidPayload("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (WrongStage("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (NotAuthorized("x"), grpc.StatusCode.PERMISSION_DENIED),
        (status.Busy("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (status.UnknownBlob("x"), grpc.StatusCode.NOT_FOUND),
    ],
)
def test_each_domain_error_has_its_status(error, code):
    assert status.status_for(error) == code
    assert status.status_for(RuntimeError("bug")) is None
