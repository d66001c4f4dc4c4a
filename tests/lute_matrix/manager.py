"""A local stand-in for LUTE's workflow manager (``LUTE_MANAGER_URL``): what LUTE's Executor asks
of it while a ``TestRequest`` Task runs. ``GET /tasks`` answers with two running managed Tasks;
``POST /status`` and ``POST /log`` are recorded."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

RUNNING = {"managed_tasks": [{"name": "MatrixIndexer", "status": "RUNNING", "task": "IndexCrystFEL"},
                             {"name": "MatrixMerger", "status": "RUNNING", "task": "MergePartialator"}]}
"""The answer to ``GET /tasks`` (LUTE's TestRequest reports these names back)."""


class Manager:
    """The stand-in, serving on 127.0.0.1 in a background thread while open."""

    def __init__(self) -> None:
        self.posts: List[Dict[str, Any]] = []
        manager = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(RUNNING if self.path.rstrip("/") == "/tasks" else {})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                manager.posts.append({"path": self.path, **body})
                self._answer({})

            def _answer(self, data: Dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="lute-manager", daemon=True)

    @property
    def url(self) -> str:
        """What LUTE expects in ``LUTE_MANAGER_URL`` (host:port, no scheme)."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> "Manager":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
