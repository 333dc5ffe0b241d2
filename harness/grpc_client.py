"""Small gRPC client helpers for the adder (channel + stubs from sumflow.v1.sum_pb2_grpc)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc


def channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """Plaintext, or TLS with `credentials` (grpc.ssl_channel_credentials)."""
    options = [("grpc.enable_retries", 0)]
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def health_status(
    target: str, service: str = "", timeout: float = 1.0, credentials: grpc.ChannelCredentials | None = None
) -> str:
    """'SERVING', 'NOT_SERVING', ... or 'UNREACHABLE' when the call itself fails."""
    with channel(target, credentials) as ch:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            reply = health_pb2_grpc.HealthStub(ch).Check(request, timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class AdderClient:
    """One channel to an adder; `add` raises grpc.RpcError (check `.code()`) on a non-OK status."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.target = target
        self.channel = channel(target, credentials)
        self.stub = sum_pb2_grpc.SumServiceStub(self.channel)

    def add(self, request_id: str, first: int, second: int, timeout: float = 15.0) -> sum_pb2.AddNumbersResponse:
        request = sum_pb2.AddNumbersRequest(request_id=request_id, first_number=first, second_number=second)
        return self.stub.AddNumbers(request, timeout=timeout)

    def add_status(self, request_id: str, first: int, second: int, timeout: float = 15.0) -> grpc.StatusCode:
        """The status code of one call (OK on success), for tests that only care about the code."""
        try:
            self.add(request_id, first, second, timeout)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AdderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
