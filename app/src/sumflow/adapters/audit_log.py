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
from sumflow.domain.events import SummationEvent
from sumflow.domain.summation import InvalidRequest, canonical_request_id

_SEGMENT = re.compile(r"^audit-(\d{6,})\.jsonl$")


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

    def append_events(self, events: Sequence[SummationEvent], applied_at: float) -> AuditPosition:
        """Append the lines of applied events (audit_lines), flushed and fsynced; the new position."""
        return self.append([audit_lines(events, applied_at)])

    # -- the rebuild -------------------------------------------------------------------------------

    def truncate_torn_tail(self) -> AuditPosition:
        """Cut the last segment after its last complete line; return the position to append at."""
        segments = list_segments(self.directory)
        if not segments:
            return AuditPosition(1, 0)
        number, path = segments[-1]
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(path, "r+b") as handle:
                handle.truncate(keep)
                os.fsync(handle.fileno())
        return AuditPosition(number, keep)

    def count_lines(self) -> int:
        """Complete lines in every segment, read in 1 MiB blocks."""
        count = 0
        for _, path in list_segments(self.directory):
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    count += block.count(b"\n")
        return count

    def events(self) -> Iterator[SummationEvent | None]:
        """The event of every complete, parseable line, oldest first; None for a line that is not one."""
        for doc in read_audit(self.directory):
            yield audit_event(doc)

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


def audit_lines(events: Iterable[SummationEvent], applied_at: float) -> bytes:
    """The audit lines of applied events, one JSON object a line, in this key order:

    {"request_id": str, "first_number": int, "second_number": int, "result": int, "partition": int,
     "offset": int, "produced_at_ms": int, "applied_at": float (Unix seconds)}
    """
    dumps = orjson.dumps
    return b"".join(
        [
            dumps(
                {
                    "request_id": ev.request_id,
                    "first_number": ev.first_number,
                    "second_number": ev.second_number,
                    "result": ev.result,
                    "partition": ev.partition,
                    "offset": ev.offset,
                    "produced_at_ms": ev.produced_at_ms,
                    "applied_at": applied_at,
                }
            )
            + b"\n"
            for ev in events
        ]
    )


_AUDIT_INTS = ("first_number", "second_number", "result", "produced_at_ms", "partition", "offset")


def audit_event(doc: dict[str, Any]) -> SummationEvent | None:
    """The event of one audit line (as read_audit yields it), or None if the line is not one."""
    request_id = doc.get("request_id")
    values = [doc.get(name) for name in _AUDIT_INTS]
    if not isinstance(request_id, str) or any(type(v) is not int for v in values):
        return None
    try:
        request_id = canonical_request_id(request_id)  # the ledger's window holds canonical ids
    except InvalidRequest:
        return None
    first, second, result, produced_at_ms, partition, offset = values
    return SummationEvent(request_id, first, second, result, produced_at_ms, partition, offset)  # type: ignore[arg-type]
