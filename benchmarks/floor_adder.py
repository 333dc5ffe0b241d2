"""Baseline: the least work the adder's mandated libraries allow, to bound what sumflow-adder can reach.

    python -m benchmarks.floor_adder --listen 127.0.0.1:PORT --bootstrap HOST:PORT --topic T --dir D \
        [--no-kafka] [--no-dedupe]

A grpc.aio AddNumbers server that does, per call, only what the brief requires of every new call and
nothing else: claim the id in a persistent diskcache (one `add`), publish one event with an
idempotent acks=all kafka-python producer and wait for the acknowledgement, then store the answer
(one `set`). Writes go through one writer thread that commits all queued ones in one SQLite
transaction; commits and acknowledgements reach the loop through one wake-up per burst. No validation, repeats, metrics,
logs, traces or failure handling: it is a measuring stick, not a service. `--no-kafka` /
`--no-dedupe` drop one of the two so a benchmark can tell their costs apart.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import diskcache
import grpc
from kafka import KafkaProducer

from sumflow.service_layer.loop_mailbox import LoopMailbox, settle_future
from sumflow.v1 import sum_pb2, sum_pb2_grpc


class _Writes:
    """Claims and answers committed by one writer thread, all queued ones in one transaction (group
    commit, as the adder's de-dupe store does: SQLite runs without the GIL beside the event loop)."""

    def __init__(self, cache: diskcache.Cache | None) -> None:
        self._cache = cache
        self._cond = threading.Condition()
        self._queued: list[tuple[str, Any, asyncio.Future[bool] | None]] = []
        self._mailbox: LoopMailbox | None = None
        if cache is not None:
            threading.Thread(target=self._run, name="floor-writer", daemon=True).start()

    def queue(self, key: str, value: Any, future: asyncio.Future[bool] | None) -> None:
        if self._cache is None:
            if future is not None and not future.done():
                future.set_result(True)
            return
        if future is not None and self._mailbox is None:
            self._mailbox = LoopMailbox(asyncio.get_running_loop())
        with self._cond:
            self._queued.append((key, value, future))
            if len(self._queued) == 1:
                self._cond.notify()

    def _run(self) -> None:
        assert self._cache is not None
        while True:
            with self._cond:
                while not self._queued:
                    self._cond.wait()
                queued, self._queued = self._queued, []
            claimed: list[tuple[asyncio.Future[bool], bool]] = []
            with self._cache.transact(retry=True):
                for key, value, future in queued:
                    if future is None:
                        self._cache.set(key, value, expire=86400)
                    else:
                        claimed.append((future, bool(self._cache.add(key, value, expire=86400))))
            for future, added in claimed:
                assert self._mailbox is not None
                self._mailbox.post(settle_future, future, added, None)


class FloorSum(sum_pb2_grpc.SumServiceServicer):
    def __init__(self, writes: _Writes, producer: KafkaProducer | None, topic: str) -> None:
        self._writes = writes
        self._producer = producer
        self._topic = topic
        self._acks: LoopMailbox | None = None

    async def AddNumbers(self, request: sum_pb2.AddNumbersRequest, context: Any) -> sum_pb2.AddNumbersResponse:
        loop = asyncio.get_running_loop()
        rid = request.request_id
        result = request.first_number + request.second_number
        claimed: asyncio.Future[bool] = loop.create_future()
        self._writes.queue(rid, (request.first_number, request.second_number, result, "pending"), claimed)
        await claimed
        if self._producer is not None:
            if self._acks is None:
                self._acks = LoopMailbox(loop)
            acks = self._acks
            acked: asyncio.Future[bool] = loop.create_future()
            value = b'{"request_id":"%s","result":%d,"produced_at_ms":%d}' % (
                rid.encode(),
                result,
                int(time.time() * 1000),
            )
            self._producer.send(self._topic, value=value, key=rid.encode()).add_callback(
                lambda _m: acks.post(settle_future, acked, True, None)
            )
            await acked
        self._writes.queue(rid, (request.first_number, request.second_number, result, "done"), None)
        return sum_pb2.AddNumbersResponse(request_id=rid, result=result)


async def serve(args: argparse.Namespace) -> None:
    cache = None
    if not args.no_dedupe:
        cache = diskcache.Cache(
            str(Path(args.dir)), eviction_policy="least-recently-stored", statistics=False, tag_index=False
        )
        cache.cull_limit = 0
    producer = None
    if not args.no_kafka:
        producer = KafkaProducer(
            bootstrap_servers=[args.bootstrap],
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
            metrics_enabled=False,
        )
        producer.partitions_for(args.topic)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    sum_pb2_grpc.add_SumServiceServicer_to_server(FloorSum(_Writes(cache), producer, args.topic), server)
    server.add_insecure_port(args.listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--topic", default="")
    parser.add_argument("--dir", default="")
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--no-dedupe", action="store_true")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
