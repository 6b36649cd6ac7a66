#!/usr/bin/python3
"""Lab webhook sink for Alertmanager: stores every notification as one JSON line.

Used only where ``monitoring_alert_sink_enabled`` is true (the lab and Molecule), so tests can read which
alerts reached the receiver. Standard library only. Endpoints:
  POST /alerts   Alertmanager webhook payload (JSON, at most 1 MiB) -> 200, appended to the store
  GET  /alerts   the stored notifications as a JSON list
  GET  /healthz  "ok"
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1024 * 1024


class SinkHandler(BaseHTTPRequestHandler):
    server_version = "schoolgate-alert-sink/1"
    store: Path
    lock = threading.Lock()

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.path != "/alerts":
            self._reply(404, b'{"error": "not found"}')
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._reply(413, b'{"error": "body missing or larger than 1 MiB"}')
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self._reply(400, b'{"error": "body is not JSON"}')
            return
        record = json.dumps({"received_at": time.time(), "payload": payload}, ensure_ascii=False)
        with self.lock, self.store.open("a", encoding="utf-8") as handle:
            handle.write(record + "\n")
        self._reply(200, b'{"stored": true}')

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n", "text/plain")
            return
        if self.path != "/alerts":
            self._reply(404, b'{"error": "not found"}')
            return
        with self.lock:
            lines = self.store.read_text(encoding="utf-8").splitlines() if self.store.exists() else []
        body = "[" + ",".join(lines) + "]"
        self._reply(200, body.encode("utf-8"))

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("alert-sink: " + (format % args) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Alertmanager webhook sink (lab)")
    parser.add_argument("--listen", default="127.0.0.1:9099", help="HOST:PORT")
    parser.add_argument("--store", default="/var/lib/schoolgate-alert-sink/alerts.jsonl")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    SinkHandler.store = Path(args.store)
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), SinkHandler)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
