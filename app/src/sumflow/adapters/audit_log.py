"""Append-only audit log of applied events: JSON lines in size-rotated segments.

Files `audit-000001.jsonl`, `audit-000002.jsonl`, ... in the audit directory. One line per applied
event. A batch's lines are written and fsynced BEFORE the state commit that applies them, and the
state stores the audit position (segment number, byte size) in the same transaction. At start
`recover(position)` truncates the current segment to that size and deletes newer segments, so the
audit holds exactly the events the state holds, whatever instant the process was killed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sumflow.adapters.total_file import fsync_dir

_SEGMENT = re.compile(r"^audit-(\d{6,})\.jsonl$")
_PLAIN_ID = re.compile(r"[0-9a-f-]{36}").fullmatch


class AuditInconsistent(RuntimeError):
    """The audit lost bytes that the committed state says it holds."""


@dataclass(frozen=True, slots=True)
class AuditPosition:
    segment: int
    size: int


def segment_name(number: int) -> str:
    return f"audit-{number:06d}.jsonl"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _SEGMENT.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def read_audit(directory: Path) -> Iterator[dict[str, Any]]:
    """Every complete, parseable line of every segment, oldest first (a torn last line is skipped)."""
    for _, path in list_segments(directory):
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(doc, dict):
                    yield doc


class AuditLog:
    def __init__(self, directory: Path, max_bytes: int, keep_files: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self._segment = 1
        self._size = 0
        self._handle: Any = None

    @property
    def position(self) -> AuditPosition:
        return AuditPosition(self._segment, self._size)

    def has_segments(self) -> bool:
        return any(path.stat().st_size > 0 for _, path in list_segments(self.directory))

    def recover(self, position: AuditPosition) -> None:
        """Make the files match the committed `position`: truncate, delete newer segments, reopen."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.close()
        changed = False
        for number, path in list_segments(self.directory):
            if number > position.segment:
                path.unlink()
                changed = True
        path = self.directory / segment_name(position.segment)
        actual = path.stat().st_size if path.exists() else 0
        if actual < position.size:
            raise AuditInconsistent(f"{path} holds {actual} bytes but the state says {position.size} were committed")
        with open(path, "ab") as handle:
            if actual > position.size:
                handle.truncate(position.size)
                changed = True
            os.fsync(handle.fileno())
        if changed or actual == 0:
            fsync_dir(self.directory)
        self._segment, self._size = position.segment, position.size
        self._handle = open(path, "ab")  # noqa: SIM115 - kept open across batches

    def append(self, lines: Iterable[bytes]) -> AuditPosition:
        """Write the lines (each ending in a newline), flush and fsync; return the new position."""
        data = b"".join(lines)
        if not data:
            return self.position
        if self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._size += len(data)
        return self.position

    def _rotate(self) -> None:
        self._handle.close()
        self._segment += 1
        self._size = 0
        self._handle = open(self.directory / segment_name(self._segment), "ab")  # noqa: SIM115
        fsync_dir(self.directory)
        for number, path in list_segments(self.directory):
            if number <= self._segment - self.keep_files:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def audit_line(
    request_id: str,
    first: int,
    second: int,
    result: int,
    *,
    partition: int,
    offset: int,
    produced_at_ms: int,
    applied_at: float,
) -> bytes:
    return (
        orjson.dumps(
            {
                "request_id": request_id,
                "first_number": first,
                "second_number": second,
                "result": result,
                "partition": partition,
                "offset": offset,
                "produced_at_ms": produced_at_ms,
                "applied_at": applied_at,
            }
        )
        + b"\n"
    )


def audit_lines(applied: Sequence[Sequence[Any]], applied_at: float) -> bytes:
    """The audit lines of a batch in one string: the same JSON objects as audit_line, one a line.

    `applied` items are (request_id, first, second, result, produced_at_ms, partition, offset) with
    a canonical request id (hex digits and hyphens: nothing to escape); anything else is rendered
    by audit_line.
    """
    at = orjson.dumps(applied_at).decode()
    parts = []
    for rid, first, second, result, produced, partition, offset in applied:
        if _PLAIN_ID(rid) is None:
            parts.append(
                audit_line(
                    rid,
                    first,
                    second,
                    result,
                    partition=partition,
                    offset=offset,
                    produced_at_ms=produced,
                    applied_at=applied_at,
                ).decode()
            )
            continue
        parts.append(
            f'{{"request_id":"{rid}","first_number":{first},"second_number":{second},"result":{result},'
            f'"partition":{partition},"offset":{offset},"produced_at_ms":{produced},"applied_at":{at}}}\n'
        )
    return "".join(parts).encode()
