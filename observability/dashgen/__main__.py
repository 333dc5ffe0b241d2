"""`python -m dashgen [--check]`: write (or compare) observability/grafana/dashboards/*.json."""

from __future__ import annotations

import argparse
import sys

from dashgen.render import OUTPUT_DIR, render_all


def main() -> int:
    parser = argparse.ArgumentParser(prog="dashgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args()
    stale = []
    for name, text in render_all().items():
        path = OUTPUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"stale dashboards (run `make dashboards`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
