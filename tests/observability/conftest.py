"""Make the dashboard generator (observability/dashgen) importable for these tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
if str(OBSERVABILITY) not in sys.path:
    sys.path.insert(0, str(OBSERVABILITY))


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def kafka_bootstrap(request):
    """Bootstrap of the session's real broker (tests/conftest.py's kafka_broker fixture)."""
    return request.getfixturevalue("kafka_broker").bootstrap
