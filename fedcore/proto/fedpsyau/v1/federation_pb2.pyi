from google.protobuf import any_pb2 as _any_pb2
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
    settings: Config
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., heartbeat_interval: _Optional[float] = ..., settings: _Optional[_Union[Config, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("model_blob", "model_sha256", "statistics", "config", "privacy")
    MODEL_BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    model_blob: str
    model_sha256: bytes
    statistics: Vector
    config: Config
    privacy: TaskPrivacy
    def __init__(self, model_blob: _Optional[str] = ..., model_sha256: _Optional[bytes] = ..., statistics: _Optional[_Union[Vector, _Mapping]] = ..., config: _Optional[_Union[Config, _Mapping]] = ..., privacy: _Optional[_Union[TaskPrivacy, _Mapping]] = ...) -> None: ...

class StatsTask(_message.Message):
    __slots__ = ("config", "privacy")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    config: Config
    privacy: TaskPrivacy
    def __init__(self, config: _Optional[_Union[Config, _Mapping]] = ..., privacy: _Optional[_Union[TaskPrivacy, _Mapping]] = ...) -> None: ...

class EvaluateTask(_message.Message):
    __slots__ = ("model_blob", "model_sha256", "statistics", "config")
    MODEL_BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    model_blob: str
    model_sha256: bytes
    statistics: Vector
    config: Config
    def __init__(self, model_blob: _Optional[str] = ..., model_sha256: _Optional[bytes] = ..., statistics: _Optional[_Union[Vector, _Mapping]] = ..., config: _Optional[_Union[Config, _Mapping]] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("items",)
    class ItemsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ConfigValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ConfigValue, _Mapping]] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.MessageMap[str, ConfigValue]
    def __init__(self, items: _Optional[_Mapping[str, ConfigValue]] = ...) -> None: ...

class ConfigList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ConfigValue]
    def __init__(self, items: _Optional[_Iterable[_Union[ConfigValue, _Mapping]]] = ...) -> None: ...

class ConfigValue(_message.Message):
    __slots__ = ("int_value", "float_value", "str_value", "bool_value", "table_value", "list_value")
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STR_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    TABLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    int_value: int
    float_value: float
    str_value: str
    bool_value: bool
    table_value: Config
    list_value: ConfigList
    def __init__(self, int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., str_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., table_value: _Optional[_Union[Config, _Mapping]] = ..., list_value: _Optional[_Union[ConfigList, _Mapping]] = ...) -> None: ...

class LocalDP(_message.Message):
    __slots__ = ("enabled", "target_epsilon", "delta", "max_grad_norm", "noise_multiplier", "accountant", "secure_rng", "report_steps", "statistics_epsilon", "planned_rounds", "local_epochs", "batch_size")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    SECURE_RNG_FIELD_NUMBER: _ClassVar[int]
    REPORT_STEPS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_EPSILON_FIELD_NUMBER: _ClassVar[int]
    PLANNED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    target_epsilon: float
    delta: float
    max_grad_norm: float
    noise_multiplier: float
    accountant: str
    secure_rng: bool
    report_steps: bool
    statistics_epsilon: float
    planned_rounds: int
    local_epochs: int
    batch_size: int
    def __init__(self, enabled: _Optional[bool] = ..., target_epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., accountant: _Optional[str] = ..., secure_rng: _Optional[bool] = ..., report_steps: _Optional[bool] = ..., statistics_epsilon: _Optional[float] = ..., planned_rounds: _Optional[int] = ..., local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class ClientLevelDP(_message.Message):
    __slots__ = ("clip_norm", "noise_multiplier", "delta")
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    clip_norm: float
    noise_multiplier: float
    delta: float
    def __init__(self, clip_norm: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class TaskPrivacy(_message.Message):
    __slots__ = ("local", "central", "distributed")
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    CENTRAL_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    local: LocalDP
    central: ClientLevelDP
    distributed: ClientLevelDP
    def __init__(self, local: _Optional[_Union[LocalDP, _Mapping]] = ..., central: _Optional[_Union[ClientLevelDP, _Mapping]] = ..., distributed: _Optional[_Union[ClientLevelDP, _Mapping]] = ...) -> None: ...

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
