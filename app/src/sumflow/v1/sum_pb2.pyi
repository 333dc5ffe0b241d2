from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AddNumbersRequest(_message.Message):
    __slots__ = ("request_id", "first_number", "second_number")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SECOND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    first_number: int
    second_number: int
    def __init__(self, request_id: _Optional[str] = ..., first_number: _Optional[int] = ..., second_number: _Optional[int] = ...) -> None: ...

class AddNumbersResponse(_message.Message):
    __slots__ = ("request_id", "result", "duplicate")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    result: int
    duplicate: bool
    def __init__(self, request_id: _Optional[str] = ..., result: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...
