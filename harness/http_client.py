"""Tiny HTTP helpers over urllib: status + body without raising on 4xx/5xx."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_get(url: str, timeout: float = 10.0, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET `url` answers 200; False on any other status or when nothing answers."""
    try:
        return http_get(url, timeout)[0] == 200
    except OSError:
        return False


def get_json(url: str, timeout: float = 10.0, method: str = "GET") -> tuple[int, Any]:
    """(status, parsed JSON body); a body that is not JSON comes back as text."""
    status, body = http_get(url, timeout, method)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")
