"""A stand-in for a third-party HTTP API: a local JSON service to record cassettes from.

Recorded replay needs a live service to record from. Scenarios that ship their own (a small
stand-in for a third-party API) subclass :class:`JSONHandler` and run it with :func:`serve`::

    class Prices(JSONHandler):
        def do_GET(self) -> None:
            self.send_json(200, {"sku": self.path.rsplit("/", 1)[-1], "price": 30})

    with serve(Prices) as url:  # http://127.0.0.1:<free port>
        ...

Standard library only; the server binds 127.0.0.1 and stops when the block ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["JSONHandler", "serve"]


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing."""

    def send_json(self, status: int, payload: Any) -> None:
        """Answer ``payload`` as JSON with ``status``."""
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
