"""End to end, as a school would go through it, with a scripted client that uses only the ESIA core for the
protocol and a real headless Chromium (Debian `chromium` + `chromedriver`, driven by selenium) through the
simulator's ESIA login page and the parent's signing page:

onboarding → УЦ certificate → service registration → provider + ESIA tokens → ESIA login (browser) →
справка (pending → ready, signed) → parent signature (browser, result by callback and poll) → data batch
(exactly once).
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from schoolgate.esia import certhash, tokens, verify

from .simclient import grade, onboard

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


class Portal:
    """The school portal's side: receives the ESIA redirect and the signing callback on 127.0.0.1."""

    def __init__(self) -> None:
        self.redirects: list[str] = []
        self.callbacks: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.redirects.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write("<h1 id='portal'>Портал школы: вход выполнен</h1>".encode())

            def do_POST(self):
                outer.callbacks.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian packages chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, timeout=30.0):
    """Poll until predicate() is truthy; a page still loading (element missing or stale) means "not yet"."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        try:
            value = predicate()
        except WebDriverException as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out (last browser error: {last})")


def test_school_goes_live_end_to_end(base, tmp_path: Path, browser):
    from selenium.webdriver.common.by import By

    portal = Portal()
    try:
        # 1-3. Onboarding, certificate from the simulated УЦ, registration (all inside onboard()).
        school = onboard(base, tmp_path / "school", redirect_base=portal.base)
        ca_pem = requests.get(base + "/ca/v1/ca.crt").content
        assert (
            certhash.certificate_info(school.cert_pem.encode())["issuer"]
            == certhash.certificate_info(ca_pem)["subject"]
        )

        # 4. Provider access token from the cabinet, ESIA service token by client_credentials.
        cabinet = requests.post(
            base + f"/cabinet/v1/services/{school.service_id}/tokens",
            json={"lifetime_s": 300},
            headers={"X-Access-Code": school.access_code},
        )
        assert cabinet.status_code == 201
        service_token = school.service_token("edu_intake")
        certs = [c.encode() for c in requests.get(base + "/aas/oauth2/certs").json()["certificates"]]
        assert tokens.verify_token(service_token, certs, issuer=None, client_id=school.client_id)

        # 5. ESIA login in a real browser: the pupil is chosen on the login page.
        state = str(uuid.uuid4())
        browser.get(school.ac_url(scope="openid fullname", state=state))
        assert "Госуслуги" in browser.page_source
        browser.find_element(By.ID, "user-pupil").click()
        _wait(lambda: portal.redirects)
        browser_url = browser.current_url
        assert browser_url.startswith(portal.base + "/esia/callback")
        q = parse_qs(urlsplit(portal.redirects[0]).query)
        assert q["state"] == [state]
        resp = school.token("authorization_code", code=q["code"][0])
        assert resp.status_code == 200, resp.text
        pupil = resp.json()
        claims = tokens.verify_token(pupil["access_token"], certs, issuer=None, client_id=school.client_id)
        assert claims["urn:esia:sbj_id"] == 1000001
        person = requests.get(base + "/rs/prns/1000001", headers=school.bearer(pupil["access_token"])).json()
        assert person["roles"] == ["pupil"]

        # 6. «Ученик запрашивает справку»: pending → ready, signed by the provider.
        h = school.bearer(pupil["access_token"])
        rid = requests.post(
            base + "/services/v1/requests", json={"service": "spravka-ob-obuchenii"}, headers=h
        ).json()["request_id"]
        ready = _wait(
            lambda: (
                (r := requests.get(base + f"/services/v1/requests/{rid}", headers=h).json())["status"]
                == "ready"
                and r
            )
        )
        doc = requests.get(base + ready["document_url"], headers=h).content
        sig = requests.get(base + ready["signature_url"], headers=h).content
        verify.verify_cms_detached(sig, doc, expected_cert=ready["signer_certificate"].encode())

        # 7. «Родитель подписывает электронный документ»: the parent signs in the browser.
        sh = school.bearer(service_token)
        session = requests.post(
            base + "/services/v1/signing-sessions",
            headers=sh,
            json={
                "document": base64.b64encode(doc).decode(),
                "document_name": "spravka.xml",
                "signer_oid": "1000002",
                "callback_url": portal.base + "/signing-callback",
            },
        ).json()
        browser.get(base + session["sign_url"])
        assert "spravka.xml" in browser.page_source
        browser.find_element(By.ID, "sign").click()
        _wait(lambda: browser.find_element(By.ID, "status").text == "signed")
        callback = _wait(lambda: portal.callbacks and portal.callbacks[0])
        assert callback["status"] == "signed" and callback["session_id"] == session["session_id"]
        polled = requests.get(
            base + f"/services/v1/signing-sessions/{session['session_id']}", headers=sh
        ).json()
        assert polled["cms"] == callback["cms"]
        verify.verify_cms_detached(
            base64.b64decode(polled["cms"]), doc, expected_cert=polled["signer_certificate"].encode()
        )
        assert (
            certhash.certificate_info(polled["signer_certificate"].encode())["issuer"]
            == certhash.certificate_info(ca_pem)["subject"]
        )

        # 8. Data batch with the ESIA token, delivered twice (a retry), stored once.
        records = [grade() for _ in range(50)]
        key = f"e2e-{uuid.uuid4()}"
        bh = {**sh, "Idempotency-Key": key}
        first = requests.post(base + "/edu/v1/batches/grades", json={"records": records}, headers=bh).json()
        retry = requests.post(base + "/edu/v1/batches/grades", json={"records": records}, headers=bh).json()
        assert first["accepted"] == 50 and retry["replayed"] is True
        stored = requests.get(
            base + "/edu/v1/records", params=[("record_id", r["record_id"]) for r in records], headers=sh
        ).json()
        assert stored["count"] == 50
    finally:
        portal.close()
