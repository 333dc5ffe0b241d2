"""The proto checks of `make lint-proto` (buf, pinned in tools/buf) pass on the contract and catch a break.

buf comes from the npm registry package @bufbuild/buf via `make buf` (npm ci on the lock file).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"
RELEASES = sorted((ROOT / "proto" / "releases").glob("sumflow-*.json"))


@pytest.fixture(scope="module")
def buf() -> Path:
    subprocess.run(["make", "-s", "buf"], cwd=ROOT, check=True, timeout=600)
    return BUF


def run_buf(buf: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(buf), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def copy_contract(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path / "proto" / "sumflow" / "v1" / "sum.proto"


def test_there_is_a_released_descriptor_to_compare_with() -> None:
    assert RELEASES, "proto/releases/ holds no released descriptor (make proto-release)"


def test_contract_is_lint_clean_and_unbroken(buf: Path) -> None:
    assert run_buf(buf, ROOT, "lint").returncode == 0
    done = run_buf(buf, ROOT, "breaking", "--against", str(RELEASES[-1]))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("int64 result = 2;", "int64 result = 4;", 'Previously present field "2" with name "result"'),
        ("bool duplicate = 3;", "", 'Previously present field "3" with name "duplicate"'),
        ("int64 first_number = 2;", "int32 first_number = 2;", 'changed type from "int64" to "int32"'),
    ],
)
def test_breaking_changes_are_refused(buf: Path, tmp_path: Path, old: str, new: str, complaint: str) -> None:
    proto = copy_contract(tmp_path)
    text = proto.read_text()
    assert old in text
    proto.write_text(text.replace(old, new))
    done = run_buf(buf, tmp_path, "breaking", "--against", str(RELEASES[-1]))
    assert done.returncode != 0
    assert complaint in done.stdout + done.stderr


def test_lint_refuses_a_badly_named_field(buf: Path, tmp_path: Path) -> None:
    proto = copy_contract(tmp_path)
    proto.write_text(proto.read_text().replace("bool duplicate = 3;", "bool duplicate = 3;\n  bool BadName = 4;"))
    done = run_buf(buf, tmp_path, "lint")
    assert done.returncode != 0
    assert "BadName" in done.stdout + done.stderr
