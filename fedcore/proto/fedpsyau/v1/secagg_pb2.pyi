from fedcore.proto.fedpsyau.v1 import federation_pb2 as _federation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecAggAdvertiseKeysTask(_message.Message):
    __slots__ = ("round", "attempt", "participants")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    round: int
    attempt: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, round: _Optional[int] = ..., attempt: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class SecAggAdvertiseKeys(_message.Message):
    __slots__ = ("channel_public_key", "mask_public_key", "signature", "certificate_pem")
    CHANNEL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    MASK_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    channel_public_key: bytes
    mask_public_key: bytes
    signature: bytes
    certificate_pem: bytes
    def __init__(self, channel_public_key: _Optional[bytes] = ..., mask_public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[bytes] = ...) -> None: ...

class SecAggPeerKeys(_message.Message):
    __slots__ = ("client_id", "channel_public_key", "mask_public_key", "signature", "certificate_pem")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    MASK_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    channel_public_key: bytes
    mask_public_key: bytes
    signature: bytes
    certificate_pem: bytes
    def __init__(self, client_id: _Optional[str] = ..., channel_public_key: _Optional[bytes] = ..., mask_public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[bytes] = ...) -> None: ...

class SecAggShareKeysTask(_message.Message):
    __slots__ = ("round", "attempt", "participants", "graph_seed", "degree", "min_survivors", "neighbours")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SEED_FIELD_NUMBER: _ClassVar[int]
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    MIN_SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    round: int
    attempt: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    graph_seed: bytes
    degree: int
    min_survivors: int
    neighbours: _containers.RepeatedCompositeFieldContainer[SecAggPeerKeys]
    def __init__(self, round: _Optional[int] = ..., attempt: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ..., graph_seed: _Optional[bytes] = ..., degree: _Optional[int] = ..., min_survivors: _Optional[int] = ..., neighbours: _Optional[_Iterable[_Union[SecAggPeerKeys, _Mapping]]] = ...) -> None: ...

class SecAggSealedShare(_message.Message):
    __slots__ = ("sender", "receiver", "sealed")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    sender: str
    receiver: str
    sealed: bytes
    def __init__(self, sender: _Optional[str] = ..., receiver: _Optional[str] = ..., sealed: _Optional[bytes] = ...) -> None: ...

class SecAggShareKeys(_message.Message):
    __slots__ = ("shares",)
    SHARES_FIELD_NUMBER: _ClassVar[int]
    shares: _containers.RepeatedCompositeFieldContainer[SecAggSealedShare]
    def __init__(self, shares: _Optional[_Iterable[_Union[SecAggSealedShare, _Mapping]]] = ...) -> None: ...

class SecAggSharePlaintext(_message.Message):
    __slots__ = ("sender", "receiver", "self_mask_share", "key_share")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    SELF_MASK_SHARE_FIELD_NUMBER: _ClassVar[int]
    KEY_SHARE_FIELD_NUMBER: _ClassVar[int]
    sender: str
    receiver: str
    self_mask_share: bytes
    key_share: bytes
    def __init__(self, sender: _Optional[str] = ..., receiver: _Optional[str] = ..., self_mask_share: _Optional[bytes] = ..., key_share: _Optional[bytes] = ...) -> None: ...

class SecAggQuantization(_message.Message):
    __slots__ = ("bits", "frac_bits", "clip", "max_weight", "noise_sigma", "num_clients")
    BITS_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NOISE_SIGMA_FIELD_NUMBER: _ClassVar[int]
    NUM_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    bits: int
    frac_bits: int
    clip: float
    max_weight: int
    noise_sigma: float
    num_clients: int
    def __init__(self, bits: _Optional[int] = ..., frac_bits: _Optional[int] = ..., clip: _Optional[float] = ..., max_weight: _Optional[int] = ..., noise_sigma: _Optional[float] = ..., num_clients: _Optional[int] = ...) -> None: ...

class SecAggMaskedInputTask(_message.Message):
    __slots__ = ("round", "attempt", "quantization", "shares")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    round: int
    attempt: int
    quantization: SecAggQuantization
    shares: _containers.RepeatedCompositeFieldContainer[SecAggSealedShare]
    def __init__(self, round: _Optional[int] = ..., attempt: _Optional[int] = ..., quantization: _Optional[_Union[SecAggQuantization, _Mapping]] = ..., shares: _Optional[_Iterable[_Union[SecAggSealedShare, _Mapping]]] = ...) -> None: ...

class SecAggMaskedInput(_message.Message):
    __slots__ = ("masked",)
    MASKED_FIELD_NUMBER: _ClassVar[int]
    masked: _federation_pb2.Vector
    def __init__(self, masked: _Optional[_Union[_federation_pb2.Vector, _Mapping]] = ...) -> None: ...

class SecAggUnmaskTask(_message.Message):
    __slots__ = ("round", "attempt", "survivors", "dropped", "num_survivors")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    NUM_SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    round: int
    attempt: int
    survivors: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    num_survivors: int
    def __init__(self, round: _Optional[int] = ..., attempt: _Optional[int] = ..., survivors: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[str]] = ..., num_survivors: _Optional[int] = ...) -> None: ...

class SecAggRevealedShare(_message.Message):
    __slots__ = ("owner", "share")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    owner: str
    share: bytes
    def __init__(self, owner: _Optional[str] = ..., share: _Optional[bytes] = ...) -> None: ...

class SecAggUnmask(_message.Message):
    __slots__ = ("self_mask_shares", "key_shares")
    SELF_MASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    self_mask_shares: _containers.RepeatedCompositeFieldContainer[SecAggRevealedShare]
    key_shares: _containers.RepeatedCompositeFieldContainer[SecAggRevealedShare]
    def __init__(self, self_mask_shares: _Optional[_Iterable[_Union[SecAggRevealedShare, _Mapping]]] = ..., key_shares: _Optional[_Iterable[_Union[SecAggRevealedShare, _Mapping]]] = ...) -> None: ...
