"""Service catalogue and "ученик запрашивает справку" through the agent, against the real simulator."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from schoolgate.agent import auth
from schoolgate.agent.harness import AgentProcess, free_port

from .conftest import delivery_config


class Webhooks:
    """The portal's webhook endpoint: records what arrived and whether its HMAC signature verified."""

    def __init__(self, secret_getter: Any) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, Any], bool]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    auth.verify(
                        secret_getter(),
                        "POST",
                        self.path,
                        body,
                        self.headers.get(auth.TS_HEADER),
                        self.headers.get(auth.SIG_HEADER),
                        window_s=300,
                    )
                    ok = True
                except auth.AuthError:
                    ok = False
                hooks.received.append((json.loads(body), ok))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def services_agent(tmp_path: Path, tls_sim: Any, school: Any, pki: dict[str, Path]) -> Any:
    holder: dict[str, AgentProcess] = {}
    hooks = Webhooks(lambda: holder["agent"].secret)
    cfg = delivery_config(tls_sim, school, pki["ca"])
    cfg["services"] = {"webhook_url": f"http://127.0.0.1:{hooks.port}/portal/hooks/agent", "poll_s": 0.2}
    agent = AgentProcess(tmp_path / "agent", cfg)
    holder["agent"] = agent
    agent.start()
    yield agent, hooks
    agent.stop()
    hooks.close()


def wait(pred: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timeout")


def test_catalogue_and_certificate_request_end_to_end(services_agent: Any) -> None:
    agent, hooks = services_agent
    status, cat = wait(lambda: (r := agent.request("GET", "/v1/services"))[0] == 200 and r, 20)
    codes = {s["code"] for s in cat["services"]}
    assert "spravka-ob-obuchenii" in codes and cat["stale"] is False
    status, body = agent.request(
        "POST", "/v1/documents", {"service": "spravka-ob-obuchenii", "oid": "1000001"}
    )
    assert status == 202, body
    rid = body["request_id"]
    status, doc = wait(
        lambda: (r := agent.request("GET", f"/v1/documents/{rid}"))[1].get("status") != "pending" and r, 30
    )
    assert doc["status"] == "ready" and doc["signature_verified"] is True, doc
    status, content = agent.request("GET", f"/v1/documents/{rid}/content")
    assert status == 200 and "Справка" in content
    wait(lambda: hooks.received, 20)
    event, signed_ok = hooks.received[0]
    assert event["request_id"] == rid and event["status"] == "ready" and signed_ok
    # Bad input is refused with the field named, nothing is requested at the provider.
    status, body = agent.request("POST", "/v1/documents", {"service": "no-such", "oid": "1000001"})
    assert status == 422 and body["errors"][0]["field"] == "service"
    status, body = agent.request(
        "POST", "/v1/documents", {"service": "spravka-ob-obuchenii", "oid": "Иванов"}
    )
    assert status == 422 and body["errors"][0]["field"] == "oid"
    assert "Ученикова" not in agent.log_tail(50000)


def test_parent_signs_a_document_and_the_agent_verifies_the_cms(services_agent: Any) -> None:
    import base64

    import requests

    agent, hooks = services_agent
    document = "Согласие на обработку персональных данных\n".encode() * 20
    status, body = agent.request(
        "POST",
        "/v1/signing-sessions",
        {
            "document": base64.b64encode(document).decode(),
            "document_name": "soglasie.txt",
            "signer_oid": "1000002",
        },
    )
    assert status == 201, body
    sid, sign_url = body["session_id"], body["sign_url"]
    # The parent opens the provider's page and signs (the simulated Gosuslugi does the CMS).
    r = requests.post(sign_url, json={"decision": "sign"}, timeout=60)
    assert r.status_code == 200, r.text
    status, st = wait(
        lambda: (
            (x := agent.request("GET", f"/v1/signing-sessions/{sid}"))[1].get("status")
            != "awaiting_signature"
            and x
        ),
        30,
    )
    assert st["status"] == "signed" and st["signature_verified"] is True, st
    status, cms = agent.request("GET", f"/v1/signing-sessions/{sid}/signature")
    assert status == 200 and cms  # DER CMS
    wait(lambda: any(e.get("session_id") == sid for e, _ in hooks.received), 20)
    event, signed_ok = next((e, ok) for e, ok in hooks.received if e.get("session_id") == sid)
    assert event["event"] == "signature.signed" and event["signature_verified"] is True and signed_ok
    status, body = agent.request(
        "POST", "/v1/signing-sessions", {"document": "%%%", "document_name": "x", "signer_oid": "1000002"}
    )
    assert status == 422 and body["errors"][0]["field"] == "document"


def test_portal_calls_do_not_queue_behind_busy_deliveries(
    tmp_path: Path, tls_sim: Any, school: Any, pki: dict[str, Path], sim_admin: Any
) -> None:
    """Every delivery worker holds a connection to a slow provider: справка requests still go out side by side
    on their own pool (`services.max_connections`), not two at a time on what delivery leaves free."""
    from concurrent.futures import ThreadPoolExecutor

    from .conftest import grade

    # Small batches: each of the 4 partitions has batches queued for the whole test.
    cfg = delivery_config(tls_sim, school, pki["ca"], batch_size=5)
    agent = AgentProcess(tmp_path / "agent", cfg).start()
    try:
        wait(lambda: agent.request("GET", "/v1/services")[0] == 200, 20)
        latency_s = 1.5
        sim_admin.faults(latency_ms=int(latency_s * 1000), paths=["/edu/", "/services/v1/requests"])
        status, body = agent.request("POST", "/v1/batches/grade", {"records": [grade() for _ in range(400)]})
        assert status == 202, body
        time.sleep(0.5)
        n = 24

        def one(_: int) -> int:
            return agent.request(
                "POST", "/v1/documents", {"service": "spravka-ob-obuchenii", "oid": "1000001"}, timeout=60
            )[0]

        started = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            statuses = list(pool.map(one, range(n)))
        took = time.monotonic() - started
    finally:
        sim_admin.clear_faults()
        agent.stop()
    assert statuses == [202] * n
    # Side by side: about one provider round trip (1.6 s here). On what delivery left free: 7 s for 24.
    assert took < 3 * latency_s, f"{n} справки took {took:.1f} s with the provider answering in {latency_s} s"


def test_a_backlog_of_requests_is_polled_side_by_side(
    tmp_path: Path, tls_sim: Any, school: Any, pki: dict[str, Path], sim_admin: Any
) -> None:
    """The provider takes a second per answer: 16 pending справки are checked `services.poll_concurrency` (8)
    at a time, not 16 × 3 round trips one after another (48 s)."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = delivery_config(tls_sim, school, pki["ca"])
    cfg["services"] = {"poll_s": 0.2}
    agent = AgentProcess(tmp_path / "agent", cfg).start()
    try:
        wait(lambda: agent.request("GET", "/v1/services")[0] == 200, 20)
        sim_admin.faults(latency_ms=1000, paths=["/services/v1/requests"])
        n = 16

        def one(_: int) -> Any:
            return agent.request(
                "POST", "/v1/documents", {"service": "spravka-ob-obuchenii", "oid": "1000001"}, timeout=60
            )

        with ThreadPoolExecutor(n) as pool:
            created = list(pool.map(one, range(n)))
        assert [status for status, _ in created] == [202] * n, created
        ids = [body["request_id"] for _, body in created]
        started = time.monotonic()

        def done() -> list[Any]:
            rows = [agent.request("GET", f"/v1/documents/{rid}")[1] for rid in ids]
            return rows if all(r["status"] != "pending" for r in rows) else []

        rows = wait(done, 60)
        took = time.monotonic() - started
    finally:
        sim_admin.clear_faults()
        agent.stop()
    assert all(r["status"] == "ready" and r["signature_verified"] for r in rows), rows
    assert took < 24, f"{n} pending справки took {took:.1f} s to check (10 s here; one by one: 48 s)"
