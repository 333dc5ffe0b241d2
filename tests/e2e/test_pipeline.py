"""End to end on the real broker: numbers go in through the adder's gRPC API and come out of the
accumulator's GET /api/total, with both services running as real processes."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from harness.kafka import KafkaBroker
from harness.stack import SumflowStack, sumflow_stack
from harness.topics import read_events

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

SEED = random.randrange(1 << 32)


@pytest.fixture(scope="module")
def stack(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SumflowStack]:
    print(f"test_pipeline seed={SEED}")
    # One partition: events are applied in produce order, so once a marker event is applied every
    # event acknowledged before it is applied too (see `_settle`).
    with sumflow_stack(kafka_broker.bootstrap, tmp_path_factory.mktemp("pipeline"), partitions=1) as running:
        yield running


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


def _rid() -> str:
    return str(uuid.uuid4())


def _settle(stack: SumflowStack) -> dict[str, int]:
    """Publish a marker (0 + 0, new id) and wait until it is applied. On one partition, every event
    the adder acknowledged before the marker is applied by then, including any wrongly published
    extra event, so the returned total is exact. The marker adds 1 to `applied`, 0 to `total`."""
    rid = _rid()
    stack.adder.add(rid, 0, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = stack.accumulator.get_json("/api/summations?limit=1")
        assert status == 200, body
        if body["summations"] and body["summations"][0]["request_id"] == rid:
            return stack.accumulator.total()
        time.sleep(0.1)
    raise AssertionError(f"marker {rid} not applied within 60 s:\n{stack.accumulator.log_tail()}")


def _events_for(stack: SumflowStack, rid: str) -> list[dict]:
    return [e for e in read_events(stack.adder.env["SUMFLOW_KAFKA_BOOTSTRAP"], stack.topic) if e["request_id"] == rid]


def test_numbers_in_through_grpc_come_out_in_the_total(stack: SumflowStack, rng: random.Random) -> None:
    before = _settle(stack)
    pairs = [(rng.randint(-(10**12), 10**12), rng.randint(-(10**12), 10**12)) for _ in range(40)]
    for first, second in pairs:
        rid = _rid()
        reply = stack.adder.add(rid, first, second)
        assert reply.result == first + second
        assert reply.request_id == rid
        assert reply.duplicate is False
    after = stack.accumulator.wait_applied(before["applied"] + len(pairs))
    assert after == {
        "total": before["total"] + sum(a + b for a, b in pairs),
        "applied": before["applied"] + len(pairs),
    }
    status, final = stack.accumulator.get_json("/api/final")
    assert status == 200 and final == after["total"]
    status, recent = stack.accumulator.get_json("/api/summations?limit=5")
    assert status == 200
    newest_first = [(row["first_number"], row["second_number"], row["result"]) for row in recent["summations"]]
    assert newest_first == [(a, b, a + b) for a, b in reversed(pairs[-5:])]


def test_a_repeated_request_is_a_duplicate_and_counted_once(stack: SumflowStack) -> None:
    before = _settle(stack)
    rid = _rid()
    first = stack.adder.add(rid, 1000, 234)
    again = stack.adder.add(rid, 1000, 234)
    upper = stack.adder.add(rid.upper(), 1000, 234)  # any case names the same id
    assert (first.duplicate, again.duplicate, upper.duplicate) == (False, True, True)
    assert first.result == again.result == upper.result == 1234
    assert upper.request_id == rid  # canonical lower-case
    after = _settle(stack)
    assert after == {"total": before["total"] + 1234, "applied": before["applied"] + 2}
    assert len(_events_for(stack, rid)) == 1


def test_same_id_with_other_numbers_is_already_exists(stack: SumflowStack) -> None:
    rid = _rid()
    assert stack.adder.add(rid, 5, 6).result == 11
    with pytest.raises(grpc.RpcError) as err:
        stack.adder.add(rid, 5, 7)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # The stored answer is unchanged by the refused call.
    assert stack.adder.add(rid, 5, 6).duplicate is True


def test_fifty_concurrent_calls_with_one_id_publish_one_event(stack: SumflowStack) -> None:
    rid = _rid()
    before = _settle(stack)
    barrier = threading.Barrier(50)
    replies: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait(10)
        try:
            reply = stack.adder.add(rid, 40, 2, timeout=30)
            with lock:
                replies.append((reply.result, reply.duplicate))
        except grpc.RpcError as exc:  # pragma: no cover - reported by the assert below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert Counter(replies) == Counter({(42, False): 1, (42, True): 49})
    after = _settle(stack)
    assert after == {"total": before["total"] + 42, "applied": before["applied"] + 2}
    assert len(_events_for(stack, rid)) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [(INT64_MAX, 1), (INT64_MIN, -1), (INT64_MAX, INT64_MAX), (INT64_MIN, INT64_MIN)],
)
def test_a_sum_outside_int64_is_out_of_range_and_publishes_nothing(
    stack: SumflowStack, first: int, second: int
) -> None:
    rid = _rid()
    with pytest.raises(grpc.RpcError) as err:
        stack.adder.add(rid, first, second)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    # Nothing was recorded: the same id is free for a valid call.
    assert stack.adder.add(rid, first, 0).result == first
    assert [e["result"] for e in _events_for(stack, rid)] == [first]


def test_the_int64_edges_themselves_are_accepted(stack: SumflowStack) -> None:
    before = _settle(stack)
    assert stack.adder.add(_rid(), INT64_MAX - 5, 5).result == INT64_MAX
    assert stack.adder.add(_rid(), INT64_MIN + 5, -5).result == INT64_MIN
    after = _settle(stack)
    assert after == {"total": before["total"] + INT64_MAX + INT64_MIN, "applied": before["applied"] + 3}


@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "not-a-uuid",
        "1234",
        "123e4567-e89b-12d3-a456-42661417400",  # one digit short
        "123e4567-e89b-12d3-a456-4266141740000",  # one digit long
        "123e4567-e89b-12d3-a456-42661417400g",  # not hex
        " 123e4567-e89b-12d3-a456-426614174000",
        "'; DROP TABLE ledger; --",
        "\u00e9" * 36,
    ],
)
def test_malformed_request_ids_are_invalid_argument(stack: SumflowStack, request_id: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stack.adder.add(request_id, 1, 2)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()


def test_refused_calls_leave_the_total_alone(stack: SumflowStack) -> None:
    before = _settle(stack)
    for bad in ("nope", "", "x" * 5000):
        assert stack.adder.client.add_status(bad, 1, 1) == grpc.StatusCode.INVALID_ARGUMENT
    assert stack.adder.client.add_status(_rid(), INT64_MAX, 1) == grpc.StatusCode.OUT_OF_RANGE
    after = _settle(stack)
    assert after == {"total": before["total"], "applied": before["applied"] + 1}
