"""Baseline: Python's own gRPC ceiling, a bare grpc.aio SumService that only adds (no de-dupe, no Kafka).

    python -m benchmarks.bare_aio_adder --listen 127.0.0.1:PORT [--processes N] [--workers W]

The adder's server settings, so that the ratio measures sumflow's own work per call: one grpc.aio
event loop per process, `maximum_concurrent_rpcs` = W x 64 (the adder's SUMFLOW_GRPC_WORKERS, default
64), the same receive-size cap, and N processes sharing the port with SO_REUSEPORT, as the adder does
with SUMFLOW_ADDER_PROCESSES=N.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import sys
from typing import Any

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc

CALLS_PER_WORKER = 64  # as entrypoints/adder_grpc_server.py: maximum_concurrent_rpcs = workers x this


class BareAioSum(sum_pb2_grpc.SumServiceServicer):
    async def AddNumbers(self, request: sum_pb2.AddNumbersRequest, context: Any) -> sum_pb2.AddNumbersResponse:
        return sum_pb2.AddNumbersResponse(
            request_id=request.request_id, result=request.first_number + request.second_number
        )


async def _serve(listen: str, workers: int) -> None:
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 64 * 1024)],
        maximum_concurrent_rpcs=workers * CALLS_PER_WORKER or None,  # --workers 0: no limit
    )
    sum_pb2_grpc.add_SumServiceServicer_to_server(BareAioSum(), server)
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    await server.stop(0)


def serve(listen: str, workers: int) -> None:
    asyncio.run(_serve(listen, workers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=64, help="as SUMFLOW_GRPC_WORKERS (0: no concurrency limit)")
    args = parser.parse_args()
    if args.processes == 1:
        serve(args.listen, args.workers)
        return 0
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=serve, args=(args.listen, args.workers)) for _ in range(args.processes)]
    for child in children:
        child.start()

    def stop(*_: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
