"""Renewal with zero downtime, under load, against real processes on 127.0.0.1.

The simulator (ESIA token lifetime 60 s, HTTPS with a test CA) and the agent run as real local processes;
`playbooks/renew.yml` runs for real (ansible-playbook, connection local) against a "school" whose signing
directory, token file, events file and metrics file live in the test's tmp dir, and switches the real agent
with SIGHUP. No containers: this keeps the lab stage inside its time budget (one 5-minute load window covers
every claim below).

During 5 minutes of steady portal traffic:
* the agent renews its ESIA access token ≥ 4 times in the background, and no portal request fails;
* renew.yml renews the signing certificate (new key + CSR on the "host", the УЦ issues, the registration is
  updated, the agent switches after proving the new key, the old key is gone) and the provider token (new
  one proven before the old one is revoked);
* a renewal that fails midway (the provider cabinet answers 503) leaves the old key, certificate, registration
  and agent signer in place and working, and sets the metric the SchoolgateRenewalFailed alert fires on;
* the production path (issuer "manual"): the first run hands over only the CSR and stops, the second run
  installs the certificate the УЦ issued, registers it and switches the agent;
* every record the portal handed over reaches the provider exactly once, no delivery attempt fails.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from agent.conftest import _write_pki  # noqa: E402 - the agent tests' test PKI
from sim.simclient import SimProcess, dossier  # noqa: E402 - the simulator area's scripted client

from schoolgate.agent.harness import AgentProcess  # noqa: E402
from schoolgate.esia.certhash import certificate_info, client_certificate_hash  # noqa: E402

LOAD_S = float(os.environ.get("SCHOOLGATE_RENEWAL_LOAD_S", "300"))
TOKEN_LIFETIME_S = 60
REFRESH_MARGIN_S = 20  # the agent refreshes 20 s before expiry: every ~40 s
PLAYBOOK_DIR = Path(__file__).with_name("renewal")
VENV_BIN = Path(sys.executable).parent


@dataclass
class Load:
    """Portal traffic: `workers` threads each posting one grade record after another."""

    agent: AgentProcess
    workers: int = 3
    pause_s: float = 0.05
    accepted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self) -> None:
        while not self._stop.is_set():
            rec = {
                "record_id": str(uuid.uuid4()),
                "school_id": "school-001",
                "pupil_id": "p-" + uuid.uuid4().hex[:8],
                "subject": "Математика",
                "grade": 4,
                "date": "2026-11-20",
                "teacher_id": "t-1",
            }
            t0 = time.monotonic()
            try:
                status, body = self.agent.request("POST", "/v1/records/grade", rec, timeout=10)
            except OSError as exc:
                status, body = 0, repr(exc)
            took = time.monotonic() - t0
            with self._lock:
                self.slowest_s = max(self.slowest_s, took)
                if status == 202:
                    self.accepted.append(rec["record_id"])
                else:
                    self.failures.append(f"HTTP {status}: {str(body)[:200]}")
            time.sleep(self.pause_s)

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


@dataclass
class LocalSchool:
    sim: SimProcess
    agent: AgentProcess
    tmp: Path
    vars: dict[str, Any]
    inventory: Path
    service_id: str

    @property
    def signing(self) -> Path:
        return Path(self.vars["renewal_signing_cert_dir"])

    def playbook(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.tmp / "facts"),  # own fact cache
        }
        return subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(self.inventory),
                str(path),
                "-e",
                f"@{self.tmp / 'vars.json'}",
                *args,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def renew(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.playbook(ROOT / "playbooks" / "renew.yml", *args)

    def events(self) -> list[dict[str, Any]]:
        path = Path(self.vars["renewal_events_file"])
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def agent_status(self) -> dict[str, Any]:
        return json.loads((self.agent.dir / "credentials.json").read_text())

    def registered_hash(self) -> str:
        r = requests.get(
            f"{self.sim.base}/cabinet/v1/services/{self.service_id}",
            headers={"X-Access-Code": self.vars["renewal_access_code"]},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["certificate_hash"])

    def tokens(self) -> dict[str, str]:
        r = requests.get(
            f"{self.sim.base}/cabinet/v1/services/{self.service_id}/tokens",
            headers={"X-Access-Code": self.vars["renewal_access_code"]},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return {t["token_id"]: t["status"] for t in r.json()["tokens"]}


def _metrics(agent: AgentProcess) -> dict[str, float]:
    text = agent.request("GET", "/metrics", signed=False)[1]
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _queued(agent: AgentProcess) -> int:
    with sqlite3.connect(agent.db_path) as c:
        return int(c.execute("SELECT COUNT(*) FROM records WHERE state = 0").fetchone()[0])


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def local_school(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSchool]:
    tmp = tmp_path_factory.mktemp("renewal")
    pki = _write_pki(tmp / "pki", "renewal-test")
    old_bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(pki["ca"])
    sim = SimProcess(
        tmp / "sim-state",
        "--tls-cert",
        str(pki["cert"]),
        "--tls-key",
        str(pki["key"]),
        "--esia-token-lifetime",
        str(TOKEN_LIFETIME_S),
        "--log-level",
        "warning",
    )
    sim.base = f"https://127.0.0.1:{sim.port}"
    sim.start()
    agent: AgentProcess | None = None
    try:
        r = requests.post(sim.base + "/region/v1/dossiers", json=dossier(), timeout=30)
        assert r.status_code == 201, r.text
        name = "RENEW" + uuid.uuid4().hex[:8].upper()
        user = os.environ.get("USER") or "root"
        variables: dict[str, Any] = {
            "ansible_become": False,
            "ansible_python_interpreter": sys.executable,
            "test_school_subject": {"C": "RU", "O": "Тестовая школа", "CN": "renewal.test"},
            "test_initial_cert_days": 20,  # < renewal_signing_cert_threshold_days (30): renewal is due
            "test_initial_token_lifetime_s": 3 * 86400,  # < renewal_token_threshold_s (7 days): due
            "renewal_kinds": ["provider_token", "signing_cert"],
            "renewal_events_file": str(tmp / "events" / "renewal-events.jsonl"),
            "renewal_metrics_file": str(tmp / "textfile" / "schoolgate_renewal.prom"),
            "renewal_provider_base_url": sim.base,
            "renewal_provider_ca_file": str(pki["ca"]),
            "renewal_access_code": r.json()["access_code"],
            "renewal_service_name": name,
            "renewal_service_api_url": "http://127.0.0.1:9/api",
            "renewal_signing_cert_dir": str(tmp / "signing"),
            "renewal_signing_cert_owner": user,
            "renewal_signing_cert_group": "root",
            "renewal_signing_cert_issuer": "provider_ca",
            "renewal_token_path": str(tmp / "tokens" / "provider-token"),
            "renewal_token_owner": user,
            "renewal_token_group": "root",
            "renewal_agent_status_file": str(tmp / "agent" / "credentials.json"),
            "renewal_agent_switch_timeout_s": 60,
        }
        (tmp / "tokens").mkdir()
        inventory = tmp / "inventory.ini"
        inventory.write_text("[schools]\nrenewal-local-school ansible_connection=local\n")
        (tmp / "vars.json").write_text(json.dumps(variables))
        school = LocalSchool(sim, None, tmp, variables, inventory, "")  # type: ignore[arg-type]
        setup = school.playbook(PLAYBOOK_DIR / "setup_school.yml")
        assert setup.returncode == 0, _tail(setup)
        services = requests.get(
            sim.base + "/cabinet/v1/services", headers={"X-Access-Code": variables["renewal_access_code"]}
        ).json()["services"]
        school.service_id = next(s["service_id"] for s in services if s["name"] == name)
        agent = AgentProcess(
            tmp / "agent",
            {
                "provider": {"base_url": sim.base, "ca_file": str(pki["ca"]), "timeout_s": 10},
                "esia": {
                    "base_url": sim.base,
                    "client_id": name,
                    "scope": "edu_intake",
                    "redirect_uri": "http://127.0.0.1:9/esia/callback",
                    "refresh_margin_s": REFRESH_MARGIN_S,
                    "signer": {
                        "type": "openssl-gost",
                        "key": str(tmp / "signing" / "key.pem"),
                        "cert": str(tmp / "signing" / "cert.pem"),
                    },
                },
                "delivery": {"enabled": True, "batch_size": 200, "idle_poll_s": 0.2},
            },
        ).start()
        school.agent = agent
        variables["renewal_agent_reload_command"] = ["kill", "-HUP", str(agent.proc.pid)]  # type: ignore[union-attr]
        (tmp / "vars.json").write_text(json.dumps(variables))
        yield school
    finally:
        if agent is not None:
            agent.stop()
        sim.stop()
        if old_bundle is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old_bundle


def test_renewal_under_load_zero_failures(local_school: LocalSchool) -> None:
    s = local_school
    load = Load(s.agent)
    started = time.monotonic()
    load.start()
    try:
        time.sleep(min(45.0, LOAD_S / 6))  # the first background token refresh happens at ~40 s

        # -- 1. signing certificate + provider token renewed under load ------------------------------------
        old_key = (s.signing / "key.pem").read_bytes()
        old_cert = (s.signing / "cert.pem").read_bytes()
        old_hash = client_certificate_hash(old_cert)
        old_token = (Path(s.vars["renewal_token_path"])).read_text()
        old_token_id = json.loads(Path(s.vars["renewal_token_path"] + ".json").read_text())["token_id"]
        assert s.registered_hash() == old_hash
        assert s.agent_status()["signer"]["certificate_hash"] == old_hash

        planned = s.renew("--check", "--diff")  # the plan, and nothing changes
        assert planned.returncode == 0, _tail(planned)
        assert "Сертификат подписи будет продлён" in planned.stdout, _tail(planned)
        assert (s.signing / "key.pem").read_bytes() == old_key
        assert not (s.signing / "key.next.pem").exists() and s.events() == []
        assert Path(s.vars["renewal_token_path"]).read_text() == old_token

        renewed = s.renew()
        assert renewed.returncode == 0, _tail(renewed)

        new_cert = (s.signing / "cert.pem").read_bytes()
        new_hash = client_certificate_hash(new_cert)
        assert new_hash != old_hash
        assert certificate_info(new_cert)["days_left"] > 300  # 365-day certificate from the УЦ
        assert s.registered_hash() == new_hash, "the provider does not see the new certificate"
        status = s.agent_status()
        assert status["signer"]["certificate_hash"] == new_hash, status
        assert status["last_reload"]["outcome"] == "ok", status
        # the old key is gone: no file in the signing directory carries it, no *.prev / *.next left over
        leftovers = sorted(p.name for p in s.signing.iterdir())
        assert not [n for n in leftovers if ".prev." in n or ".next." in n], leftovers
        assert all(p.read_bytes() != old_key for p in s.signing.iterdir() if p.is_file())
        assert (s.signing / "key.pem").read_bytes() != old_key
        # provider token: the new one is in the file and works, the old one was revoked after that
        new_token = Path(s.vars["renewal_token_path"]).read_text()
        new_token_id = json.loads(Path(s.vars["renewal_token_path"] + ".json").read_text())["token_id"]
        assert new_token != old_token and new_token_id != old_token_id
        assert s.tokens()[old_token_id] == "revoked" and s.tokens()[new_token_id] == "active"
        catalogue = s.sim.base + "/services/v1/catalogue"
        assert requests.get(catalogue, headers={"Authorization": f"Bearer {new_token}"}, timeout=30).ok
        refused = requests.get(catalogue, headers={"Authorization": f"Bearer {old_token}"}, timeout=30)
        assert refused.status_code == 401
        outcomes = {(e["kind"], e["outcome"]) for e in s.events()}
        assert {("signing_cert", "success"), ("provider_token", "success")} <= outcomes, s.events()
        metrics_file = Path(s.vars["renewal_metrics_file"])
        assert 'schoolgate_renewal_last_outcome_ok{kind="signing_cert"} 1' in metrics_file.read_text()

        again = s.renew()  # nothing due any more: a second run changes nothing
        assert again.returncode == 0 and " changed=0 " in again.stdout, _tail(again)
        assert [e["outcome"] for e in s.events()[-2:]] == ["skipped", "skipped"], s.events()[-2:]

        # -- 2. a renewal that fails midway: the provider cabinet is down -----------------------------------
        key_after_first = (s.signing / "key.pem").read_bytes()
        refreshes_before_failure = s.agent_status()["token"]["refreshes"]
        r = requests.put(
            s.sim.base + "/admin/v1/faults",
            json={"seed": 3, "rate_5xx": 1.0, "status_5xx": 503, "paths": ["/cabinet/"]},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        try:
            failed = s.renew("-e", "renewal_force=true", "-e", '{"renewal_kinds": ["signing_cert"]}')
        finally:
            requests.delete(s.sim.base + "/admin/v1/faults", timeout=10)
        assert failed.returncode != 0, _tail(failed)
        assert "шаг register" in failed.stdout, _tail(failed)
        last = [e for e in s.events() if e["kind"] == "signing_cert"][-1]
        assert last["outcome"] == "failure" and last["step"] == "register", last
        prom = metrics_file.read_text()
        # the state SchoolgateRenewalFailed fires on (expr: schoolgate_renewal_last_outcome_ok == 0)
        assert 'schoolgate_renewal_last_outcome_ok{kind="signing_cert"} 0' in prom, prom
        assert 'schoolgate_renewal_last_failure_timestamp_seconds{kind="signing_cert"}' in prom, prom
        # old credentials untouched and still the ones in use
        assert (s.signing / "key.pem").read_bytes() == key_after_first
        assert (s.signing / "cert.pem").read_bytes() == new_cert
        assert s.registered_hash() == new_hash
        assert s.agent_status()["signer"]["certificate_hash"] == new_hash

        # -- 3. production path: the CSR goes to the УЦ by hand, a second run installs the issued file -------
        csr_dir = s.tmp / "csr"
        manual = [
            "-e",
            "renewal_force=true",
            "-e",
            json.dumps(
                {
                    "renewal_kinds": ["signing_cert"],
                    "renewal_signing_cert_issuer": "manual",
                    "renewal_signing_cert_csr_dir": str(csr_dir),
                }
            ),
        ]
        first = s.renew(*manual)
        assert first.returncode == 0, _tail(first)
        last = [e for e in s.events() if e["kind"] == "signing_cert"][-1]
        assert last["outcome"] == "skipped" and last["step"] == "awaiting_certificate", last
        assert (s.signing / "key.next.pem").exists() and (s.signing / "cert.pem").read_bytes() == new_cert
        csr = (csr_dir / "renewal-local-school.next.csr").read_text()
        assert "PRIVATE KEY" not in csr  # only the request left the "host"
        r = requests.post(  # what the school's admin does at the УЦ
            s.sim.base + "/ca/v1/certificates",
            json={"csr": csr, "days": 365},
            headers={"X-Access-Code": s.vars["renewal_access_code"]},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        (s.tmp / "uc").mkdir()
        (s.tmp / "uc" / "school.crt").write_text(r.json()["certificate"])
        (s.tmp / "uc" / "root.crt").write_text(r.json()["chain"])
        second = s.renew(
            *manual,
            "-e",
            json.dumps(
                {
                    "renewal_signing_cert_certificate_src": str(s.tmp / "uc" / "school.crt"),
                    "renewal_signing_cert_trust_anchors": [str(s.tmp / "uc" / "root.crt")],
                }
            ),
        )
        assert second.returncode == 0, _tail(second)
        third_hash = client_certificate_hash((s.signing / "cert.pem").read_bytes())
        assert third_hash not in (old_hash, new_hash)
        assert s.registered_hash() == third_hash
        assert s.agent_status()["signer"]["certificate_hash"] == third_hash
        assert not [p.name for p in s.signing.iterdir() if ".prev." in p.name or ".next." in p.name]
        assert 'schoolgate_renewal_last_outcome_ok{kind="signing_cert"} 1' in metrics_file.read_text()

        # -- 4. the rest of the load window --------------------------------------------------------------
        time.sleep(max(0.0, LOAD_S - (time.monotonic() - started)))
    finally:
        load.stop()
    elapsed = time.monotonic() - started

    deadline = time.monotonic() + 120
    while _queued(s.agent) and time.monotonic() < deadline:
        time.sleep(0.5)
    status = s.agent_status()
    metrics = _metrics(s.agent)
    print(
        f"\nrenewal under load: {elapsed:.0f} s, {len(load.accepted)} records accepted, "
        f"{len(load.failures)} failed, slowest request {load.slowest_s:.2f} s, "
        f"token refreshes {status['token']['refreshes']} (failures {status['token']['failures']}), "
        f"signer reloads {status['reloads']}"
    )
    assert load.failures == [], load.failures[:5]
    assert _queued(s.agent) == 0
    # the old (= current) credentials kept working after the failed renewal: tokens still renewed with them
    assert status["token"]["refreshes"] > refreshes_before_failure
    assert status["token"]["refreshes"] >= 4 * LOAD_S / 300, status
    assert status["token"]["last_error"] is None, status
    for name, value in metrics.items():
        if name.startswith("schoolgate_agent_records_failed_total") or name.startswith(
            "schoolgate_agent_records_dead_total"
        ):
            assert value == 0, (name, value)
    assert metrics.get('schoolgate_agent_delivery_batches_total{outcome="unauthorized"}', 0) == 0
    # A background refresh may be refused in the seconds between the registration update and the agent's
    # switch; the old token is still valid then, so nothing waits or fails (checked above), and it is retried.
    stored = 0
    token = Path(s.vars["renewal_token_path"]).read_text()
    for i in range(0, len(load.accepted), 100):
        chunk = load.accepted[i : i + 100]
        r = requests.get(
            s.sim.base + "/edu/v1/records",
            params=[("record_id", x) for x in chunk] + [("limit", "10000")],
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        ids = [row["record_id"] for row in r.json()["records"]]
        assert len(ids) == len(set(ids)) == len(chunk)
        stored += len(ids)
    assert stored == len(load.accepted)
