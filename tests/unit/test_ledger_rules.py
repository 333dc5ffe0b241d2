import uuid

import orjson

from sumflow.domain.events import InvalidEvent, InvalidReason, decode_event, encode_event, encode_events
from sumflow.domain.ledger import DecodedBatch, LedgerState, Record, apply_decoded
from sumflow.domain.summation import validate_add


def _record(partition, offset, a, b, rid=None):
    cmd = validate_add(rid or str(uuid.uuid4()), a, b)
    return Record(partition, offset, cmd.request_id.encode(), encode_event(cmd, 1))


def _batch_record(partition, offset, *pairs, rids=()):
    """A v2 record of several summations (a, b); `rids` names the first ones' request ids."""
    ids = [*rids, *(str(uuid.uuid4()) for _ in pairs)][: len(pairs)]
    cmds = [validate_add(rid, a, b) for (a, b), rid in zip(pairs, ids, strict=True)]
    return Record(partition, offset, cmds[0].request_id.encode(), encode_events(cmds, 1))


def _none_applied(ids):
    return set()


def apply_polls(state, polls, already_applied):
    """What the consumer does: decode the polls into one batch, then apply it."""
    batch = DecodedBatch()
    for poll in polls:
        batch.add(poll)
    return apply_decoded(state, batch, already_applied)


def apply_one_poll(state, records, already_applied):
    return apply_polls(state, [records], already_applied)


def test_batch_adds_results_and_advances_offsets():
    records = [_record(0, 0, 1, 2), _record(1, 0, 10, 20), _record(0, 1, -4, 0)]
    out = apply_one_poll(LedgerState(), records, _none_applied)
    assert out.state.total == 3 + 30 - 4
    assert out.state.applied == 3
    assert out.state.next_offsets == {0: 2, 1: 1}
    assert [a.offset for a in out.applied] == [0, 0, 1]


def test_redelivered_offsets_are_ignored():
    state = LedgerState(total=100, applied=5, next_offsets={0: 10})
    out = apply_one_poll(state, [_record(0, 9, 1, 1), _record(0, 10, 2, 2)], _none_applied)
    assert out.redelivered == 1
    assert out.state.total == 104
    assert out.state.applied == 6
    assert out.state.next_offsets == {0: 11}


def test_request_id_seen_in_window_or_in_batch_is_dropped_once():
    rid = str(uuid.uuid4())
    known = str(uuid.uuid4())
    records = [_record(0, 0, 1, 1, rid), _record(1, 0, 1, 1, rid), _record(0, 1, 5, 5, known)]
    out = apply_one_poll(LedgerState(), records, lambda ids: {i for i in ids if i == known})
    assert out.state.total == 2
    assert out.state.applied == 1
    assert len(out.duplicates) == 2
    assert out.state.next_offsets == {0: 2, 1: 1}


def test_invalid_records_are_rejected_but_offsets_move_on():
    bad = Record(0, 0, None, b"garbage")
    wrong = Record(0, 1, None, orjson.dumps({"v": 1, "request_id": str(uuid.uuid4())}))
    out = apply_one_poll(LedgerState(), [bad, wrong, _record(0, 2, 2, 3)], _none_applied)
    assert [(r.code, r.reason) for r in out.rejected] == [
        (InvalidReason.INVALID_JSON, "value is not valid JSON"),
        (InvalidReason.MISSING_FIELD, "missing field first_number"),
    ]
    assert out.state.total == 5
    assert out.state.next_offsets == {0: 3}


def test_v2_record_applies_each_summation_at_its_offset_and_drops_repeated_ids():
    known, again = str(uuid.uuid4()), str(uuid.uuid4())
    records = [
        _record(0, 0, 1, 1, again),
        _batch_record(0, 1, (1, 2), (3, 4), (100, 0), (5, 5), rids=(str(uuid.uuid4()), again, known)),
        _record(0, 2, 7, 0),
    ]
    out = apply_one_poll(LedgerState(), records, lambda ids: {i for i in ids if i == known})
    assert [(e.offset, e.result) for e in out.applied] == [(0, 2), (1, 3), (1, 10), (2, 7)]
    assert [e.request_id for e in out.duplicates] == [again, known]
    assert (out.state.total, out.state.applied, out.state.next_offsets) == (22, 4, {0: 3})


def test_v2_record_below_the_stored_offset_is_skipped_whole():
    state = LedgerState(total=10, applied=1, next_offsets={0: 5})
    out = apply_one_poll(
        state, [_batch_record(0, 4, (1, 1), (2, 2)), _batch_record(0, 5, (3, 3), (4, 4))], _none_applied
    )
    assert [e.result for e in out.applied] == [6, 8]
    assert (out.state.total, out.state.applied, out.state.next_offsets) == (24, 3, {0: 6})


def test_v2_record_with_one_wrong_summation_is_rejected_whole():
    good = validate_add(str(uuid.uuid4()), 1, 2)
    value = orjson.dumps(
        {
            "v": 2,
            "produced_at_ms": 1,
            "events": [
                {"request_id": good.request_id, "first_number": 1, "second_number": 2, "result": 3},
                {"request_id": str(uuid.uuid4()), "first_number": 1, "second_number": 2, "result": 4},
            ],
        }
    )
    out = apply_one_poll(LedgerState(), [Record(0, 0, None, value), _record(0, 1, 2, 2)], _none_applied)
    assert [(r.record.offset, r.code) for r in out.rejected] == [(0, InvalidReason.WRONG_RESULT)]
    assert (out.state.total, out.state.applied, out.state.next_offsets) == (4, 1, {0: 2})


def test_input_state_is_not_mutated():
    state = LedgerState(total=1, applied=1, next_offsets={0: 1})
    apply_one_poll(state, [_record(0, 1, 1, 1)], _none_applied)
    assert state == LedgerState(total=1, applied=1, next_offsets={0: 1})


def _outcome_view(out):
    return (
        out.state,
        list(out.applied),
        list(out.duplicates),
        out.redelivered,
        [(r.record.partition, r.record.offset, r.code, r.reason) for r in out.rejected],
    )


def _record_by_record(state, records, already_applied):
    """The ledger rule stated one record at a time (the reference for the batched implementation)."""
    offsets = dict(state.next_offsets)
    fresh, rejected, redelivered = [], [], 0
    for record in records:
        if record.offset < offsets.get(record.partition, 0):
            redelivered += 1
            continue
        offsets[record.partition] = record.offset + 1
        try:
            fresh.extend(decode_event(record.value, record.partition, record.offset))
        except InvalidEvent as exc:
            rejected.append((record.partition, record.offset, exc.code, exc.reason))
    seen = already_applied([ev.request_id for ev in fresh])
    applied, duplicates = [], []
    for ev in fresh:
        (duplicates if ev.request_id in seen else applied).append(ev)
        seen.add(ev.request_id)
    total = state.total + sum(ev.result for ev in applied)
    return (LedgerState(total, state.applied + len(applied), offsets), applied, duplicates, redelivered, rejected)


def test_decoded_batches_give_the_same_outcome_as_record_by_record():
    """apply_decoded (polls decoded in the consumer thread, applied in the ledger thread) follows the rule."""
    import random

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
                    elif kind > 0.75:  # a v2 record, sometimes repeating a known id
                        rids = [rng.choice(known)] if kind > 0.9 else []
                        pairs = [(rng.randrange(-9, 9), 1) for _ in range(rng.randrange(1, 4))]
                        poll.append(_batch_record(p, offset, *pairs, rids=rids))
                    else:
                        rid = rng.choice(known) if kind < 0.4 else None
                        poll.append(_record(p, offset, rng.randrange(-9, 9), 1, rid))
            polls.append(poll)
        records = [r for poll in polls for r in poll]
        window = set(rng.sample(known, 2))

        def lookup(ids, window=window):
            return {i for i in ids if i in window}

        assert _outcome_view(apply_polls(state, polls, lookup)) == _record_by_record(state, records, lookup)
