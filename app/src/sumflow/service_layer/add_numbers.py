"""The AddNumbers use case: de-duplicate, publish, remember the answer.

Per call: claim the request id in the de-dupe store (atomic), publish the event and wait for
Kafka's acknowledgement, then store the final record and answer. With `publish_batch_max` above 1
the events of calls ready in the same turn of the event loop share one record
(service_layer/event_batcher.py), each call still waiting for that record's acknowledgement.
When the id is already known the stored record decides (domain.idempotency.decide): return the
stored answer (duplicate), refuse other numbers (conflict), wait for a live owner that is still
publishing, or take over a pending record whose owner is gone. If Kafka does not acknowledge, the
pending record is released so a retry with the same id can publish; nothing is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from opentelemetry import trace

from sumflow.adapters.adder_ports import (
    DedupeStorePort,
    DedupeUnavailable,
    DeliveryPort,
    EventPublisherPort,
    PublishFailed,
)
from sumflow.domain.events import encode_event
from sumflow.domain.idempotency import Decision, DedupeRecord, RecordState, decide
from sumflow.domain.summation import AddCommand
from sumflow.observability.adder_telemetry import PublishTelemetry
from sumflow.observability.metrics import AdderMetrics
from sumflow.service_layer.event_batcher import EventBatcher
from sumflow.service_layer.loop_mailbox import LoopMailbox, settle_future

# How long a waiter polls a record owned by another process: starts short, doubles to the cap.
_POLL_FIRST_SECONDS = 0.002
_POLL_MAX_SECONDS = 0.05
_MAX_ROUNDS = 10_000  # safety bound on claim/inspect rounds of one call
_ACK_MARGIN_SECONDS = 1.0  # the producer's own delivery timeout normally fires first


@dataclass(frozen=True, slots=True)
class AddResult:
    request_id: str
    result: int
    duplicate: bool


class AddFailed(Exception):
    """Base of the use case's refusals; `message` is the client-facing one-liner."""


class Conflict(AddFailed):
    """Same id as an earlier call with other numbers (ALREADY_EXISTS)."""


class NotPublished(AddFailed):
    """Kafka did not acknowledge, or the store is unavailable; nothing recorded (UNAVAILABLE)."""


class DeadlineReached(AddFailed):
    """The client's deadline passed before the answer was known (DEADLINE_EXCEEDED)."""


class AddNumbersHandler:
    def __init__(
        self,
        store: DedupeStorePort,
        publisher: EventPublisherPort,
        *,
        topic: str,
        publish_timeout_seconds: float,
        pending_timeout_seconds: float,
        metrics: AdderMetrics | None = None,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.time,
        publish_batch_max: int = 1,
    ) -> None:
        self._store = store
        self._publisher = publisher
        # Above 1: the summations ready in one turn of the loop share one record (v2), up to this many.
        self._batcher = (
            EventBatcher(publisher, max_events=publish_batch_max, clock=clock) if publish_batch_max > 1 else None
        )
        self._publish_timeout = publish_timeout_seconds
        self._pending_timeout = pending_timeout_seconds
        # tracer None: tracing off, no spans and no trace headers (saves ~0.1 ms a call)
        self._telemetry = PublishTelemetry(metrics, tracer, topic)
        self._clock = clock
        self._pid = os.getpid()
        self._owner_prefix = f"{self._pid}-{secrets.token_hex(4)}-"
        self._counter = itertools.count()
        # Live calls of this process by owner token, registered before their claim is written so
        # that a same-process repeat never mistakes a just-claimed record for a dead owner's; each
        # with the wake-ups of the calls waiting for its outcome.
        self._live: dict[str, list[Callable[[], None]]] = {}
        self._live_lock = threading.Lock()
        self._mailboxes: dict[asyncio.AbstractEventLoop, LoopMailbox] = {}

    async def add(self, cmd: AddCommand, deadline: float | None = None) -> AddResult:
        """Run one call on the event loop; `deadline` is a time.monotonic() instant or None (no client deadline).

        The claim's commit and Kafka's acknowledgement are futures resolved from the store's writer
        thread and the producer's thread. A known id (repeat, conflict, wait, take-over) is decided
        from the stored record; waiting for another owner awaits its outcome without blocking the loop.
        """
        give_up = deadline if deadline is not None else time.monotonic() + self._pending_timeout + self._publish_timeout
        request_id = cmd.request_id
        owner = self._register()
        handed_over = False  # True once _publish owns the outcome (and the _forget)
        try:
            for _ in range(_MAX_ROUNDS):
                record = DedupeRecord.pending(cmd, owner, self._pid, self._clock())
                if await self._await_write(self._store.claim_later, request_id, record):
                    self._telemetry.dedupe("new")
                    handed_over = True
                    return await self._publish(cmd, record, deadline)
                existing = self._store.get(request_id)
                if existing is None:
                    continue  # expired or released between the two reads: claim again
                decision = decide(
                    existing,
                    cmd,
                    now=self._clock(),
                    pending_timeout=self._pending_timeout,
                    owner_alive=self._owner_alive(request_id, existing),
                )
                if decision is Decision.DUPLICATE:
                    self._telemetry.dedupe("duplicate")
                    return AddResult(request_id, existing.result, True)
                if decision is Decision.CONFLICT:
                    self._telemetry.dedupe("conflict")
                    raise Conflict(
                        f"request_id {request_id} was already used with other numbers "
                        f"({existing.first_number}, {existing.second_number})"
                    )
                if decision is Decision.TAKE_OVER:
                    if await self._await_write(self._store.replace_later, request_id, existing, record):
                        self._telemetry.dedupe("takeover")
                        handed_over = True
                        return await self._publish(cmd, record, deadline)
                    continue
                await self._wait_for_change(request_id, existing, give_up, deadline)
        except DedupeUnavailable as exc:
            raise NotPublished(f"de-duplication store unavailable, retry with the same request_id: {exc}") from exc
        finally:
            if not handed_over:
                self._forget(owner)
        raise NotPublished("request_id is contended, retry with the same request_id")

    async def _await_write(self, write_later: Callable[..., None], *args: Any) -> bool:
        """Await a store write that reports from the writer thread (`claim_later`, `replace_later`)."""
        loop = asyncio.get_running_loop()
        mailbox = self._mailbox(loop)
        future: asyncio.Future[bool] = loop.create_future()
        write_later(*args, lambda done, error: mailbox.post(settle_future, future, done, error))
        return await future

    def _mailbox(self, loop: asyncio.AbstractEventLoop) -> LoopMailbox:
        """The mailbox of `loop` (one per loop; the adder has one)."""
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes.setdefault(loop, LoopMailbox(loop))
        return mailbox

    def _register(self) -> str:
        """A new owner token, registered as live before its claim is written."""
        owner = self._owner_prefix + str(next(self._counter))
        with self._live_lock:
            self._live[owner] = []
        return owner

    # -- publishing -------------------------------------------------------------------------

    async def _publish(self, cmd: AddCommand, record: DedupeRecord, deadline: float | None) -> AddResult:
        request_id = cmd.request_id
        outcome_owned = False
        try:
            with self._telemetry.publish_span(request_id) as span:
                delivery = self._send(cmd)
                loop = asyncio.get_running_loop()
                mailbox = self._mailbox(loop)
                acked: asyncio.Future[bool] = loop.create_future()
                delivery.on_resolved(lambda error: mailbox.post(settle_future, acked, True, error))
                # A timer handle, not asyncio.wait_for (which wraps the future in one more task).
                timer = loop.call_later(
                    max(0.0, self._ack_budget(deadline)), settle_future, acked, None, TimeoutError()
                )
                try:
                    await acked
                except PublishFailed as exc:
                    outcome_owned = True
                    self._refuse_failed(request_id, record, exc, span)
                except TimeoutError:
                    outcome_owned = True
                    self._refuse_unacked(request_id, record, delivery, span, deadline)
                except asyncio.CancelledError:
                    # The RPC was cancelled (client gone): the delivery's own outcome settles the store.
                    outcome_owned = True
                    self._leave_to_delivery(request_id, record, delivery)
                    raise
                finally:
                    timer.cancel()
                self._telemetry.produce_acked(span, delivery.latency_seconds)
            outcome_owned = True
            self._settle(request_id, record, None)
        finally:
            if not outcome_owned:
                self._settle(request_id, record, PublishFailed("other", "publish aborted"))
        return AddResult(request_id, cmd.result, False)

    def _send(self, cmd: AddCommand) -> DeliveryPort:
        headers = self._telemetry.record_headers()
        if self._batcher is not None and not headers:  # a traced call keeps its own record (its traceparent)
            return self._batcher.publish(cmd)
        value = encode_event(cmd, int(self._clock() * 1000))
        return self._publisher.publish(cmd.request_id.encode(), value, headers)

    def _ack_budget(self, deadline: float | None) -> float:
        budget = self._publish_timeout + _ACK_MARGIN_SECONDS
        if deadline is not None:
            budget = min(budget, deadline - time.monotonic())
        return budget

    def _refuse_failed(self, request_id: str, record: DedupeRecord, exc: PublishFailed, span: trace.Span) -> NoReturn:
        """Kafka refused the event: release the claim, count it, answer UNAVAILABLE."""
        self._settle(request_id, record, exc)
        self._telemetry.produce_failed(span, exc.reason, str(exc))
        raise NotPublished(f"event not acknowledged by Kafka, retry with the same request_id: {exc}") from exc

    def _refuse_unacked(
        self, request_id: str, record: DedupeRecord, delivery: DeliveryPort, span: trace.Span, deadline: float | None
    ) -> NoReturn:
        """Still in flight: whoever resolves it settles the store; waiters wait for that."""
        self._leave_to_delivery(request_id, record, delivery)
        self._telemetry.produce_unacked(span)
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineReached("deadline exceeded while waiting for Kafka's acknowledgement")
        raise NotPublished("Kafka did not acknowledge in time, retry with the same request_id")

    def _leave_to_delivery(self, request_id: str, record: DedupeRecord, delivery: DeliveryPort) -> None:
        delivery.on_resolved(lambda error: self._settle(request_id, record, error))

    def _settle(self, request_id: str, record: DedupeRecord, error: PublishFailed | None) -> None:
        """Record the outcome of a publish in the store and wake same-process waiters (once).

        An acknowledged event's done record is written without waiting (the reply goes out now):
        until that commit the id stays pending with this live owner, so a repeat waits for it.
        """
        try:
            if error is None:
                self._store.complete_later(request_id, record.done(), lambda _error: self._forget(record.owner))
                return
            self._store.release(request_id, record.owner)
        except DedupeUnavailable:
            pass  # the pending record stays; another call takes it over after the pending timeout
        self._forget(record.owner)

    def _forget(self, owner: str) -> None:
        """The call is over (the store has its outcome): drop it from the live calls, wake its waiters."""
        with self._live_lock:
            waiters = self._live.pop(owner, None)
        for wake in waiters or ():
            wake()

    # -- waiting on another owner -----------------------------------------------------------

    def _owner_alive(self, request_id: str, existing: DedupeRecord) -> bool:
        if existing.state is not RecordState.PENDING:
            return True
        if existing.pid == self._pid:
            # Same pid but not one of our live calls: a previous process that had our pid.
            with self._live_lock:
                return existing.owner in self._live
        try:
            os.kill(existing.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    async def _wait_for_change(
        self, request_id: str, existing: DedupeRecord, give_up: float, deadline: float | None
    ) -> None:
        """Return once the pending record changes (or is gone), or raise when time is up.

        The owner is a live call of this process: await its outcome. Another process: poll the store.
        """
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[bool] = loop.create_future()
        mailbox = self._mailbox(loop)
        with self._live_lock:
            waiters = self._live.get(existing.owner)
            if waiters is not None:
                waiters.append(lambda: mailbox.post(settle_future, settled, True, None))
        if waiters is not None:
            remaining = give_up - time.monotonic()
            if remaining > 0:
                timer = loop.call_later(remaining, settle_future, settled, False, None)
                try:
                    if await settled:
                        return
                finally:
                    timer.cancel()
        else:
            pause = _POLL_FIRST_SECONDS
            while time.monotonic() + pause < give_up:
                await asyncio.sleep(pause)
                if self._store.get(request_id) != existing:
                    return
                pause = min(pause * 2, _POLL_MAX_SECONDS)
            if self._store.get(request_id) != existing:
                return
        if deadline is not None:
            raise DeadlineReached("deadline exceeded while another call with this request_id was publishing")
        raise NotPublished("another call with this request_id is still publishing, retry with the same request_id")
