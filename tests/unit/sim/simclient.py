"""A scripted client of the simulator that uses only the ESIA core for the protocol (client_secret,
certificate hash, token checks), as the agent does. Shared by the contract tests and the end-to-end test."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from schoolgate.esia import certhash, secret
from schoolgate.esia.signing import Signer, make_signer
from schoolgate.sim.keys import csr_for, generate_key

REQUIRED_DOCS = ("charter", "connection_decision", "parent_committee_consent", "license")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimProcess:
    """`schoolgate sim serve` really started on 127.0.0.1 (a child process)."""

    def __init__(self, state_dir: Path, *extra: str) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SimProcess:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "schoolgate",
                "sim",
                "serve",
                "--port",
                str(self.port),
                "--state-dir",
                str(self.state_dir),
                *self.extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("simulator did not become healthy within 60 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None
            self.log.close()


@dataclass
class School:
    base: str
    client_id: str
    access_code: str
    service_id: str
    signer: Signer
    key_dir: Path
    cert_pem: str
    redirect_base: str
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def cert_hash(self) -> str:
        return certhash.client_certificate_hash(self.cert_pem.encode())

    # -- ESIA, through the ESIA core only ---------------------------------------------------------------
    def ac_url(
        self,
        scope: str = "openid fullname",
        version: str = "v2",
        state: str | None = None,
        redirect_uri: str | None = None,
        **override: str,
    ) -> str:
        ts = secret.esia_timestamp()
        state = state or secret.new_state()
        redirect_uri = redirect_uri or self.redirect_base + "/esia/callback"
        params = {
            "client_id": self.client_id,
            "scope": scope,
            "timestamp": ts,
            "state": state,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "access_type": "offline",
        }
        if version == "v2":
            params["client_secret"] = secret.client_secret_v2(
                self.signer,
                client_id=self.client_id,
                scope=scope,
                timestamp=ts,
                state=state,
                redirect_uri=redirect_uri,
            )
            params["client_certificate_hash"] = self.cert_hash
            path = "/aas/oauth2/v2/ac"
        else:
            params["client_secret"] = secret.client_secret_v1(
                self.signer, client_id=self.client_id, scope=scope, timestamp=ts, state=state
            )
            path = "/aas/oauth2/ac"
        params.update(override)
        return self.base + path + "?" + urlencode(params)

    def token_form(
        self,
        grant_type: str,
        *,
        scope: str = "openid fullname",
        version: str = "v3",
        code: str | None = None,
        refresh_token: str | None = None,
        redirect_uri: str | None = None,
    ) -> dict[str, str]:
        ts = secret.esia_timestamp()
        state = secret.new_state()
        redirect_uri = redirect_uri or self.redirect_base + "/esia/callback"
        form = {
            "client_id": self.client_id,
            "grant_type": grant_type,
            "scope": scope,
            "timestamp": ts,
            "state": state,
            "redirect_uri": redirect_uri,
            "token_type": "Bearer",
        }
        if code:
            form["code"] = code
        if refresh_token:
            form["refresh_token"] = refresh_token
        if version == "v3":
            form["client_secret"] = secret.client_secret_v3(
                self.signer,
                client_id=self.client_id,
                scope=scope,
                timestamp=ts,
                state=state,
                redirect_uri=redirect_uri,
                code=code,
                refresh_token=refresh_token,
            )
            form["client_certificate_hash"] = self.cert_hash
        else:
            form["client_secret"] = secret.client_secret_v1(
                self.signer, client_id=self.client_id, scope=scope, timestamp=ts, state=state
            )
        return form

    def token(
        self, grant_type: str = "client_credentials", version: str = "v3", **kw: Any
    ) -> requests.Response:
        path = "/aas/oauth2/v3/te" if version == "v3" else "/aas/oauth2/te"
        return self.http.post(
            self.base + path, data=self.token_form(grant_type, version=version, **kw), timeout=30
        )

    def service_token(self, scope: str = "edu_intake") -> str:
        resp = self.token("client_credentials", scope=scope)
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    def login_via_form(self, oid: str = "1000001", **kw: Any) -> tuple[str, str]:
        """Drive the HTML login page with a plain HTTP client (the browser test does the same in Chromium).
        Returns (code, state)."""
        resp = self.http.get(self.ac_url(**kw), timeout=30)
        assert resp.status_code == 200, resp.text
        login_id = resp.text.split('name="login_id" value="')[1].split('"')[0]
        action = resp.text.split('action="')[1].split('"')[0]
        resp = self.http.post(
            self.base + action, data={"login_id": login_id, "oid": oid}, allow_redirects=False, timeout=30
        )
        assert resp.status_code == 302, resp.text
        q = parse_qs(urlsplit(resp.headers["Location"]).query)
        return q["code"][0], q["state"][0]

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def dossier(school_id: str = "school-001") -> dict[str, Any]:
    return {
        "school_id": school_id,
        "documents": [
            {"type": t, "name": f"{t}.pdf", "sha256": hashlib.sha256(t.encode()).hexdigest()}
            for t in REQUIRED_DOCS
        ],
    }


def onboard(
    base: str, tmp: Path, *, name: str | None = None, redirect_base: str = "http://127.0.0.1:9"
) -> School:
    """onboarding → key + CSR on the 'school' side → certificate from the simulated УЦ → registration."""
    http = requests.Session()
    resp = http.post(base + "/region/v1/dossiers", json=dossier(), timeout=30)
    assert resp.status_code == 201, resp.text
    code = resp.json()["access_code"]
    tmp.mkdir(parents=True, exist_ok=True)
    key = generate_key(tmp / "school.key", "gost")
    csr = csr_for(key, "/C=RU/O=Test school/CN=school-001 signing")
    resp = http.post(
        base + "/ca/v1/certificates",
        json={"csr": csr.decode(), "days": 30},
        headers={"X-Access-Code": code},
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    cert_pem = resp.json()["certificate"]
    (tmp / "school.crt").write_text(cert_pem)
    signer = make_signer({"type": "openssl-gost", "key": str(key), "cert": str(tmp / "school.crt")})
    name = name or "SCHOOL" + uuid.uuid4().hex[:8].upper()
    resp = http.post(
        base + "/cabinet/v1/services",
        json={"name": name, "api_url": redirect_base + "/api", "certificate": cert_pem},
        headers={"X-Access-Code": code},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return School(base, name, code, resp.json()["service_id"], signer, tmp, cert_pem, redirect_base)


def grade(**override: Any) -> dict[str, Any]:
    rec = {
        "record_id": str(uuid.uuid4()),
        "school_id": "school-001",
        "pupil_id": "p-" + uuid.uuid4().hex[:8],
        "subject": "Математика",
        "grade": 5,
        "date": "2026-11-20",
        "teacher_id": "t-1",
    }
    rec.update(override)
    return rec
