"""The adder's SumService servicer: one `AddNumbers` call, from request bytes to status code.

The servicer only translates: protobuf in -> validate_add -> AddNumbersHandler -> protobuf out,
and maps each refusal to its status code. It never lets client input become UNKNOWN/INTERNAL.
It runs on the grpc.aio event loop (entrypoints/adder_grpc_server.py hosts it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry import trace

from sumflow.domain.summation import InvalidRequest, SumOutOfRange, validate_add
from sumflow.observability.adder_telemetry import CallTelemetry, set_error
from sumflow.observability.metrics import AdderMetrics
from sumflow.service_layer.add_numbers import (
    AddNumbersHandler,
    AddResult,
    Conflict,
    DeadlineReached,
    NotPublished,
)
from sumflow.v1 import sum_pb2, sum_pb2_grpc

log = logging.getLogger("sumflow.adder")

SERVICE_NAME = sum_pb2.DESCRIPTOR.services_by_name["SumService"].full_name  # sumflow.v1.SumService
_NO_DEADLINE = 86400.0  # grpc reports "no deadline" as a huge time remaining


UNDECODABLE: Any = object()  # what parse_add_request returns for bytes that are no AddNumbersRequest


_KNOWN_FIELDS = frozenset(f.number for f in sum_pb2.AddNumbersRequest.DESCRIPTOR.fields)


def parse_add_request(data: bytes) -> sum_pb2.AddNumbersRequest:
    """The request, or UNDECODABLE. A known field number with the wrong wire type (e.g. a number sent
    as bytes) is kept by protobuf as an unknown field and the field reads as 0: refuse it instead.
    A field left at its default is simply absent on the wire, so a plain proto3 client still works."""
    try:
        request = sum_pb2.AddNumbersRequest.FromString(data)
    except DecodeError:
        return UNDECODABLE
    for field in UnknownFieldSet(request):
        if field.field_number in _KNOWN_FIELDS:
            return UNDECODABLE
    return request


class SumServicer(sum_pb2_grpc.SumServiceServicer):
    def __init__(
        self,
        handler: AddNumbersHandler,
        *,
        metrics: AdderMetrics | None = None,
        tracer: trace.Tracer | None = None,
        extract_trace_context: bool = False,
        log_every_call: bool = False,
    ) -> None:
        self._handler = handler
        # One JSON line per call costs ~6% of the adder's CPU at full load (logging + formatting +
        # a write per line): by default only calls answered with another status than OK are logged,
        # and calls recorded in a trace (so a trace in Tempo always finds its log line in Loki).
        self._log_ok = log_every_call
        self._telemetry = CallTelemetry(
            metrics,
            tracer,
            service=SERVICE_NAME,
            method="AddNumbers",
            codes=[code.name for code in grpc.StatusCode],
            extract_trace_context=extract_trace_context,
        )

    async def AddNumbers(  # type: ignore[override]
        self, request: sum_pb2.AddNumbersRequest, context: grpc.aio.ServicerContext
    ) -> sum_pb2.AddNumbersResponse:
        if request is UNDECODABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _UNDECODABLE_DETAILS)
        started = time.perf_counter()
        remaining = context.time_remaining()
        deadline = None if remaining is None or remaining > _NO_DEADLINE else time.monotonic() + remaining
        parent = self._telemetry.begin(context.invocation_metadata())
        with self._telemetry.server_span(parent) as span:
            try:
                cmd = validate_add(request.request_id, request.first_number, request.second_number)
                answer = await self._handler.add(cmd, deadline)
            except asyncio.CancelledError:  # the client cancelled or its deadline passed
                self._record(span, request.request_id, grpc.StatusCode.CANCELLED, "deadline", started)
                raise
            except Exception as exc:
                response, code, details, outcome = self._refused(request, exc, span)
            else:
                response, code, details, outcome = self._answered(answer, span)
            if code is not grpc.StatusCode.OK:
                context.set_code(code)
                context.set_details(details)
            self._record(span, response.request_id or request.request_id, code, outcome, started)
        return response

    def _refused(self, request: sum_pb2.AddNumbersRequest, exc: Exception, span: trace.Span) -> _Reply:
        """The response, status code, details and log outcome of a refused (or failed) call."""
        refusal = _REFUSALS_BY_TYPE.get(type(exc))
        if refusal is None:
            log.error("AddNumbers failed", exc_info=exc, extra={"request_id": request.request_id})
            return sum_pb2.AddNumbersResponse(), grpc.StatusCode.INTERNAL, "internal error (logged)", "error"
        code, outcome = refusal
        set_error(span, str(exc))
        return sum_pb2.AddNumbersResponse(), code, str(exc), outcome

    def _answered(self, answer: AddResult, span: trace.Span) -> _Reply:
        if span.is_recording():
            span.set_attributes({"result": answer.result, "duplicate": answer.duplicate})
        response = sum_pb2.AddNumbersResponse(
            request_id=answer.request_id, result=answer.result, duplicate=answer.duplicate
        )
        return response, grpc.StatusCode.OK, "", "duplicate" if answer.duplicate else "new"

    def _record(self, span: trace.Span, request_id: str, code: grpc.StatusCode, outcome: str, started: float) -> None:
        """Span attributes, metrics and the call's log line (all calls, or failures and traced calls only)."""
        elapsed = time.perf_counter() - started
        recording = self._telemetry.finish(span, request_id, code.name, code.value[0], elapsed)
        if (self._log_ok or recording or code is not grpc.StatusCode.OK) and log.isEnabledFor(logging.INFO):
            log.info(
                "AddNumbers",
                extra={
                    "request_id": request_id,
                    "outcome": outcome,
                    "code": code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )


_REFUSALS_BY_TYPE: dict[type[Exception], tuple[grpc.StatusCode, str]] = {
    InvalidRequest: (grpc.StatusCode.INVALID_ARGUMENT, "invalid"),
    SumOutOfRange: (grpc.StatusCode.OUT_OF_RANGE, "out_of_range"),
    Conflict: (grpc.StatusCode.ALREADY_EXISTS, "conflict"),
    DeadlineReached: (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"),
    NotPublished: (grpc.StatusCode.UNAVAILABLE, "unavailable"),
}
_Reply = tuple[sum_pb2.AddNumbersResponse, grpc.StatusCode, str, str]  # response, code, details, log outcome
_UNDECODABLE_DETAILS = "the message is not a valid sumflow.v1.AddNumbersRequest"
