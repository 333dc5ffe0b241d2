"""The one HTTP server both services use (waitress), bounded against connection floods, JSON errors.

- Connections cost no thread until a request is complete: waitress reads them in one event loop
  (`poll`, so more than 1024 descriptors work) and hands whole requests to `threads` workers. Idle or
  slow clients are closed after CHANNEL_TIMEOUT_SECONDS without a byte; at most `connection_limit`
  are open at once (more wait in the listen backlog). Request headers and bodies are capped, so the
  memory a flood can take is bounded by connection_limit x (MAX_HEADER_BYTES + MAX_BODY_BYTES).
- Errors waitress produces itself (400 malformed request, 413 body too large, 431 headers too large,
  a framing header it does not implement) are JSON like the application's; a bad Transfer-Encoding
  is the client's fault, so it is a 400, not waitress's 501.
- `metrics_response` renders a registry for a scrape; an Accept header it cannot parse gets the
  plain text format instead of an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
import waitress
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

JSON = "application/json"
DEFAULT_CONNECTION_LIMIT = 2000
CHANNEL_TIMEOUT_SECONDS = 10
CLEANUP_INTERVAL_SECONDS = 2
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024  # neither service takes a request body

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def error_body(status: int, message: str) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return orjson.dumps({"status": status, "error": phrase, "message": message})


class JsonErrorTask(ErrorTask):
    """waitress's own error responses, as JSON; 501 (an unsupported framing header) becomes 400."""

    def execute(self) -> None:
        error = self.request.error
        code = 400 if error.code == 501 else error.code
        if code >= 500:
            message = "internal error"  # never a traceback
        else:
            message = (str(error.body).strip().splitlines() or [HTTPStatus(code).phrase])[0][:200]
        body = error_body(code, message)
        self.status = f"{code} {HTTPStatus(code).phrase}"
        self.response_headers.append(("Content-Type", JSON))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def create_http_server(
    app: WsgiApp,
    host: str,
    port: int,
    *,
    threads: int,
    ident: str,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
) -> Any:
    """A waitress server (not yet running: call .run() in a thread, .close() to stop)."""
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident=ident,
        expose_tracebacks=False,
        asyncore_use_poll=True,
        connection_limit=connection_limit,
        backlog=2048,
        channel_timeout=CHANNEL_TIMEOUT_SECONDS,
        cleanup_interval=CLEANUP_INTERVAL_SECONDS,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=MAX_BODY_BYTES,
    )
    server.channel_class = JsonErrorChannel
    return server


def metrics_response(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """(body, content type) for a scrape: OpenMetrics when asked for, else the text format."""
    try:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type
    except (ValueError, TypeError):  # e.g. a malformed OpenMetrics version in Accept
        return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_app(registry: CollectorRegistry) -> WsgiApp:
    """A WSGI app serving the registry at /metrics (and /), JSON 404/405 elsewhere."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path not in ("/metrics", "/"):
            status, body, content_type = 404, error_body(404, "not found"), JSON
        elif method not in ("GET", "HEAD"):
            status, body, content_type = 405, error_body(405, "only GET"), JSON
        else:
            body, content_type = metrics_response(registry, environ.get("HTTP_ACCEPT", ""))
            status = 200
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if status == 405:
            headers.append(("Allow", "GET, HEAD"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [b"" if method == "HEAD" else body]

    return app


class BackgroundHttpServer:
    """A server running in a daemon thread: .port, .close()."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.port = int(server.effective_port)
        self._thread = threading.Thread(target=server.run, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.close()
        self._thread.join(5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int, *, ident: str) -> BackgroundHttpServer:
    """The metrics endpoint of a service without its own HTTP API: bounded like the REST port."""
    return BackgroundHttpServer(create_http_server(metrics_app(registry), host, port, threads=2, ident=ident))
