"""A stand-in for Pacifica's policy service, so tests can make Policy Validation say no.

It answers `POST /ingest` as pacifica-policy does: 200 when the submitter may upload to the
project, 412 with a message when not. Tests add projects to `denied`.
"""
from __future__ import annotations

import http.server
import json
import threading
from typing import Any


class PolicyServer:
    def __init__(self) -> None:
        self.denied: set[str] = set()
        self.requests: list[tuple[dict[str, str], Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                document = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                owner.requests.append((dict(self.headers), document))
                project = next((item.get("value") for item in document
                                if isinstance(item, dict) and item.get("destinationTable") == "Transactions.project"),
                                None)
                denied = project in owner.denied
                body = json.dumps({"status": "error" if denied else "success",
                                   "message": f"project {project} is closed for uploads" if denied else "ok"}).encode()
                self.send_response(412 if denied else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> PolicyServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
