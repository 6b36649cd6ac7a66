"""The converged lab's school is wired to the lab's provider end to end (issues 6 and 9).

After site.yml: school-001 is onboarded (access code only in Ansible Vault on the controller), its signing
certificate was issued by the simulator's УЦ from a CSR made on the school, the service is registered with the
provider cabinet (provider token on the host, 0600), and a record POSTed to the school's agent arrives at the
provider — delivered with an ESIA client_credentials token signed by the school's key, over verified TLS.
"""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path

import pytest

AGENT_PY = "/opt/schoolgate-agent/venv/bin/python"
SIGNING = "/etc/schoolgate/signing"

# Runs inside school-001 with the agent's own venv: sign the request with the agent's HMAC secret (as the
# portal does) and POST one grade record to the local agent API.
PUSH = """
import json, sys, urllib.request
from schoolgate.agent.auth import sign
secret = open('/etc/schoolgate/agent-hmac.key', 'rb').read().strip()
body = sys.argv[1].encode()
req = urllib.request.Request('http://127.0.0.1:8700/v1/records/grade', data=body, method='POST',
                             headers={**sign(secret, 'POST', '/v1/records/grade', body),
                                      'Content-Type': 'application/json'})
print(urllib.request.urlopen(req, timeout=30).status)
"""

# Asks the provider (https://provider, verified with the CA bundle the lab installed) which records of this
# school's service it holds, authenticated with the provider token the registration role stored.
QUERY = """
import json, ssl, sys, urllib.request
token = open('/etc/schoolgate/provider-token').read().strip()
ctx = ssl.create_default_context(cafile='/etc/schoolgate/provider-ca.pem')
req = urllib.request.Request('https://provider/edu/v1/records?kind=grade&record_id=' + sys.argv[1],
                             headers={'Authorization': 'Bearer ' + token})
print(urllib.request.urlopen(req, context=ctx, timeout=30).read().decode())
"""


def _py(lab, host: str, script: str, *args: str) -> str:
    rc, out = lab.exec(host, AGENT_PY, "-c", script, *args)
    assert rc == 0, out[-2000:]
    return out.strip().splitlines()[-1]


def _state(lab) -> Path:
    return lab.inventory.parent / "lab" / "state" / f"wiring-{lab.ns or 'default'}"


@pytest.mark.lab
def test_school_certificate_comes_from_the_simulated_uc(converged_lab):
    cert = f"{SIGNING}/cert.pem"
    rc, issuer = converged_lab.exec("school-001", "openssl", "x509", "-in", cert, "-noout", "-issuer")
    assert rc == 0, issuer
    assert "schoolgate simulated accredited CA" in issuer
    rc, mode = converged_lab.exec("school-001", "stat", "-c", "%a %U", f"{SIGNING}/key.pem")
    assert rc == 0 and mode.split() == ["600", "schoolgate"], mode
    # Installed is exactly what the УЦ returned for the CSR (kept on the controller like a real УЦ's file).
    issued = (_state(converged_lab) / "signing" / "issued" / "school-001.crt").read_text()
    rc, local = converged_lab.exec("school-001", "cat", cert)
    assert rc == 0 and issued.strip() in local, "installed certificate differs from the one the УЦ issued"


@pytest.mark.lab
def test_access_code_only_in_ansible_vault(converged_lab):
    vault = _state(converged_lab) / "host_vars" / "school-001" / "registration_vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    assert stat.S_IMODE(vault.stat().st_mode) == 0o600
    rc, token = converged_lab.exec("school-001", "stat", "-c", "%a %U", "/etc/schoolgate/provider-token")
    assert rc == 0 and token.split() == ["600", "schoolgate"], token


@pytest.mark.lab
def test_record_posted_to_the_agent_arrives_at_the_provider(converged_lab):
    record_id = str(uuid.uuid4())
    record = {
        "record_id": record_id,
        "school_id": "school-001",
        "pupil_id": "lab-pupil-1",
        "subject": "Математика",
        "grade": 5,
        "date": "2026-11-20",
        "teacher_id": "lab-teacher-1",
    }
    assert _py(converged_lab, "school-001", PUSH, json.dumps(record)) == "202"
    deadline = time.monotonic() + 120
    found: dict = {}
    while time.monotonic() < deadline:
        found = json.loads(_py(converged_lab, "school-001", QUERY, record_id))
        if found.get("count"):
            break
        time.sleep(3)
    assert found.get("count") == 1, f"record {record_id} not at the provider after 120 s: {found}"
    stored = found["records"][0]["record"]
    assert stored["record_id"] == record_id and stored["pupil_id"] == "lab-pupil-1" and stored["grade"] == 5
    # Delivered with an ESIA token (client_credentials, client_secret signed by the school's key) that the
    # provider's ESIA issued to this service — not with the cabinet token.
    rc, journal = converged_lab.exec(
        "provider", "journalctl", "-u", "schoolgate-sim", "--no-pager", "-o", "cat", "--since", "-2h"
    )
    assert rc == 0
    issued = [line for line in journal.splitlines() if "esia.token_issued" in line and "school-001" in line]
    assert issued, "the provider issued no ESIA token to school-001"
