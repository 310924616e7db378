"""Settings through the wire's typed Config table, and the error -> status code table."""

from __future__ import annotations

import grpc
import pytest

from fedcore.common.errors import InvalidPayload, NotAuthorized, WrongStage
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.transport import status
from fedcore.transport.chunks import PayloadTooLarge
from fedcore.transport.settings import from_config, to_config


def test_settings_cross_the_wire_with_their_types():
    data = {
        "epochs": 2,
        "lr": 1.0,  # a whole float stays a float (a Struct made it 1)
        "threshold": 1,  # and an int stays an int (a Struct made it 1.0)
        "name": "x",
        "on": True,
        "privacy": {"target_epsilon": 8.0, "planned_rounds": 20},
        "sizes": [1, 2.5, "a", [False]],
        "big": 2**62,
    }
    wire = pb.Config.FromString(to_config(data).SerializeToString())
    back = from_config(wire)
    assert back == data
    for key in ("epochs", "threshold", "big"):
        assert type(back[key]) is int, key
    assert type(back["lr"]) is float and type(back["privacy"]["target_epsilon"]) is float
    assert type(back["privacy"]["planned_rounds"]) is int
    assert [type(v) for v in back["sizes"]] == [int, float, str, list]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, b"raw", object(), 2**64])
def test_settings_refuse_values_that_cannot_travel(bad):
    with pytest.raises(InvalidPayload, match=r"settings\.x"):
        to_config({"x": bad})


def test_a_received_value_without_a_type_or_not_finite_is_refused():
    untyped = pb.Config()
    untyped.items["x"].SetInParent()
    with pytest.raises(InvalidPayload, match="without a type"):
        from_config(untyped)
    nan = pb.Config()
    nan.items["y"].float_value = float("nan")
    with pytest.raises(InvalidPayload, match="not a finite number"):
        from_config(nan)


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
