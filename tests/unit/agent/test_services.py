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
