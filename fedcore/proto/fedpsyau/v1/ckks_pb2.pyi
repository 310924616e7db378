from fedcore.proto.fedpsyau.v1 import federation_pb2 as _federation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CkksKeyAdvertisement(_message.Message):
    __slots__ = ("client_id", "x25519_public", "certificate_pem", "signature")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    X25519_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    x25519_public: bytes
    certificate_pem: bytes
    signature: bytes
    def __init__(self, client_id: _Optional[str] = ..., x25519_public: _Optional[bytes] = ..., certificate_pem: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class CkksSetupHeader(_message.Message):
    __slots__ = ("setup_id", "key_holder", "params_fingerprint")
    SETUP_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_HOLDER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    setup_id: bytes
    key_holder: str
    params_fingerprint: bytes
    def __init__(self, setup_id: _Optional[bytes] = ..., key_holder: _Optional[str] = ..., params_fingerprint: _Optional[bytes] = ...) -> None: ...

class CkksKeyAdvertiseTask(_message.Message):
    __slots__ = ("setup",)
    SETUP_FIELD_NUMBER: _ClassVar[int]
    setup: CkksSetupHeader
    def __init__(self, setup: _Optional[_Union[CkksSetupHeader, _Mapping]] = ...) -> None: ...

class CkksKeyDistributeTask(_message.Message):
    __slots__ = ("setup", "peers")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    setup: CkksSetupHeader
    peers: _containers.RepeatedCompositeFieldContainer[CkksKeyAdvertisement]
    def __init__(self, setup: _Optional[_Union[CkksSetupHeader, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[CkksKeyAdvertisement, _Mapping]]] = ...) -> None: ...

class CkksSealedKey(_message.Message):
    __slots__ = ("peer_id", "envelope")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    envelope: bytes
    def __init__(self, peer_id: _Optional[str] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class CkksKeyDistribution(_message.Message):
    __slots__ = ("key_id", "public_context", "sealed", "rejected")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    public_context: bytes
    sealed: _containers.RepeatedCompositeFieldContainer[CkksSealedKey]
    rejected: _containers.ScalarMap[str, str]
    def __init__(self, key_id: _Optional[bytes] = ..., public_context: _Optional[bytes] = ..., sealed: _Optional[_Iterable[_Union[CkksSealedKey, _Mapping]]] = ..., rejected: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CkksKeyReceiveTask(_message.Message):
    __slots__ = ("setup", "holder", "key_id", "public_context", "envelope")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    setup: CkksSetupHeader
    holder: CkksKeyAdvertisement
    key_id: bytes
    public_context: bytes
    envelope: bytes
    def __init__(self, setup: _Optional[_Union[CkksSetupHeader, _Mapping]] = ..., holder: _Optional[_Union[CkksKeyAdvertisement, _Mapping]] = ..., key_id: _Optional[bytes] = ..., public_context: _Optional[bytes] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class CkksKeyReceipt(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    def __init__(self, key_id: _Optional[bytes] = ...) -> None: ...

class CkksInputTask(_message.Message):
    __slots__ = ("key_id", "params_fingerprint", "vector_length", "num_ciphertexts", "num_participants", "max_weight")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NUM_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    params_fingerprint: bytes
    vector_length: int
    num_ciphertexts: int
    num_participants: int
    max_weight: float
    def __init__(self, key_id: _Optional[bytes] = ..., params_fingerprint: _Optional[bytes] = ..., vector_length: _Optional[int] = ..., num_ciphertexts: _Optional[int] = ..., num_participants: _Optional[int] = ..., max_weight: _Optional[float] = ...) -> None: ...

class CkksEncryptedInput(_message.Message):
    __slots__ = ("key_id", "ciphertexts")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    ciphertexts: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key_id: _Optional[bytes] = ..., ciphertexts: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CkksEncryptedSum(_message.Message):
    __slots__ = ("key_id", "round", "attempt", "num_contributors", "ciphertexts")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NUM_CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    round: int
    attempt: int
    num_contributors: int
    ciphertexts: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key_id: _Optional[bytes] = ..., round: _Optional[int] = ..., attempt: _Optional[int] = ..., num_contributors: _Optional[int] = ..., ciphertexts: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CkksDecryptTask(_message.Message):
    __slots__ = ("key_id", "sum_blob", "sum_sha256", "vector_length", "num_ciphertexts", "num_contributors", "round_bits")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SUM_BLOB_FIELD_NUMBER: _ClassVar[int]
    SUM_SHA256_FIELD_NUMBER: _ClassVar[int]
    VECTOR_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NUM_CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    NUM_CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    ROUND_BITS_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    sum_blob: str
    sum_sha256: bytes
    vector_length: int
    num_ciphertexts: int
    num_contributors: int
    round_bits: int
    def __init__(self, key_id: _Optional[bytes] = ..., sum_blob: _Optional[str] = ..., sum_sha256: _Optional[bytes] = ..., vector_length: _Optional[int] = ..., num_ciphertexts: _Optional[int] = ..., num_contributors: _Optional[int] = ..., round_bits: _Optional[int] = ...) -> None: ...

class CkksDecryptedSum(_message.Message):
    __slots__ = ("key_id", "round_bits", "units")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_BITS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    key_id: bytes
    round_bits: int
    units: _federation_pb2.Vector
    def __init__(self, key_id: _Optional[bytes] = ..., round_bits: _Optional[int] = ..., units: _Optional[_Union[_federation_pb2.Vector, _Mapping]] = ...) -> None: ...
