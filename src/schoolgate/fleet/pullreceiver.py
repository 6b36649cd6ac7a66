"""The regional center's end of pull mode: schools behind NAT POST their run records here.

Standard library only (it runs on the center's monitor host or in a lab container with bare python3):

  python3 -m schoolgate.fleet.pullreceiver --listen 0.0.0.0:8780 --dir /srv/schoolgate/pull \\
      [--token-file /etc/schoolgate/pull-token]
  (or `schoolgate fleet pull-receive ...`)

POST /v1/pull-reports with the JSON record written by roles/pull_mode's schoolgate-pull. The newest record of
each school is kept as <dir>/<school>.json (written atomically); every record is appended to
<dir>/history.jsonl. `schoolgate fleet report --pull-dir <dir>` is not needed: the files have the fields of
the fleet records. GET /v1/pull-reports lists the latest record per school.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024
SCHOOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STATUSES = frozenset({"ok", "failed", "unchanged"})
REQUIRED = ("school", "status", "commit", "started", "finished")


def validate(record: Any) -> list[str]:
    """Problems of one record (empty when it is acceptable); messages never echo the values."""
    if not isinstance(record, dict):
        return ["body must be a JSON object"]
    problems = [f"'{k}' is missing" for k in REQUIRED if k not in record]
    if "school" in record and not (isinstance(record["school"], str) and SCHOOL_RE.match(record["school"])):
        problems.append("'school' must be 1-64 characters [A-Za-z0-9_.-]")
    if "status" in record and record["status"] not in STATUSES:
        problems.append(f"'status' must be one of {sorted(STATUSES)}")
    return problems


class Store:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def save(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True)
        with self._lock:
            path = self.dir / f"{record['school']}.json"
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(line + "\n", encoding="utf-8")
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
            with open(self.dir / "history.jsonl", "a", encoding="utf-8") as hist:
                hist.write(line + "\n")

    def latest(self) -> list[dict[str, Any]]:
        out = []
        for f in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return out


def make_handler(store: Store, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "schoolgate-pull-receiver"

        def _reply(self, status: int, body: dict[str, Any] | list[Any]) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if not token:
                return True
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/pull-reports":
                self._reply(404, {"error": "not found"})
            elif not self._authorized():
                self._reply(401, {"error": "bad or missing bearer token"})
            else:
                self._reply(200, store.latest())

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/pull-reports":
                self._reply(404, {"error": "not found"})
                return
            if not self._authorized():
                self._reply(401, {"error": "bad or missing bearer token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BYTES:
                status = 413 if length > MAX_BYTES else 400
                self._reply(status, {"error": f"body must be 1..{MAX_BYTES} bytes"})
                return
            try:
                record = json.loads(self.rfile.read(length))
            except ValueError:
                self._reply(400, {"error": "body is not JSON"})
                return
            problems = validate(record)
            if problems:
                self._reply(422, {"error": "invalid record", "problems": problems})
                return
            store.save(record)
            self._reply(201, {"stored": record["school"]})

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"pull-receiver: {self.address_string()} {format % args}\n")

    return Handler


def serve(listen: str, directory: Path, token: str | None = None) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    return ThreadingHTTPServer((host or "127.0.0.1", int(port)), make_handler(Store(directory), token))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="receive pull-mode run records from schools")
    p.add_argument("--listen", default="127.0.0.1:8780")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--token-file", type=Path, help="require 'Authorization: Bearer <token>'")
    args = p.parse_args(argv)
    token = args.token_file.read_text(encoding="utf-8").strip() if args.token_file else None
    server = serve(args.listen, args.dir, token)
    print(f"pull-receiver: listening on {args.listen}, records in {args.dir}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
