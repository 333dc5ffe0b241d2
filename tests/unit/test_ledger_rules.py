import uuid

import orjson

from sumflow.domain.events import encode_event
from sumflow.domain.ledger import LedgerState, Record, apply_batch
from sumflow.domain.summation import validate_add


def _record(partition, offset, a, b, rid=None):
    cmd = validate_add(rid or str(uuid.uuid4()), a, b)
    return Record(partition, offset, cmd.request_id.encode(), encode_event(cmd, 1))


def _none_applied(ids):
    return set()


def test_batch_adds_results_and_advances_offsets():
    records = [_record(0, 0, 1, 2), _record(1, 0, 10, 20), _record(0, 1, -4, 0)]
    out = apply_batch(LedgerState(), records, _none_applied)
    assert out.state.total == 3 + 30 - 4
    assert out.state.applied == 3
    assert out.state.next_offsets == {0: 2, 1: 1}
    assert [a.offset for a in out.applied] == [0, 0, 1]


def test_redelivered_offsets_are_ignored():
    state = LedgerState(total=100, applied=5, next_offsets={0: 10})
    out = apply_batch(state, [_record(0, 9, 1, 1), _record(0, 10, 2, 2)], _none_applied)
    assert out.redelivered == 1
    assert out.state.total == 104
    assert out.state.applied == 6
    assert out.state.next_offsets == {0: 11}


def test_request_id_seen_in_window_or_in_batch_is_dropped_once():
    rid = str(uuid.uuid4())
    known = str(uuid.uuid4())
    records = [_record(0, 0, 1, 1, rid), _record(1, 0, 1, 1, rid), _record(0, 1, 5, 5, known)]
    out = apply_batch(LedgerState(), records, lambda ids: {i for i in ids if i == known})
    assert out.state.total == 2
    assert out.state.applied == 1
    assert len(out.duplicates) == 2
    assert out.state.next_offsets == {0: 2, 1: 1}


def test_invalid_records_are_rejected_but_offsets_move_on():
    bad = Record(0, 0, None, b"garbage")
    wrong = Record(0, 1, None, orjson.dumps({"v": 1, "request_id": str(uuid.uuid4())}))
    out = apply_batch(LedgerState(), [bad, wrong, _record(0, 2, 2, 3)], _none_applied)
    assert [r.reason for r in out.rejected] == ["value is not valid JSON", "missing field first_number"]
    assert out.state.total == 5
    assert out.state.next_offsets == {0: 3}


def test_input_state_is_not_mutated():
    state = LedgerState(total=1, applied=1, next_offsets={0: 1})
    apply_batch(state, [_record(0, 1, 1, 1)], _none_applied)
    assert state == LedgerState(total=1, applied=1, next_offsets={0: 1})


def _outcome_view(out):
    return (
        out.state,
        [tuple(a) for a in out.applied],
        [tuple(a) for a in out.duplicates],
        out.redelivered,
        [(r.record.partition, r.record.offset, r.reason) for r in out.rejected],
    )


def test_decoded_batches_give_the_same_outcome_as_record_by_record():
    """apply_decoded (decode in the consumer thread, apply in the ledger thread) == apply_batch."""
    import random

    from sumflow.domain.ledger import DecodedBatch, apply_decoded

    rng = random.Random(5)
    known = [str(uuid.uuid4()) for _ in range(5)]
    for _ in range(200):
        stored = {p: rng.randrange(0, 6) for p in range(2) if rng.random() < 0.7}
        state = LedgerState(total=rng.randrange(100), applied=3, next_offsets=stored)
        polls = []
        for _ in range(rng.randrange(1, 4)):
            poll = []
            for p in rng.sample([0, 1], 2):
                start = rng.randrange(0, 8)
                for offset in range(start, start + rng.randrange(0, 4)):
                    kind = rng.random()
                    if kind < 0.15:
                        poll.append(Record(p, offset, None, b"garbage"))
                    else:
                        rid = rng.choice(known) if kind < 0.4 else None
                        poll.append(_record(p, offset, rng.randrange(-9, 9), 1, rid))
            polls.append(poll)
        batch = DecodedBatch()
        for poll in polls:
            batch.add(poll)
        records = [r for poll in polls for r in poll]
        window = set(rng.sample(known, 2))

        def lookup(ids, window=window):
            return {i for i in ids if i in window}

        assert _outcome_view(apply_decoded(state, batch, lookup)) == _outcome_view(apply_batch(state, records, lookup))
