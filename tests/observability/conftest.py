"""Make the dashboard generator (observability/dashgen) importable for these tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
if str(OBSERVABILITY) not in sys.path:
    sys.path.insert(0, str(OBSERVABILITY))
