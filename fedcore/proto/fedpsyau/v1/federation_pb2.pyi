from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_WAIT: _ClassVar[Stage]
    STAGE_DONE: _ClassVar[Stage]
    STAGE_TRAIN: _ClassVar[Stage]
    STAGE_STATS: _ClassVar[Stage]
    STAGE_PLAIN_INPUT: _ClassVar[Stage]
    STAGE_EVALUATE: _ClassVar[Stage]
    STAGE_SECAGG_ADVERTISE_KEYS: _ClassVar[Stage]
    STAGE_SECAGG_SHARE_KEYS: _ClassVar[Stage]
    STAGE_SECAGG_MASKED_INPUT: _ClassVar[Stage]
    STAGE_SECAGG_UNMASK: _ClassVar[Stage]
    STAGE_CKKS_KEY_ADVERTISE: _ClassVar[Stage]
    STAGE_CKKS_KEY_DISTRIBUTE: _ClassVar[Stage]
    STAGE_CKKS_KEY_RECEIVE: _ClassVar[Stage]
    STAGE_CKKS_ENCRYPTED_INPUT: _ClassVar[Stage]
    STAGE_CKKS_DECRYPT: _ClassVar[Stage]
STAGE_UNSPECIFIED: Stage
STAGE_WAIT: Stage
STAGE_DONE: Stage
STAGE_TRAIN: Stage
STAGE_STATS: Stage
STAGE_PLAIN_INPUT: Stage
STAGE_EVALUATE: Stage
STAGE_SECAGG_ADVERTISE_KEYS: Stage
STAGE_SECAGG_SHARE_KEYS: Stage
STAGE_SECAGG_MASKED_INPUT: Stage
STAGE_SECAGG_UNMASK: Stage
STAGE_CKKS_KEY_ADVERTISE: Stage
STAGE_CKKS_KEY_DISTRIBUTE: Stage
STAGE_CKKS_KEY_RECEIVE: Stage
STAGE_CKKS_ENCRYPTED_INPUT: Stage
STAGE_CKKS_DECRYPT: Stage

class Header(_message.Message):
    __slots__ = ("federation_id", "round", "stage", "attempt", "client_id")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    round: int
    stage: Stage
    attempt: int
    client_id: str
    def __init__(self, federation_id: _Optional[str] = ..., round: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ..., attempt: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("header", "client_version")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    header: Header
    client_version: str
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., client_version: _Optional[str] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("header", "heartbeat_interval", "settings")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    heartbeat_interval: float
    settings: _struct_pb2.Struct
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., heartbeat_interval: _Optional[float] = ..., settings: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("header", "wait_up_to")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    WAIT_UP_TO_FIELD_NUMBER: _ClassVar[int]
    header: Header
    wait_up_to: float
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., wait_up_to: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("header", "deadline_in", "retry_after", "body")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_IN_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    header: Header
    deadline_in: float
    retry_after: float
    body: _any_pb2.Any
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., deadline_in: _Optional[float] = ..., retry_after: _Optional[float] = ..., body: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("header", "blob")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    header: Header
    blob: str
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., blob: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: StreamHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ("header", "blob", "total_size", "sha256")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    header: Header
    blob: str
    total_size: int
    sha256: bytes
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., blob: _Optional[str] = ..., total_size: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("header", "duplicate", "message")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    header: Header
    duplicate: bool
    message: str
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., duplicate: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: Header
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: Header
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("dtype", "length", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    length: int
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., length: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class ParamSpec(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("spec", "params", "round")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    spec: ParamSpec
    params: Vector
    round: int
    def __init__(self, spec: _Optional[_Union[ParamSpec, _Mapping]] = ..., params: _Optional[_Union[Vector, _Mapping]] = ..., round: _Optional[int] = ...) -> None: ...

class WaitTask(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DoneTask(_message.Message):
    __slots__ = ("reason", "success")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    success: bool
    def __init__(self, reason: _Optional[str] = ..., success: _Optional[bool] = ...) -> None: ...

class TrainTask(_message.Message):
    __slots__ = ("model_blob", "model_sha256", "config", "statistics")
    MODEL_BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    model_blob: str
    model_sha256: bytes
    config: _struct_pb2.Struct
    statistics: Vector
    def __init__(self, model_blob: _Optional[str] = ..., model_sha256: _Optional[bytes] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., statistics: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class StatsTask(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _struct_pb2.Struct
    def __init__(self, config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EvaluateTask(_message.Message):
    __slots__ = ("model_blob", "model_sha256", "config", "statistics")
    MODEL_BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    model_blob: str
    model_sha256: bytes
    config: _struct_pb2.Struct
    statistics: Vector
    def __init__(self, model_blob: _Optional[str] = ..., model_sha256: _Optional[bytes] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., statistics: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class PlainInputTask(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PrivacyReport(_message.Message):
    __slots__ = ("enabled", "epsilon", "delta", "accountant", "steps", "noise_multiplier", "target_epsilon", "exhausted")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    epsilon: float
    delta: float
    accountant: str
    steps: int
    noise_multiplier: float
    target_epsilon: float
    exhausted: bool
    def __init__(self, enabled: _Optional[bool] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., accountant: _Optional[str] = ..., steps: _Optional[int] = ..., noise_multiplier: _Optional[float] = ..., target_epsilon: _Optional[float] = ..., exhausted: _Optional[bool] = ...) -> None: ...

class TrainReport(_message.Message):
    __slots__ = ("ready", "refusal", "metrics", "privacy")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    READY_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    refusal: str
    metrics: _containers.ScalarMap[str, float]
    privacy: PrivacyReport
    def __init__(self, ready: _Optional[bool] = ..., refusal: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., privacy: _Optional[_Union[PrivacyReport, _Mapping]] = ...) -> None: ...

class StatsReport(_message.Message):
    __slots__ = ("ready", "refusal")
    READY_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    refusal: str
    def __init__(self, ready: _Optional[bool] = ..., refusal: _Optional[str] = ...) -> None: ...

class PlainInput(_message.Message):
    __slots__ = ("weighted_update", "weight")
    WEIGHTED_UPDATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    weighted_update: Vector
    weight: float
    def __init__(self, weighted_update: _Optional[_Union[Vector, _Mapping]] = ..., weight: _Optional[float] = ...) -> None: ...

class EvaluateReport(_message.Message):
    __slots__ = ("metrics", "num_examples", "num_classes", "confusion")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    num_examples: int
    num_classes: int
    confusion: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ..., num_examples: _Optional[int] = ..., num_classes: _Optional[int] = ..., confusion: _Optional[_Iterable[int]] = ...) -> None: ...
