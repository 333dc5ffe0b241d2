"""`sumflow-accumulator backup` / `restore` on real state files, the way playbooks/rollback.yml uses them:
a backup of the previous release's state (schema version 1), the new release migrates the state to
version 2, and `restore --replace --if-schema-differs` brings back the version 1 state (the newer one
kept aside), then does nothing once the schemas match. The audit is cut at the committed position.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sumflow.adapters.ledger_backup import read_ledger
from sumflow.adapters.ledger_store import LedgerStore
from sumflow.entrypoints.accumulator_main import main
from tests.fixtures.ledger_v1 import write_v1_state

COMMITTED_AUDIT = b'{"request_id":"a"}\n{"request_id":"b"}\n'
UNCOMMITTED_TAIL = b'{"request_id":"c"}\n'  # appended, its batch not committed: never in a backup


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    (state / "audit").mkdir(parents=True)
    (state / "audit" / "audit-000001.jsonl").write_bytes(COMMITTED_AUDIT + UNCOMMITTED_TAIL)
    write_v1_state(state / "state.db", [(42, 2, {0: 5, 1: 7}, (1, len(COMMITTED_AUDIT)), 1_700_000_000.0, [])])
    monkeypatch.setenv("SUMFLOW_STATE_DIR", str(state))
    return state


def test_rollback_restores_the_previous_schema_once_and_keeps_the_newer_state_aside(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "backups" / "before-new"
    assert main(["backup", "--to", str(backup)]) == 0
    assert "total=42 applied=2 schema_version=1 next_offsets={0: 5, 1: 7}" in capsys.readouterr().out
    assert (backup / "audit" / "audit-000001.jsonl").read_bytes() == COMMITTED_AUDIT
    assert json.loads((backup / "total.json").read_text())["total"] == 42

    # The new release migrates the state to schema version 2 when it opens it.
    store = LedgerStore(state_dir, window_seconds=900, window_max_ids=10_000)
    store.open(create=False)
    store.close()
    assert read_ledger(state_dir / "state.db")[0] == 2

    assert main(["restore", "--from", str(backup), "--if-schema-differs"]) == 1
    assert "already holds state" in capsys.readouterr().err

    assert main(["restore", "--from", str(backup), "--replace", "--if-schema-differs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"restored {backup} into {state_dir}: total=42 applied=2 schema_version=1"), out
    version, ledger, _, _ = read_ledger(state_dir / "state.db")
    assert (version, ledger.total, ledger.applied, ledger.next_offsets) == (1, 42, 2, {0: 5, 1: 7})
    assert (state_dir / "audit" / "audit-000001.jsonl").read_bytes() == COMMITTED_AUDIT
    (aside,) = state_dir.glob("replaced-*")
    assert read_ledger(aside / "state.db")[0] == 2  # the newer state is kept, not deleted

    assert main(["restore", "--from", str(backup), "--replace", "--if-schema-differs"]) == 0
    assert "its schema version 1 is the backup's" in capsys.readouterr().out
    assert len(list(state_dir.glob("replaced-*"))) == 1


def test_a_backup_whose_manifest_disagrees_with_its_database_is_refused(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "b"
    assert main(["backup", "--to", str(backup)]) == 0
    assert main(["backup", "--to", str(backup)]) == 1  # never overwrites a backup
    assert "exists" in capsys.readouterr().err
    manifest = json.loads((backup / "backup.json").read_text())
    (backup / "backup.json").write_text(json.dumps({**manifest, "total": 43}))
    assert main(["restore", "--from", str(backup), "--replace"]) == 1
    assert "does not match its state.db" in capsys.readouterr().err
    assert read_ledger(state_dir / "state.db")[1].total == 42  # the state was left alone
