"""`sumflow add A B [--id UUID]`: one AddNumbers call, its answer or a one-line explanation of its status.

Exit status: 0 answered (new or duplicate), 10 + the gRPC status code otherwise (13 INVALID_ARGUMENT,
14 DEADLINE_EXCEEDED, 16 ALREADY_EXISTS, 21 OUT_OF_RANGE, 24 UNAVAILABLE, ...).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from sumflow.entrypoints.cli_endpoints import CliError, Endpoints

GRPC_EXIT_BASE = 10


def exit_code_for(code: grpc.StatusCode) -> int:
    return GRPC_EXIT_BASE + code.value[0]


# What a user reads for each status: what happened and what to do next.
_EXPLANATIONS = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid request: {details}",
    grpc.StatusCode.ALREADY_EXISTS: "{details}; nothing was added: use a new --id (or none, for a fresh one)",
    grpc.StatusCode.OUT_OF_RANGE: "{details}; nothing was added",
    grpc.StatusCode.UNAVAILABLE: (
        "adder at {adder} unavailable ({details}); nothing was recorded: retry with --id {request_id}"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "no answer from {adder} within {timeout:g}s; the call may or may not have been recorded: "
        "retry with --id {request_id} (a repeat is answered, never counted twice)"
    ),
    grpc.StatusCode.UNAUTHENTICATED: "adder at {adder} refused the credentials ({details}): check --ca/--cert/--key",
    grpc.StatusCode.PERMISSION_DENIED: "adder at {adder} refused the credentials ({details}): check --ca/--cert/--key",
}


# When the adder sends no message (it always does; another server might not).
_NO_DETAILS = {
    grpc.StatusCode.ALREADY_EXISTS: "this request id was already used with other numbers",
    grpc.StatusCode.OUT_OF_RANGE: "the sum does not fit in a signed 64-bit integer",
}


def explain(code: grpc.StatusCode, details: str, request_id: str, endpoints: Endpoints) -> str:
    """The one line a user reads for a failed call."""
    template = _EXPLANATIONS.get(code, "adder at {adder} answered {code}: {details}")
    return template.format(
        details=details or _NO_DETAILS.get(code, "no details"),
        request_id=request_id,
        adder=endpoints.adder,
        timeout=endpoints.timeout,
        code=code.name,
    )


@dataclass(frozen=True)
class AddAnswer:
    first: int
    second: int
    request_id: str
    result: int
    duplicate: bool

    def text(self) -> str:
        kind = "duplicate (the first answer; nothing added again)" if self.duplicate else "new"
        return f"{self.first} + {self.second} = {self.result}  request_id {self.request_id}  {kind}"

    def json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "result": self.result, "duplicate": self.duplicate}


def add(endpoints: Endpoints, first: int, second: int, request_id: str | None) -> AddAnswer:
    from sumflow.v1 import sum_pb2, sum_pb2_grpc

    request_id = request_id or str(uuid.uuid4())
    request = sum_pb2.AddNumbersRequest(request_id=request_id, first_number=first, second_number=second)
    with endpoints.grpc_channel() as channel:
        try:
            reply = sum_pb2_grpc.SumServiceStub(channel).AddNumbers(request, timeout=endpoints.timeout)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            raise CliError(explain(code, exc.details(), request_id, endpoints), exit_code_for(code)) from None  # type: ignore[attr-defined]
    return AddAnswer(first, second, reply.request_id, reply.result, reply.duplicate)
