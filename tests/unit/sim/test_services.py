"""Contract tests: catalogue, "ученик запрашивает справку", "родитель подписывает электронный документ"."""

from __future__ import annotations

import base64
import time

import requests

from schoolgate.esia import verify

from .simclient import School
from .test_region_cabinet import _err


def _pupil_token(school: School, oid: str = "1000001") -> str:
    code, _ = school.login_via_form(oid)
    return school.token("authorization_code", code=code).json()["access_token"]


def test_catalogue(base, school: School):
    resp = requests.get(base + "/services/v1/catalogue", headers=school.bearer(school.service_token()))
    assert resp.status_code == 200
    codes = [s["code"] for s in resp.json()["services"]]
    assert "spravka-ob-obuchenii" in codes and "podpis-roditelya" in codes
    _err(requests.get(base + "/services/v1/catalogue"), 401, "SG-ESIA-110")


def test_pupil_requests_certificate_pending_then_ready_and_signed(base, school: School):
    h = school.bearer(_pupil_token(school))
    resp = requests.post(base + "/services/v1/requests", json={"service": "spravka-ob-obuchenii"}, headers=h)
    assert resp.status_code == 202, resp.text
    rid = resp.json()["request_id"]
    assert requests.get(base + f"/services/v1/requests/{rid}", headers=h).json()["status"] == "pending"
    _err(requests.get(base + f"/services/v1/requests/{rid}/document", headers=h), 409, "SIM-409")
    deadline = time.time() + 10
    status = {}
    while time.time() < deadline:
        status = requests.get(base + f"/services/v1/requests/{rid}", headers=h).json()
        if status["status"] == "ready":
            break
        time.sleep(0.1)
    assert status["status"] == "ready"
    doc = requests.get(base + status["document_url"], headers=h)
    sig = requests.get(base + status["signature_url"], headers=h)
    assert doc.headers["Content-Type"].startswith("application/xml")
    assert "Справка" in doc.content.decode() and 'oid="1000001"' in doc.content.decode()
    # The signature verifies with the ESIA core against the provider's document certificate.
    verify.verify_cms_detached(sig.content, doc.content, expected_cert=status["signer_certificate"].encode())


def test_document_request_errors(base, school: School):
    h = school.bearer(_pupil_token(school))
    _err(requests.post(base + "/services/v1/requests", json={"service": "nope"}, headers=h), 400, "SIM-400")
    _err(requests.post(base + "/services/v1/requests", json={}, headers=h), 400, "ESIA-007014")
    _err(
        requests.post(
            base + "/services/v1/requests", json={"service": "vypiska-ocenok", "oid": "1000002"}, headers=h
        ),
        403,
        "ESIA-007019",
    )
    svc = school.bearer(school.service_token())
    _err(
        requests.post(base + "/services/v1/requests", json={"service": "vypiska-ocenok"}, headers=svc),
        400,
        "ESIA-007014",
    )
    _err(
        requests.post(
            base + "/services/v1/requests", json={"service": "vypiska-ocenok", "oid": "1000003"}, headers=svc
        ),
        404,
        "SIM-404",
    )
    ok = requests.post(
        base + "/services/v1/requests", json={"service": "vypiska-ocenok", "oid": "1000001"}, headers=svc
    )
    assert ok.status_code == 202
    _err(requests.get(base + "/services/v1/requests/nope", headers=svc), 404, "SIM-404")


def test_parent_signs_document_result_by_poll(base, school: School):
    h = school.bearer(school.service_token())
    document = "Согласие родителя на обработку данных".encode()
    resp = requests.post(
        base + "/services/v1/signing-sessions",
        headers=h,
        json={
            "document": base64.b64encode(document).decode(),
            "document_name": "soglasie.txt",
            "signer_oid": "1000002",
        },
    )
    assert resp.status_code == 201, resp.text
    session = resp.json()
    assert session["status"] == "awaiting_signature"
    page = requests.get(base + session["sign_url"])
    assert page.status_code == 200 and "soglasie.txt" in page.text
    signed = requests.post(base + session["sign_url"], json={"decision": "sign"})
    assert signed.status_code == 200, signed.text
    polled = requests.get(base + f"/services/v1/signing-sessions/{session['session_id']}", headers=h).json()
    assert polled["status"] == "signed"
    verify.verify_cms_detached(
        base64.b64decode(polled["cms"]), document, expected_cert=polled["signer_certificate"].encode()
    )
    _err(requests.post(base + session["sign_url"], json={"decision": "sign"}), 409, "SIM-409")


def test_parent_declines_and_callback_is_delivered(base, school: School):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        h = school.bearer(school.service_token())
        resp = requests.post(
            base + "/services/v1/signing-sessions",
            headers=h,
            json={
                "document": base64.b64encode(b"doc").decode(),
                "document_name": "d.txt",
                "signer_oid": "1000002",
                "callback_url": f"http://127.0.0.1:{server.server_port}/cb",
            },
        )
        sid = resp.json()["session_id"]
        form = requests.post(base + resp.json()["sign_url"], data={"decision": "decline"})
        assert form.status_code == 200 and "declined" in form.text
        deadline = time.time() + 10
        while not received and time.time() < deadline:
            time.sleep(0.05)
        assert received and b'"declined"' in received[0]
        time.sleep(0.2)
        polled = requests.get(base + f"/services/v1/signing-sessions/{sid}", headers=h).json()
        assert polled["status"] == "declined" and polled["callback_status"] == "delivered:204"
    finally:
        server.shutdown()


def test_signing_session_errors(base, school: School):
    h = school.bearer(school.service_token())
    url = base + "/services/v1/signing-sessions"
    good = {"document": base64.b64encode(b"x").decode(), "document_name": "x", "signer_oid": "1000002"}
    _err(requests.post(url, json={**good, "document": "%%%"}, headers=h), 400, "SIM-400")
    _err(requests.post(url, json={**good, "signer_oid": "1000001"}, headers=h), 400, "SIM-400")
    _err(requests.post(url, json={**good, "document_name": ""}, headers=h), 400, "SIM-400")
    _err(requests.post(url, json={**good, "callback_url": "file:///etc/passwd"}, headers=h), 400, "SIM-400")
    _err(requests.post(url, json={"document": "eA=="}, headers=h), 400, "ESIA-007014")
    _err(requests.post(url, json=good), 401, "SG-ESIA-110")
    _err(requests.get(url + "/nope", headers=h), 404, "SIM-404")
    _err(requests.get(url + "/nope/sign"), 404, "SIM-404")
    sid = requests.post(url, json=good, headers=h).json()["session_id"]
    _err(requests.post(url + f"/{sid}/sign", json={"decision": "maybe"}), 400, "SIM-400")
