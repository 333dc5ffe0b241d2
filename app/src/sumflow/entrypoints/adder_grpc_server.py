"""The adder's gRPC server: AddNumbers, health and reflection on a grpc.aio server.

One event loop (thread `grpc-aio`) serves every call: it awaits the de-dupe claim (resolved by the
store's writer thread) and Kafka's acknowledgement (resolved by the producer's thread), so a call
holds no thread while it waits. `AdderGrpcServer` drives that loop from synchronous code (AdderApp).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sumflow.entrypoints.adder_servicer import SERVICE_NAME, SumServicer, parse_add_request
from sumflow.v1 import sum_pb2

T = TypeVar("T")

_CALLS_PER_WORKER = 64  # maximum_concurrent_rpcs = SUMFLOW_GRPC_WORKERS x this


class AdderGrpcServer:
    """A grpc.aio server on its own event-loop thread; created bound (not started), health NOT_SERVING."""

    def __init__(
        self,
        servicer: SumServicer,
        *,
        listen: str,
        workers: int,
        reuse_port: bool,
        credentials: grpc.ServerCredentials | None = None,  # None: plaintext (an insecure port)
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-aio", daemon=True)
        self._thread.start()
        try:
            self.server, self.health, self.port = self._call(
                self._build(servicer, listen, workers, reuse_port, credentials)
            )
            self.set_serving(False)
        except BaseException:
            self._close_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @staticmethod
    async def _build(
        servicer: SumServicer,
        listen: str,
        workers: int,
        reuse_port: bool,
        credentials: grpc.ServerCredentials | None,
    ) -> tuple[grpc.aio.Server, Any, int]:
        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 1 if reuse_port else 0), ("grpc.max_receive_message_length", 64 * 1024)],
            maximum_concurrent_rpcs=workers * _CALLS_PER_WORKER,
        )
        health_servicer = health.aio.HealthServicer()
        _register_services(server, servicer.AddNumbers, health_servicer)
        port = _bind(server, listen, credentials)
        return server, health_servicer, port

    def start(self) -> None:
        self._call(self.server.start())

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

        async def apply() -> None:
            for name in ("", SERVICE_NAME):
                await self.health.set(name, status)

        self._call(apply())

    def enter_drain(self) -> None:
        """Health NOT_SERVING for good (a later set_serving cannot undo it); calls are still served."""
        self._call(self.health.enter_graceful_shutdown())

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


def _register_services(server: grpc.aio.Server, add_numbers: Callable[..., Any], health_servicer: Any) -> None:
    """AddNumbers, health and reflection.

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


def _bind(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind the port (TLS with `credentials`, else insecure); the bound port, or OSError naming the address."""
    try:
        port = server.add_insecure_port(listen) if credentials is None else server.add_secure_port(listen, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {listen} (address in use or not available)")
    return port
