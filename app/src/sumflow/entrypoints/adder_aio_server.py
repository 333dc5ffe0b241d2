"""The asyncio (grpc.aio) variant of the adder's gRPC side, chosen with SUMFLOW_ADDER_SERVER=aio.

One event loop (thread `grpc-aio`) serves every call: it awaits the de-dupe claim (resolved by the
store's writer thread) and Kafka's acknowledgement (resolved by the producer's thread), so a call
no longer hops through a pool of 64 gRPC worker threads. Status codes, metrics, spans and log lines
come from the same SumServicer pieces as the threaded server; the use case is the same handler
(`AddNumbersHandler.add_async`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

from sumflow.domain.summation import validate_add
from sumflow.entrypoints.adder_server import (
    _UNDECODABLE_DETAILS,
    SERVICE_NAME,
    UNDECODABLE,
    SumServicer,
    bind,
    register_services,
    server_options,
)
from sumflow.v1 import sum_pb2

T = TypeVar("T")


class AioSumServicer(SumServicer):
    async def AddNumbers(  # type: ignore[override]
        self, request: sum_pb2.AddNumbersRequest, context: grpc.aio.ServicerContext
    ) -> sum_pb2.AddNumbersResponse:
        if request is UNDECODABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _UNDECODABLE_DETAILS)
        started, deadline, parent = self._begin(context)
        with self._server_span(parent) as span:
            try:
                cmd = validate_add(request.request_id, request.first_number, request.second_number)
                answer = await self._handler.add_async(cmd, deadline)
            except asyncio.CancelledError:  # the client cancelled or its deadline passed
                self._record(span, request.request_id, grpc.StatusCode.CANCELLED, "deadline", started)
                raise
            except Exception as exc:
                reply = self._refused(request, exc, span)
            else:
                reply = self._answered(answer, span)
            self._finish(context, request, reply, span, started)
        return reply[0]


class AioGrpcServer:
    """A grpc.aio server on its own event-loop thread, driven from synchronous code (AdderApp)."""

    def __init__(self, servicer: AioSumServicer, *, listen: str, workers: int, reuse_port: bool) -> None:
        self._loop = asyncio.new_event_loop()
        # Blocking fallbacks (repeated ids: add() in a thread) run here.
        self._loop.set_default_executor(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"))
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-aio", daemon=True)
        self._thread.start()
        try:
            self.server, self.health, self.port = self._call(self._build(servicer, listen, workers, reuse_port))
            self.set_serving(False)
        except BaseException:
            self._close_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @staticmethod
    async def _build(
        servicer: AioSumServicer, listen: str, workers: int, reuse_port: bool
    ) -> tuple[grpc.aio.Server, Any, int]:
        server = grpc.aio.server(options=server_options(reuse_port), maximum_concurrent_rpcs=workers * 64)
        health_servicer = health.aio.HealthServicer()
        register_services(server, servicer.AddNumbers, health_servicer)
        port = bind(server, listen)
        return server, health_servicer, port

    def start(self) -> None:
        self._call(self.server.start())

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

        async def apply() -> None:
            for name in ("", SERVICE_NAME):
                await self.health.set(name, status)

        self._call(apply())

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let in-flight calls finish within the grace period, end the loop thread."""
        try:
            self._call(self.server.stop(grace_seconds), timeout=grace_seconds + 5.0)
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        if not self._thread.is_alive():
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()
