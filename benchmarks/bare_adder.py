"""Baseline: a bare gRPC SumService that only adds two numbers (no dedupe, no Kafka).

    python -m benchmarks.bare_adder --listen 127.0.0.1:PORT --processes N

N processes share the port with SO_REUSEPORT, as the adder does with SUMFLOW_ADDER_PROCESSES.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
from concurrent import futures

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc


class BareSum(sum_pb2_grpc.SumServiceServicer):
    def AddNumbers(self, request, context):
        return sum_pb2.AddNumbersResponse(
            request_id=request.request_id, result=request.first_number + request.second_number
        )


def serve(listen: str, workers: int) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[("grpc.so_reuseport", 1)],
    )
    sum_pb2_grpc.add_SumServiceServicer_to_server(BareSum(), server)
    server.add_insecure_port(listen)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=64)
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
