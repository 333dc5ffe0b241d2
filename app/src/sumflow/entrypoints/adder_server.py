"""gRPC side of the adder: the SumService servicer, health, reflection and the server itself.

The servicer only translates: protobuf in -> validate_add -> AddNumbersHandler -> protobuf out,
and maps each refusal to its status code. It never lets client input become UNKNOWN/INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from sumflow.domain.summation import InvalidRequest, SumOutOfRange, validate_add
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
METHOD = f"{SERVICE_NAME}/AddNumbers"
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
        self._metrics = metrics
        self._tracer = tracer  # None: tracing off, no spans
        self._extract = extract_trace_context
        self._counters: dict[grpc.StatusCode, Any] = {}
        if metrics is not None:
            self._duration = metrics.request_duration.labels(METHOD)
            self._counters = {code: metrics.requests.labels(METHOD, code.name) for code in grpc.StatusCode}

    def AddNumbers(
        self, request: sum_pb2.AddNumbersRequest, context: grpc.ServicerContext
    ) -> sum_pb2.AddNumbersResponse:
        if request is UNDECODABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _UNDECODABLE_DETAILS)
        started, deadline, parent = self._begin(context)
        with self._server_span(parent) as span:
            try:
                cmd = validate_add(request.request_id, request.first_number, request.second_number)
                answer = self._handler.add(cmd, deadline)
            except Exception as exc:
                reply = self._refused(request, exc, span)
            else:
                reply = self._answered(answer, span)
            self._finish(context, request, reply, span, started)
        return reply[0]

    def _begin(self, context: Any) -> tuple[float, float | None, Context | None]:
        """Start time, the client's deadline (time.monotonic()) and the incoming trace context."""
        started = time.perf_counter()
        remaining = context.time_remaining()
        deadline = None if remaining is None or remaining > _NO_DEADLINE else time.monotonic() + remaining
        parent = propagate.extract(dict(context.invocation_metadata())) if self._extract else None
        if self._metrics is not None:
            self._metrics.in_flight.inc()
        return started, deadline, parent

    def _finish(
        self, context: Any, request: sum_pb2.AddNumbersRequest, reply: _Reply, span: trace.Span, started: float
    ) -> None:
        response, code, details, outcome = reply
        if code is not grpc.StatusCode.OK:
            context.set_code(code)
            context.set_details(details)
        self._record(span, response.request_id or request.request_id, code, outcome, started)

    def _server_span(self, parent: Context | None) -> AbstractContextManager[trace.Span]:
        if self._tracer is None:
            return nullcontext(trace.INVALID_SPAN)
        return self._tracer.start_as_current_span(
            METHOD,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE_NAME, "rpc.method": "AddNumbers"},
        )

    def _refused(self, request: sum_pb2.AddNumbersRequest, exc: Exception, span: trace.Span) -> _Reply:
        """The response, status code, details and log outcome of a refused (or failed) call."""
        refusal = _REFUSALS_BY_TYPE.get(type(exc))
        if refusal is None:
            log.error("AddNumbers failed", exc_info=exc, extra={"request_id": request.request_id})
            return sum_pb2.AddNumbersResponse(), grpc.StatusCode.INTERNAL, "internal error (logged)", "error"
        code, outcome = refusal
        if span.is_recording():
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        return sum_pb2.AddNumbersResponse(), code, str(exc), outcome

    def _answered(self, answer: AddResult, span: trace.Span) -> _Reply:
        if span.is_recording():
            span.set_attributes({"result": answer.result, "duplicate": answer.duplicate})
        response = sum_pb2.AddNumbersResponse(
            request_id=answer.request_id, result=answer.result, duplicate=answer.duplicate
        )
        return response, grpc.StatusCode.OK, "", "duplicate" if answer.duplicate else "new"

    def _record(self, span: trace.Span, request_id: str, code: grpc.StatusCode, outcome: str, started: float) -> None:
        """Span attributes, metrics (with the trace id as exemplar) and the call's log line (all, or failures only)."""
        elapsed = time.perf_counter() - started
        recording = span.is_recording()
        if recording:
            span.set_attributes({"request_id": request_id, "rpc.grpc.status_code": code.value[0]})
        if self._metrics is not None:
            self._metrics.in_flight.dec()
            self._counters[code].inc()
            ctx = span.get_span_context()
            if recording and ctx.is_valid:
                self._duration.observe(elapsed, exemplar={"trace_id": format(ctx.trace_id, "032x")})
            else:
                self._duration.observe(elapsed)
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


@dataclass(slots=True)
class GrpcServer:
    server: grpc.Server
    health: health.HealthServicer
    port: int

    def start(self) -> None:
        self.server.start()

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight calls finish within the grace period."""
        self.server.stop(grace_seconds).wait(grace_seconds + 1.0)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)


def server_options(reuse_port: bool) -> list[tuple[str, int]]:
    """Channel options shared by the threaded and the asyncio server."""
    return [("grpc.so_reuseport", 1 if reuse_port else 0), ("grpc.max_receive_message_length", 64 * 1024)]


def register_services(
    server: grpc.Server | grpc.aio.Server, add_numbers: Callable[..., Any], health_servicer: Any
) -> None:
    """AddNumbers, health and reflection on either kind of server.

    AddNumbers is registered by hand so that bytes that are not an AddNumbersRequest get
    INVALID_ARGUMENT: with the generated helper, grpc answers a failed parse with INTERNAL
    ("Exception deserializing request!").
    """
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE_NAME,
                {
                    "AddNumbers": grpc.unary_unary_rpc_method_handler(
                        add_numbers,
                        request_deserializer=parse_add_request,
                        response_serializer=sum_pb2.AddNumbersResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )


def bind(server: grpc.Server | grpc.aio.Server, listen: str) -> int:
    """Bind the insecure port; the bound port, or OSError naming the address."""
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {listen} (address in use or not available)")
    return port


def build_grpc_server(servicer: SumServicer, *, listen: str, workers: int, reuse_port: bool) -> GrpcServer:
    """Create and bind (not start) the server; health starts NOT_SERVING. Raises OSError if the bind fails."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=server_options(reuse_port),
        maximum_concurrent_rpcs=workers * 64,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    register_services(server, servicer.AddNumbers, health_servicer)
    port = bind(server, listen)
    grpc_server = GrpcServer(server, health_servicer, port)
    grpc_server.set_serving(False)
    return grpc_server
