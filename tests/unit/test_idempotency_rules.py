import uuid

from sumflow.domain.idempotency import Decision, DedupeRecord, RecordState, decide
from sumflow.domain.summation import validate_add

NOW = 1_000_000.0


def _cmd(a=1, b=2):
    return validate_add(str(uuid.uuid4()), a, b)


def _pending(cmd, started_at=NOW):
    return DedupeRecord.pending(cmd, owner="call-1", pid=123, now=started_at)


def test_done_record_with_same_numbers_is_a_duplicate():
    cmd = _cmd()
    assert decide(_pending(cmd).done(), cmd, now=NOW, pending_timeout=30, owner_alive=True) is Decision.DUPLICATE


def test_other_numbers_conflict_whether_pending_or_done():
    first = _cmd(1, 2)
    other = validate_add(first.request_id, 2, 1)
    for record in (_pending(first), _pending(first).done()):
        assert decide(record, other, now=NOW, pending_timeout=30, owner_alive=True) is Decision.CONFLICT


def test_live_pending_owner_means_wait():
    cmd = _cmd()
    assert decide(_pending(cmd), cmd, now=NOW + 1, pending_timeout=30, owner_alive=True) is Decision.WAIT


def test_dead_owner_or_stale_pending_is_taken_over():
    cmd = _cmd()
    assert decide(_pending(cmd), cmd, now=NOW + 1, pending_timeout=30, owner_alive=False) is Decision.TAKE_OVER
    assert decide(_pending(cmd), cmd, now=NOW + 31, pending_timeout=30, owner_alive=True) is Decision.TAKE_OVER


def test_record_round_trips_through_a_tuple():
    record = _pending(_cmd(-5, 7)).done()
    again = DedupeRecord.from_tuple(record.to_tuple())
    assert again == record
    assert again.state is RecordState.DONE
    assert again.result == 2
