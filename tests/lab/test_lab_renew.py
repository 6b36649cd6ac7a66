"""playbooks/renew.yml on the converged lab school (issue 14): every credential renewed under load.

Forced renewal of the provider token, the GOST signing certificate (new key and CSR on the school, issued by
the simulator's УЦ, registration updated, agent switched by SIGHUP, old key removed) and the portal TLS
certificate (nginx validated, then reloaded), while the school's agent takes records and the portal answers
HTTPS. Then a renewal that fails midway (provider down): the old credentials keep working and the
SchoolgateRenewalFailed alert fires in the lab's Prometheus. The controller keeps the renewed certificate
where the signing_cert role looks for it, so the stage playbooks change nothing afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from schoolgate.esia.certhash import client_certificate_hash

SCHOOL = "school-001"
AGENT_PY = "/opt/schoolgate-agent/venv/bin/python"
AGENT = "/opt/schoolgate-agent/venv/bin/schoolgate"
SIGNING = "/etc/schoolgate/signing"
PORTAL_CERT = "/etc/nginx/schoolgate-tls/fullchain.pem"
EVENTS = "/var/lib/schoolgate/renewal-events.jsonl"
PROM = "/var/lib/prometheus/node-exporter/schoolgate_renewal.prom"
CA_ON_SCHOOL = "/root/renew-test-lab-ca.pem"
STOP = "/root/renew-test.stop"
RESULT = "/root/renew-test.json"

# Load inside the school while renew.yml runs: signed single records to the agent (every ~25 ms) and an HTTPS
# request to the portal through nginx (every ~0.5 s, verified against the lab CA). Any error is counted.
LOAD = r"""
import json, os, ssl, sys, time, urllib.error, urllib.request, uuid
from schoolgate.agent.auth import sign
fqdn, ca, stop, result = sys.argv[1:5]
secret = open('/etc/schoolgate/agent-hmac.key', 'rb').read().strip()
ctx = ssl.create_default_context(cafile=ca)
out = {'records_ok': 0, 'records_failed': 0, 'https_ok': 0, 'https_failed': 0, 'errors': [], 'ids': []}
next_https = 0.0
while not os.path.exists(stop):
    rid = str(uuid.uuid4())
    body = json.dumps({'record_id': rid, 'school_id': 'school-001', 'pupil_id': 'renew-load',
                       'subject': 'Math', 'grade': 4, 'date': '2026-11-20', 'teacher_id': 't-1'}).encode()
    req = urllib.request.Request('http://127.0.0.1:8700/v1/records/grade', data=body, method='POST',
                                 headers={**sign(secret, 'POST', '/v1/records/grade', body),
                                          'Content-Type': 'application/json'})
    try:
        urllib.request.urlopen(req, timeout=10).read()
        out['records_ok'] += 1
        out['ids'].append(rid)
    except Exception as exc:
        out['records_failed'] += 1
        out['errors'].append('agent: %s' % exc)
    if time.monotonic() >= next_https:
        next_https = time.monotonic() + 0.5
        try:
            conn_req = urllib.request.Request('https://%s/' % fqdn)
            handler = urllib.request.HTTPSHandler(context=ctx)
            opener = urllib.request.build_opener(handler)
            # the portal name resolves to this host inside the lab
            try:
                opener.open(conn_req, timeout=10).read()
            except urllib.error.HTTPError:
                pass  # any HTTP answer means TLS and nginx are up
            out['https_ok'] += 1
        except Exception as exc:
            out['https_failed'] += 1
            out['errors'].append('portal: %s' % exc)
    time.sleep(0.025)
json.dump(out, open(result, 'w'))
"""

ALERTS = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/alerts').read().decode())"

QUERY = """
import json, ssl, sys, urllib.request
token = open('/etc/schoolgate/provider-token').read().strip()
ctx = ssl.create_default_context(cafile='/etc/schoolgate/provider-ca.pem')
found = 0
for rid in sys.argv[1:]:
    req = urllib.request.Request('https://provider/edu/v1/records?kind=grade&record_id=' + rid,
                                 headers={'Authorization': 'Bearer ' + token})
    found += json.loads(urllib.request.urlopen(req, context=ctx, timeout=30).read()).get('count', 0)
print(found)
"""


def _ok(lab, host: str, *cmd: str) -> str:
    rc, out = lab.exec(host, *cmd)
    assert rc == 0, f"{' '.join(cmd)}: {out[-2000:]}"
    return out


def _serial(lab, path: str) -> str:
    return _ok(lab, SCHOOL, "openssl", "x509", "-in", path, "-noout", "-serial").strip().split("=")[-1]


def _cert_hash(lab, path: str) -> str:
    return client_certificate_hash(_ok(lab, SCHOOL, "cat", path))


def _events(lab) -> list[dict]:
    return [json.loads(line) for line in _ok(lab, SCHOOL, "cat", EVENTS).splitlines() if line.strip()]


def _prom(lab) -> dict[str, float]:
    text = _ok(lab, SCHOOL, "cat", PROM)
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^schoolgate_renewal_last_outcome_ok\{kind="([a-z_]+)"\} (\S+)$', text, re.M)
    }


def _renew_signing_cert(lab) -> subprocess.CompletedProcess[str]:
    """Forced renewal of the signing certificate only."""
    only = '{"renewal_kinds": ["signing_cert"]}'
    return lab.playbook(
        "playbooks/renew.yml", "-l", SCHOOL, "-e", "renewal_force=true", "-e", only, timeout=900
    )


def _changed(recap: str) -> list[int]:
    return [int(n) for n in re.findall(r"changed=(\d+)", recap)]


@pytest.fixture(scope="module")
def renewed(converged_lab, tmp_path_factory: pytest.TempPathFactory) -> dict:
    lab = converged_lab
    before = {
        "signing_serial": _serial(lab, f"{SIGNING}/cert.pem"),
        "tls_serial": _serial(lab, PORTAL_CERT),
        "nginx_pid": _ok(lab, SCHOOL, "cat", "/run/nginx.pid").strip(),
        "agent_pid": _ok(
            lab, SCHOOL, "systemctl", "show", "-p", "MainPID", "--value", "schoolgate-agent"
        ).strip(),
        "token_id": json.loads(_ok(lab, SCHOOL, "cat", "/etc/schoolgate/provider-token.json"))["token_id"],
        "events": len(_events(lab)) if lab.exec(SCHOOL, "test", "-e", EVENTS)[0] == 0 else 0,
    }
    fqdn = f"{SCHOOL}.lab.schoolgate.test"  # the portal name; the lab's DNS resolves it to the school
    ca = lab.inventory.parent / "lab" / "state" / "ca" / "ca.crt"
    subprocess.run(["podman", "cp", str(ca), f"{lab.container(SCHOOL)}:{CA_ON_SCHOOL}"], check=True)
    lab.exec(SCHOOL, "rm", "-f", STOP, RESULT)
    load = subprocess.Popen(
        ["podman", "exec", lab.container(SCHOOL), AGENT_PY, "-c", LOAD, fqdn, CA_ON_SCHOOL, STOP, RESULT],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
        run = lab.playbook("playbooks/renew.yml", "-l", SCHOOL, "-e", "renewal_force=true", timeout=1200)
    finally:
        lab.exec(SCHOOL, "touch", STOP)
        load_out, _ = load.communicate(timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert load.returncode == 0, load_out[-2000:]
    return {
        "before": before,
        "run": run,
        "load": json.loads(_ok(lab, SCHOOL, "cat", RESULT)),
        "fqdn": fqdn,
    }


@pytest.mark.lab
def test_renewal_under_load_fails_no_request(converged_lab, renewed: dict) -> None:
    load = renewed["load"]
    assert load["records_failed"] == 0 and load["https_failed"] == 0, load["errors"][:5]
    assert load["records_ok"] > 100 and load["https_ok"] > 10, {k: v for k, v in load.items() if k != "ids"}
    # every record accepted during the renewal reaches the provider (delivered with the new certificate)
    sample = load["ids"][:: max(1, len(load["ids"]) // 40)]
    deadline = time.monotonic() + 180
    found = 0
    while time.monotonic() < deadline:
        status = json.loads(
            _ok(converged_lab, SCHOOL, AGENT, "agent", "-c", "/etc/schoolgate/agent.yaml", "status", "--json")
        )
        if status["queued"] == 0:
            break
        time.sleep(3)
    assert status["queued"] == 0 and status["dead"] == 0, status
    rc, out = converged_lab.exec(SCHOOL, AGENT_PY, "-c", QUERY, *sample)
    assert rc == 0, out[-2000:]
    found = int(out.strip().splitlines()[-1])
    assert found == len(sample), f"{found} of {len(sample)} sampled records at the provider"


@pytest.mark.lab
def test_signing_certificate_renewed_registered_and_agent_switched(converged_lab, renewed: dict) -> None:
    lab = converged_lab
    new_serial = _serial(lab, f"{SIGNING}/cert.pem")
    assert new_serial != renewed["before"]["signing_serial"]
    # old key retired; the new key stays on the school (0600, the agent's user)
    for leftover in ("key.prev.pem", "cert.prev.pem", "key.next.pem", "csr.next.pem"):
        assert lab.exec(SCHOOL, "test", "!", "-e", f"{SIGNING}/{leftover}")[0] == 0, leftover
    assert _ok(lab, SCHOOL, "stat", "-c", "%a %U", f"{SIGNING}/key.pem").split() == ["600", "schoolgate"]
    # the agent signs with the new certificate and never restarted
    state = json.loads(_ok(lab, SCHOOL, "cat", "/var/lib/schoolgate-agent/credentials.json"))
    assert state["last_reload"]["outcome"] == "ok", state
    assert state["signer"]["certificate_hash"] == _cert_hash(lab, f"{SIGNING}/cert.pem")
    agent_pid = _ok(lab, SCHOOL, "systemctl", "show", "-p", "MainPID", "--value", "schoolgate-agent").strip()
    assert agent_pid == renewed["before"]["agent_pid"]
    # the controller keeps what the УЦ issued, as the signing_cert role does (test_lab_wiring checks it too)
    issued = lab.inventory.parent / "lab" / "state" / f"wiring-{lab.ns or 'default'}" / "signing" / "issued"
    assert (issued / f"{SCHOOL}.crt").read_text().strip() in _ok(lab, SCHOOL, "cat", f"{SIGNING}/cert.pem")


@pytest.mark.lab
def test_portal_certificate_and_provider_token_renewed_without_restart(converged_lab, renewed: dict) -> None:
    lab = converged_lab
    assert _serial(lab, PORTAL_CERT) != renewed["before"]["tls_serial"]
    served = _ok(
        lab,
        SCHOOL,
        "sh",
        "-c",
        f"openssl s_client -connect 127.0.0.1:443 -servername {renewed['fqdn']} </dev/null 2>/dev/null"
        " | openssl x509 -noout -serial",
    )
    assert served.strip().split("=")[-1] == _serial(lab, PORTAL_CERT)
    assert _ok(lab, SCHOOL, "cat", "/run/nginx.pid").strip() == renewed["before"]["nginx_pid"], (
        "nginx restarted"
    )
    meta = json.loads(_ok(lab, SCHOOL, "cat", "/etc/schoolgate/provider-token.json"))
    assert meta["token_id"] != renewed["before"]["token_id"]
    assert _ok(lab, SCHOOL, "stat", "-c", "%a %U", "/etc/schoolgate/provider-token").split() == [
        "600",
        "schoolgate",
    ]


@pytest.mark.lab
def test_every_renewal_is_an_event_and_a_metric(converged_lab, renewed: dict) -> None:
    events = _events(converged_lab)[renewed["before"]["events"] :]
    outcomes = {(e["kind"], e["outcome"]) for e in events}
    assert {("provider_token", "success"), ("signing_cert", "success"), ("tls_cert", "success")} <= outcomes
    assert not [e for e in events if e["outcome"] == "failure"], events
    assert _prom(converged_lab) == {"provider_token": 1.0, "signing_cert": 1.0, "tls_cert": 1.0}
    log = renewed["run"].stdout
    token = json.loads(_ok(converged_lab, SCHOOL, "cat", "/etc/schoolgate/provider-token.json"))
    assert "BEGIN" not in log and "PRIVATE" not in log
    assert (
        token["token_id"]
        and _ok(converged_lab, SCHOOL, "cat", "/etc/schoolgate/provider-token").strip() not in log
    )


@pytest.mark.lab
def test_stage_playbooks_and_a_second_renew_change_nothing(converged_lab, renewed: dict) -> None:
    for playbook in ("playbooks/renew.yml", "playbooks/signing_cert.yml", "playbooks/tls.yml"):
        run = converged_lab.playbook(playbook, "-l", SCHOOL, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:]
        recap = run.stdout[run.stdout.rfind("PLAY RECAP") :]
        assert _changed(recap) and max(_changed(recap)) == 0, f"{playbook}: {recap}"


@pytest.mark.lab
def test_renewal_failing_midway_keeps_old_credentials_and_fires_the_alert(
    converged_lab, renewed: dict
) -> None:
    lab = converged_lab
    serial = _serial(lab, f"{SIGNING}/cert.pem")
    lab.exec("provider", "systemctl", "stop", "schoolgate-sim")
    try:
        run = _renew_signing_cert(lab)
    finally:
        _ok(lab, "provider", "systemctl", "start", "schoolgate-sim")
    assert run.returncode != 0
    assert "Действующий сертификат" in run.stdout, run.stdout[-3000:]
    assert _serial(lab, f"{SIGNING}/cert.pem") == serial
    for leftover in ("key.prev.pem", "cert.prev.pem"):
        assert lab.exec(SCHOOL, "test", "!", "-e", f"{SIGNING}/{leftover}")[0] == 0, leftover
    last = _events(lab)[-1]
    assert (last["kind"], last["outcome"]) == ("signing_cert", "failure"), last
    assert _prom(lab)["signing_cert"] == 0.0
    # the lab's Prometheus scrapes the school's node exporter and fires the renewal alert
    deadline = time.monotonic() + 240
    alerts: list = []
    while time.monotonic() < deadline:
        rc, out = lab.exec("monitor", "python3", "-c", ALERTS)
        if rc == 0:
            alerts = [
                a
                for a in json.loads(out)["data"]["alerts"]
                if a["labels"].get("alertname") == "SchoolgateRenewalFailed" and a["state"] == "firing"
            ]
            if alerts:
                break
        time.sleep(10)
    assert alerts and alerts[0]["labels"]["kind"] == "signing_cert", alerts
    # the agent never left the certificate that is still installed
    state = json.loads(_ok(lab, SCHOOL, "cat", "/var/lib/schoolgate-agent/credentials.json"))
    assert state["signer"]["certificate_hash"] == _cert_hash(lab, f"{SIGNING}/cert.pem")


@pytest.fixture(scope="module", autouse=True)
def _clean_up(converged_lab):
    yield
    # a successful renewal clears the failure (metric back to 1, alert resolved) for the tests that follow
    run = _renew_signing_cert(converged_lab)
    assert run.returncode == 0, run.stdout[-3000:]
    converged_lab.exec(SCHOOL, "rm", "-f", CA_ON_SCHOOL, STOP, RESULT)
