"""Summations published together: one Kafka record for all the calls ready in one turn of the event loop.

Kafka-python's per-record work (building the record on the event loop, then the sender thread's
batching, request building and one future callback per record) was the largest share of the adder's
CPU per call (BENCHMARKS.md, "Profile"). The calls whose claims commit together reach `publish` in
the same turn of the loop; the first one schedules a flush with `call_soon`, which runs after the
others, and the flush hands all of them to the producer as one record: a v1 event when there is one
summation, a v2 record (`domain.events.encode_events`, docs/events.md) when there are several, at most
`max_events` per record. Every call of a record waits for the same acknowledgement (`GroupDelivery`),
so an accepted call is still acknowledged with `acks=all` before its reply, and a failed record fails
all of its calls (each retries with its own id; a summation published twice counts once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sumflow.adapters.adder_ports import DeliveryPort, EventPublisherPort, PublishFailed, ResolvesOnce
from sumflow.domain.events import encode_event, encode_events
from sumflow.domain.summation import AddCommand
from sumflow.service_layer.loop_mailbox import LoopMailbox


class GroupDelivery(ResolvesOnce):
    """The delivery of every call of one record: resolves when the record's delivery does.

    Callbacks may be registered (on the loop) before the record is handed to the producer.
    """

    __slots__ = ("_delivery",)

    def __init__(self) -> None:
        super().__init__()
        self._delivery: DeliveryPort | None = None

    def follow(self, delivery: DeliveryPort) -> None:
        self._delivery = delivery
        delivery.on_resolved(self._resolve)

    @property
    def latency_seconds(self) -> float:
        return self._delivery.latency_seconds if self._delivery is not None else 0.0


class EventBatcher:
    """Collects the summations published on the event loop into records (use it on the loop only).

    A record goes to the producer at the end of the turn of the loop in which its first summation
    arrived, unless `max_in_flight` records sent less than `hold_seconds` ago are still waiting for
    Kafka's acknowledgement: then the summations gather until one of those is acknowledged, or is
    older than that, or `max_events` are waiting. The time bound keeps records flowing when Kafka
    does not answer (a broker down, a wedged producer that the next publish replaces): the calls
    then fail on their own ack budget, as without batching.
    """

    def __init__(
        self,
        publisher: EventPublisherPort,
        *,
        max_events: int,
        max_in_flight: int = 2,
        hold_seconds: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events < 2:
            raise ValueError("max_events below 2: publish one v1 event per call instead")
        self._publisher = publisher
        self._max_events = max_events
        self._max_in_flight = max_in_flight
        self._hold_seconds = hold_seconds
        self._clock = clock
        self._pending: list[AddCommand] = []
        self._delivery = GroupDelivery()
        self._in_flight = 0
        self._mailbox: LoopMailbox | None = None

    def publish(self, cmd: AddCommand) -> DeliveryPort:
        """Queue `cmd` for the next record; the delivery every call of that record waits for."""
        if self._mailbox is None:
            self._mailbox = LoopMailbox(asyncio.get_running_loop())
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush_if_free)
        self._pending.append(cmd)
        delivery = self._delivery
        if len(self._pending) >= self._max_events:
            self._flush()
        return delivery

    def _flush_if_free(self) -> None:
        if self._in_flight < self._max_in_flight:
            self._flush()

    def _slot_freed(self) -> None:  # on the loop: a record was acknowledged, or held long enough
        self._in_flight -= 1
        self._flush_if_free()

    def _flush(self) -> None:
        cmds, delivery = self._pending, self._delivery
        if not cmds:
            return  # already flushed
        self._pending, self._delivery = [], GroupDelivery()
        self._in_flight += 1
        mailbox = self._mailbox
        assert mailbox is not None
        slot = _Slot(self)
        slot.timer = asyncio.get_running_loop().call_later(self._hold_seconds, slot.free)
        delivery.on_resolved(lambda _error: mailbox.post(slot.free))
        produced_at_ms = int(self._clock() * 1000)
        value = encode_event(cmds[0], produced_at_ms) if len(cmds) == 1 else encode_events(cmds, produced_at_ms)
        try:
            delivery.follow(self._publisher.publish(cmds[0].request_id.encode(), value, []))
        except Exception as exc:  # the publisher reports Kafka's refusals itself; anything else fails the calls
            delivery._resolve(PublishFailed("other", f"event not handed to Kafka: {exc!r}"))


class _Slot:
    """A record's place among those in flight: freed once, by its acknowledgement or by the hold timer."""

    __slots__ = ("batcher", "timer")

    def __init__(self, batcher: EventBatcher) -> None:
        self.batcher: EventBatcher | None = batcher
        self.timer: asyncio.TimerHandle | None = None

    def free(self) -> None:  # on the loop
        batcher, self.batcher = self.batcher, None
        if batcher is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        batcher._slot_freed()
