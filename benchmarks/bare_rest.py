"""Baseline: a bare bottle app on waitress that answers GET /api/total with a fixed JSON body.

    python -m benchmarks.bare_rest --port PORT --body '{"total": 3, ...}' [--threads 8]

The benchmark passes the accumulator's own /api/total body, so both answer the same bytes, and the
accumulator's thread count (SUMFLOW_HTTP_THREADS, default 8): the ratio measures what sumflow adds to
Python's own HTTP serving.
"""

from __future__ import annotations

import argparse
import signal
import sys

import bottle
import waitress


def create_app(body: bytes) -> bottle.Bottle:
    app = bottle.Bottle()

    @app.get("/api/total")
    def total() -> bytes:
        bottle.response.content_type = "application/json"
        return body

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="the JSON body of every answer")
    parser.add_argument("--threads", type=int, default=8, help="as SUMFLOW_HTTP_THREADS")
    args = parser.parse_args()
    server = waitress.create_server(
        create_app(args.body.encode()), host=args.host, port=args.port, threads=args.threads
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
