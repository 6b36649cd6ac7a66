"""Start a real agent process on 127.0.0.1 (tests and benchmarks), and sign requests like a portal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .auth import generate_secret_file, sign


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class AgentProcess:
    def __init__(
        self,
        workdir: str | Path,
        config: dict[str, Any] | None = None,
        *,
        python: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.secret_path = self.dir / "hmac.key"
        if not self.secret_path.exists():
            generate_secret_file(self.secret_path)
        self.secret = self.secret_path.read_bytes().strip()
        self.port = free_port()
        base = {
            "listen": {"host": "127.0.0.1", "port": self.port},
            "auth": {"mode": "hmac", "hmac_secret_file": str(self.secret_path)},
            "outbox": {"path": str(self.dir / "outbox.sqlite3")},
            "delivery": {"enabled": False},
            "log_level": "info",
        }
        self.config = deep_merge(base, config or {})
        self.config_path = self.dir / "agent.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.python = python or sys.executable
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "agent.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> str:
        return str(self.config["outbox"]["path"])

    def start(self, timeout: float = 20.0) -> AgentProcess:
        ready = self.dir / "ready"
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        env = dict(os.environ)
        env.update(self.env or {})
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "schoolgate",
                "agent",
                "-c",
                str(self.config_path),
                "serve",
                "--ready-file",
                str(ready),
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}: {self.log_tail()}")
            if ready.exists():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"agent not ready after {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def signed(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        return sign(self.secret, method, path, body)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        content_type: str = "application/json",
        *,
        signed: bool = True,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        headers = {"Content-Type": content_type}
        if signed:
            headers.update(self.signed(method, path, data))
        url = self.url + path  # always http://127.0.0.1:<port>/...
        payload = data if method != "GET" else None
        req = urllib.request.Request(url, data=payload, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")
