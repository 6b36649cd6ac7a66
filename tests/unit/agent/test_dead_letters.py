"""Dead letters, whole-batch rejections, 401/429 handling and the CLI, against a scripted provider.

The simulator validates with the same contract as the agent, so it never rejects what the agent
accepted; a small scripted provider (a real HTTP server on 127.0.0.1) plays the refusing provider here.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from schoolgate.agent.harness import AgentProcess, free_port

from .conftest import grade


class ScriptedProvider:
    def __init__(self) -> None:
        self.port = free_port()
        self.poison: set[str] = set()  # whole batch refused with 422 while it contains one of these
        self.reject: dict[str, str] = {}  # record_id → reason, reported in "rejected"
        self.stored: list[str] = []
        self.calls: list[tuple[int, int]] = []  # (status, batch size)
        self.first_401 = True
        self.throttle_once = True
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    async def batches(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer provider-token-0123456789":
            return web.json_response({"error": "invalid_token"}, status=401)
        records = (await request.json())["records"]
        ids = [r["record_id"] for r in records]
        if self.first_401:
            self.first_401 = False
            self.calls.append((401, len(ids)))
            return web.json_response(
                {"error": "invalid_token", "error_description": "ESIA-007023: expired"}, status=401
            )
        if self.throttle_once:
            self.throttle_once = False
            self.calls.append((429, len(ids)))
            return web.json_response({"error": "slow_down"}, status=429, headers={"Retry-After": "1"})
        if self.poison & set(ids):
            self.calls.append((422, len(ids)))
            return web.json_response(
                {"code": "SIM-422", "message": "batch refused: malformed record"}, status=422
            )
        rejected = [
            {"record_id": i, "code": "EDU-REJ", "message": self.reject[i]} for i in ids if i in self.reject
        ]
        ok = [i for i in ids if i not in self.reject]
        self.stored.extend(ok)
        self.calls.append((200, len(ids)))
        return web.json_response(
            {"batch_id": "b", "accepted": len(ok), "duplicates": 0, "rejected": rejected, "replayed": False}
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/edu/v1/batches/{kind}", self.batches)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def start(self) -> ScriptedProvider:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def provider() -> Iterator[ScriptedProvider]:
    p = ScriptedProvider().start()
    yield p
    p.stop()


def cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schoolgate", "agent", "-c", str(agent.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timeout")


def test_rejections_go_to_the_dead_letter_table_with_the_providers_reason(
    tmp_path: Path, provider: ScriptedProvider
) -> None:
    token = tmp_path / "provider.token"
    token.write_text("provider-token-0123456789\n")
    token.chmod(0o600)
    agent = AgentProcess(
        tmp_path / "agent",
        {
            "provider": {"base_url": f"http://127.0.0.1:{provider.port}", "token_file": str(token)},
            "delivery": {
                "enabled": True,
                "batch_size": 64,
                "backoff_base_s": 0.05,
                "backoff_max_s": 0.2,
                "idle_poll_s": 0.1,
            },
        },
    ).start()
    try:
        recs = [grade() for _ in range(100)]
        poison, rejected = recs[37]["record_id"], recs[80]["record_id"]
        provider.poison.add(poison)
        provider.reject[rejected] = "pupil not enrolled in this school"
        assert agent.request("POST", "/v1/batches/grade", {"records": recs})[0] == 202
        wait_for(lambda: json.loads(cli(agent, "status", "--json").stdout)["queued"] == 0, 30)
        st = json.loads(cli(agent, "status", "--json").stdout)
        assert (st["delivered"], st["dead"]) == (98, 2)
        assert sorted(provider.stored) == sorted(
            r["record_id"] for r in recs if r["record_id"] not in (poison, rejected)
        )
        assert len(set(provider.stored)) == len(provider.stored)
        statuses = [c[0] for c in provider.calls]
        assert statuses[:2] == [401, 429]  # token refreshed after 401; Retry-After honoured after 429
        dlq = json.loads(cli(agent, "dlq", "list", "--json").stdout)
        reasons = {d["record_id"]: (d["http_status"], d["code"], d["message"]) for d in dlq}
        assert reasons[poison] == (422, "SIM-422", "batch refused: malformed record")
        assert reasons[rejected] == (200, "EDU-REJ", "pupil not enrolled in this school")
        status, body = agent.request("GET", f"/v1/records/status/{rejected}")
        assert status == 200
        assert body["status"] == "dead" and body["provider_message"] == "pupil not enrolled in this school"
        # The provider fixed its side: replay one dead letter, it is delivered.
        provider.poison.clear()
        out = cli(agent, "dlq", "replay", "--record-id", poison)
        assert out.returncode == 0 and "1 record(s)" in out.stdout
        out = cli(agent, "drain", "--timeout", "30")
        assert out.returncode == 0, out.stderr
        assert poison in provider.stored
        log = agent.log_tail(50000)
        assert "provider-token-0123456789" not in log and "Математика" not in log
    finally:
        agent.stop()


def test_cli_reports_config_errors_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "agent.json"
    bad.write_text(
        json.dumps({"auth": {"hmac_secret_file": str(tmp_path / "missing")}, "delivery": {"enabled": False}})
    )
    out = subprocess.run(
        [sys.executable, "-m", "schoolgate", "agent", "-c", str(bad), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "auth.hmac_secret_file: file" in out.stderr and "does not exist" in out.stderr
