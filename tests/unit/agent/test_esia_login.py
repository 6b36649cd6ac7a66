"""Portal user login through the real simulated ESIA: state, v2 /ac, v3 code exchange, token check, person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from sim.simclient import onboard

from schoolgate.agent.esia_login import verify_assertion
from schoolgate.agent.harness import AgentProcess, free_port

from .conftest import delivery_config


@pytest.fixture
def login_agent(tmp_path: Path, tls_sim: Any, pki: dict[str, Path]) -> Any:
    port = free_port()
    school = onboard(tls_sim.base, tmp_path / "school", redirect_base=f"http://127.0.0.1:{port}")
    certs = requests.get(tls_sim.base + "/aas/oauth2/certs", timeout=10).json()["certificates"]
    cert_files = []
    for i, pem in enumerate(certs):
        p = tmp_path / f"esia-{i}.pem"
        p.write_text(pem)
        cert_files.append(str(p))
    cfg = delivery_config(tls_sim, school, pki["ca"])
    cfg["listen"] = {"host": "127.0.0.1", "port": port}
    cfg["delivery"]["enabled"] = False
    cfg["esia"].update(
        verify_certificates=cert_files,
        issuer="http://esia-sim.schoolgate.test/",
        redirect_uri=f"http://127.0.0.1:{port}/esia/callback",
    )
    agent = AgentProcess(tmp_path / "agent", cfg)
    agent.port = port
    agent.config["listen"]["port"] = port
    agent.start()
    yield agent, tls_sim
    agent.stop()


def _to_esia_and_back(agent: AgentProcess, sim: Any, decision: str = "allow") -> requests.Response:
    s = requests.Session()
    r = s.get(agent.url + "/esia/login?return_to=/cabinet", allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    assert r.headers["Location"].startswith(sim.base + "/aas/oauth2/v2/ac?")
    page = s.get(r.headers["Location"], timeout=30)
    assert page.status_code == 200, page.text
    login_id = page.text.split('name="login_id" value="')[1].split('"')[0]
    action = page.text.split('action="')[1].split('"')[0]
    data = (
        {"login_id": login_id, "oid": "1000001"}
        if decision == "allow"
        else {"login_id": login_id, "decision": "deny"}
    )
    back = s.post(sim.base + action, data=data, allow_redirects=False, timeout=30)
    assert back.status_code == 302, back.text
    callback = back.headers["Location"]
    assert callback.startswith(agent.url + "/esia/callback?")
    return s.get(callback, headers={"Accept": "application/json"}, timeout=60), callback


def test_login_yields_a_verifiable_identity_assertion(login_agent: Any) -> None:
    agent, sim = login_agent
    resp, callback = _to_esia_and_back(agent, sim)
    assert resp.status_code == 200, resp.text
    claims = verify_assertion(agent.secret, resp.json()["assertion"])
    assert claims["sub"] == "1000001" and claims["return_to"] == "/cabinet"
    assert claims["person"]["lastName"] == "Ученикова"
    with pytest.raises(ValueError, match="signature"):
        verify_assertion(b"another secret of 32 bytes......", resp.json()["assertion"])
    # The state is single use: replaying the callback is refused.
    again = requests.get(callback, headers={"Accept": "application/json"}, timeout=30)
    assert again.status_code == 400 and again.json()["errors"][0]["field"] == "state"
    assert "Ученикова" not in agent.log_tail(50000)  # the person never reaches the log


def test_unknown_state_and_denied_login_are_refused_clearly(login_agent: Any) -> None:
    agent, sim = login_agent
    r = requests.get(
        agent.url + "/esia/callback?code=x&state=00000000-0000-4000-8000-000000000000", timeout=10
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "state"
    resp, _ = _to_esia_and_back(agent, sim, decision="deny")
    assert resp.status_code == 403, resp.text
    assert resp.json()["errors"][0]["field"] == "esia"
    r = requests.get(
        agent.url + "/esia/login?return_to=https://evil.example/", allow_redirects=False, timeout=10
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "return_to"
