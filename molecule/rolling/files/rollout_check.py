"""Checks what one rollout did on the app hosts, from what each host reported after it.

    rollout_check.py --began US --ended US --current RELEASE --previous RELEASE < HOSTS_JSON

HOSTS_JSON maps each app host to the text it printed for

    readlink /opt/sumflow/current /opt/sumflow/previous
    systemctl show --property=Id --property=InactiveEnterTimestampMonotonic \
        --property=ActiveEnterTimestampMonotonic UNIT...

(--began/--ended: CLOCK_MONOTONIC in µs on the controller around the rollout; the hosts are containers
on the same kernel, so their systemd timestamps are on the same clock). Required:

- every host runs the same release, matching --current, with one matching --previous as
  /opt/sumflow/previous (shell-style patterns: a new release's id is `<version>-<digest>`);
- every unit stopped and started again within the rollout;
- one host at a time: taken in the order they stopped, each host's first stop comes after the last
  start of the host before it.

Prints one JSON line (per host: its units' stop and start in seconds after --began, and how long each
was down); exits 1 with the reason on any mismatch.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import PurePosixPath
from typing import Any


class RolloutError(Exception):
    """The rollout did not go as required."""


def parse_host(text: str) -> tuple[str, str, dict[str, tuple[int, int]]]:
    """(current release, previous release, {unit: (inactive-enter µs, active-enter µs)})."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise RolloutError(f"no release links in {text!r}")
    current, previous = (PurePosixPath(line.strip()).name for line in lines[:2])
    units: dict[str, tuple[int, int]] = {}
    block: dict[str, str] = {}
    for line in [*lines[2:], ""]:
        if not line.strip():
            if block:
                units[block["Id"]] = (
                    int(block["InactiveEnterTimestampMonotonic"]),
                    int(block["ActiveEnterTimestampMonotonic"]),
                )
                block = {}
            continue
        key, _, value = line.partition("=")
        block[key.strip()] = value.strip()
    if not units:
        raise RolloutError(f"no unit timestamps in {text!r}")
    return current, previous, units


def check(hosts: dict[str, str], began: int, ended: int, current: str, previous: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    releases: set[tuple[str, str]] = set()
    last_start: tuple[str, int] | None = None
    parsed = {host: parse_host(text) for host, text in hosts.items()}
    order = sorted(parsed, key=lambda host: min(stopped for stopped, _ in parsed[host][2].values()))
    for host in order:
        host_current, host_previous, units = parsed[host]
        if not (fnmatch.fnmatchcase(host_current, current) and fnmatch.fnmatchcase(host_previous, previous)):
            raise RolloutError(f"{host} runs {host_current} after {host_previous}, expected {current} after {previous}")
        releases.add((host_current, host_previous))
        for unit, (stopped, started) in units.items():
            if not began < stopped < started < ended:
                raise RolloutError(
                    f"{host} {unit}: stopped at {stopped}, started at {started}: not both within the rollout"
                    f" ({began}..{ended})"
                )
        first_stop = min(stopped for stopped, _ in units.values())
        if last_start is not None and first_stop <= last_start[1]:
            raise RolloutError(f"{host} stopped at {first_stop}, before {last_start[0]} was back at {last_start[1]}")
        last_start = (host, max(started for _, started in units.values()))
        report[host] = {
            unit: {
                "stopped_s": round((stopped - began) / 1e6, 2),
                "started_s": round((started - began) / 1e6, 2),
                "down_s": round((started - stopped) / 1e6, 2),
            }
            for unit, (stopped, started) in units.items()
        }
    if not report:
        raise RolloutError("no hosts")
    if len(releases) != 1:
        raise RolloutError(f"the hosts run different releases: {sorted(releases)}")
    ((run, before),) = releases
    return {
        "rollout_s": round((ended - began) / 1e6, 1),
        "current": run,
        "previous": before,
        "order": order,
        "hosts": report,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--began", type=int, required=True)
    parser.add_argument("--ended", type=int, required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--previous", required=True)
    args = parser.parse_args(argv)
    try:
        result = check(json.load(sys.stdin), args.began, args.ended, args.current, args.previous)
    except RolloutError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
