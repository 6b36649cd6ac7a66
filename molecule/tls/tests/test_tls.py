"""Molecule verify for the tls role on Debian 12 and 13: the portal as seen from outside nginx.

Every protocol verdict is checked twice: by tls_probe and by `openssl s_client` in the same container.
Container-side evidence is gathered by one script (evidence.py) because each command through the lab
connection costs seconds. The last two tests run ansible-playbook again and must stay last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

TRUST = "/etc/nginx/schoolgate-tls/trust.pem"
PROFILE_CIPHERS = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
]
EXPECTED = {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": True}
EVIDENCE_SCRIPT = (Path(__file__).parent / "evidence.py").read_text()


def name(host) -> str:
    return host.backend.get_hostname()


def run_module(target: str, module: str, args: dict, *extra: str) -> dict:
    """Run an Ansible module on a scenario host (molecule/conftest.py gives `host` the podman backend,
    which has no host.ansible)."""
    proc = subprocess.run(
        [
            "ansible",
            target,
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "-m",
            module,
            "-a",
            json.dumps(args),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        },
    )
    data, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
    return data["plays"][0]["tasks"][0]["hosts"][target]


def probe(host):
    args = {"host": "127.0.0.1", "port": 443, "server_name": name(host), "ca_path": TRUST, "http_port": 80}
    result = run_module(name(host), "tls_probe", args)
    assert not result.get("failed"), result.get("msg")
    return result


@pytest.fixture(scope="module")
def facts(host):
    return probe(host)


@pytest.fixture(scope="module")
def ev(host):
    out = host.run("python3 -c %s %s", EVIDENCE_SCRIPT, name(host))
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def test_nginx_running_and_enabled(ev):
    assert ev["nginx_active"] == "active" and ev["nginx_enabled"] == "enabled"
    assert re.search(r":443\s", ev["listening"]) and re.search(r":80\s", ev["listening"])


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
def test_protocols_probe_agrees_with_s_client(facts, ev, version):
    assert ev["s_client"][version]["accepted"] is EXPECTED[version], ev["s_client"][version]["tail"]
    status = facts["protocols"][version]["status"]
    # "unsupported_by_probe" would mean the probe could not even offer the version: not a pass.
    assert status == ("accepted" if EXPECTED[version] else "refused"), facts["protocols"][version]


def test_sslv3_reported_honestly(facts):
    assert facts["protocols"]["SSLv3"]["status"] in ("unsupported_by_probe", "refused")


def test_only_profile_ciphers(facts, ev):
    accepted = facts["tls12_ciphers"]
    assert set(accepted) <= set(PROFILE_CIPHERS), accepted
    # RSA key: exactly the six RSA suites of the profile.
    assert set(accepted) == {c for c in PROFILE_CIPHERS if "ECDSA" not in c}
    assert not any(ev["weak_ciphers"].values()), ev["weak_ciphers"]
    assert facts["tls13_cipher"].startswith("TLS_")


def test_full_chain_served_and_trusted(host, facts, ev):
    assert facts["chain_length"] == 2
    assert facts["chain_complete"] and facts["chain_trusted"] is True, facts["chain_error"]
    assert facts["hostname_match"] is True
    assert facts["certificate"]["common_name"] == name(host)
    assert facts["certificate"]["days_left"] > 300
    assert "intermediate" in facts["chain"][1]["subject"]
    assert ev["showcerts"]["accepted"] and ev["showcerts"]["certs"] == 2 and ev["showcerts"]["verify_ok"], ev[
        "showcerts"
    ]["tail"]


def test_hsts_and_security_headers(facts, ev):
    assert facts["hsts"]["present"] and facts["hsts"]["max_age"] == 63072000
    assert not facts["hsts"]["preload"]
    headers = ev["https_headers"]
    assert re.search(r"(?im)^strict-transport-security: max-age=63072000\s*$", headers), headers
    assert re.search(r"(?im)^x-content-type-options: nosniff", headers)
    assert re.search(r"(?im)^x-frame-options: SAMEORIGIN", headers)
    assert not re.search(r"(?im)^server: nginx/", headers), "server_tokens should be off"


def test_http_redirects_to_https(host, facts, ev):
    assert facts["http_redirect"]["status"] == 301
    assert facts["http_redirect"]["location"].startswith(f"https://{name(host)}/")
    assert ev["redirect"] == f"301 https://{name(host)}/a?b=1"


def test_reverse_proxy_to_agent(ev):
    assert ev["agent"].strip() == "agent-ok"


def test_request_size_limit(ev):
    assert ev["big_body"] == "413"


def test_key_stays_private(ev):
    assert ev["key"] == {"mode": 0o600, "uid": 0}
    assert ev["live_dir_mode"] == 0o750
    # Only the CA certificate travels to the host, never a CA key.
    assert ev["files_with_private_keys"] == ["/etc/nginx/schoolgate-tls/privkey.pem"]


def test_profile_directives(ev):
    conf = ev["nginx_conf"]
    assert conf.splitlines()[:3] == ["#", "# Ansible managed", "#"]
    for line in (
        "ssl_session_tickets off;",
        "ssl_dhparam /etc/nginx/schoolgate-tls/ffdhe2048.pem;",
        "ssl_prefer_server_ciphers off;",
        "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_ciphers " + ":".join(PROFILE_CIPHERS) + ";",
    ):
        assert line in conf


# ----- the following re-run Ansible; keep them last -------------------------------------------------
# Each playbook runs once for both hosts (in parallel, which halves the time on a loaded machine); the
# tests of each host judge that host's part. Host state is read with `podman exec`.

SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "tls")
HOSTS = [f"{SCENARIO}-bookworm", f"{SCENARIO}-trixie"]
STATE = (
    "sha256sum /etc/nginx/nginx.conf /etc/nginx/schoolgate-tls/*.pem; "
    "echo pid=$(systemctl show -p MainPID --value nginx); "
    "openssl x509 -noout -serial -in /etc/nginx/schoolgate-tls/fullchain.pem; "
    "nginx -t 2>&1 | tail -1"
)
_RUNS: dict[str, tuple[subprocess.CompletedProcess, dict, dict, str]] = {}


def _state(container: str) -> dict:
    conf = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "lab", "containers.conf")
    out = subprocess.run(
        ["podman", "exec", container, "sh", "-c", STATE],
        capture_output=True,
        text=True,
        timeout=300,
        env={"CONTAINERS_CONF": conf, **os.environ},
    ).stdout
    lines = out.strip().splitlines()
    return {"files": "\n".join(lines[:-3]), "pid": lines[-3], "serial": lines[-2], "nginx_t": lines[-1]}


def _run_for_all(key: str, playbook: str, *extra: str, before_run=None):
    if key not in _RUNS:
        if before_run:
            before_run()
        before = {h: _state(h) for h in HOSTS}
        proc = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                os.environ["MOLECULE_INVENTORY_FILE"],
                os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], playbook),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PY_COLORS": "0"},
        )
        after = {h: _state(h) for h in HOSTS}
        _RUNS[key] = (proc, before, after, re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr))
    return _RUNS[key]


def _recap(out: str, host_name: str) -> dict:
    match = re.search(
        rf"{re.escape(host_name)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
        rf"failed=(\d+)",
        out,
    )
    assert match, out[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def test_check_mode_on_configured_host_changes_nothing(host):
    proc, before, after, out = _run_for_all("check", "converge.yml", "--check", "--diff")
    assert proc.returncode == 0, out[-3000:]
    assert _recap(out, name(host))["changed"] == 0, out[-3000:]
    assert after[name(host)] == before[name(host)]


def test_broken_variable_fails_and_old_config_keeps_serving(host):
    # Preflight and configure only: the failure has to come from nginx -t on the candidate.
    proc, before, after, out = _run_for_all("broken", "broken.yml", "--tags", "tls_preflight,tls_configure")
    assert proc.returncode != 0, out[-2000:]
    assert _recap(out, name(host))["failed"] == 1
    assert 'unknown directive "schoolgate_bogus_directive"' in out, out[-2000:]
    assert "was NOT replaced" in out
    assert after[name(host)] == before[name(host)]  # same nginx.conf, certificates and master PID
    assert after[name(host)]["nginx_t"].endswith("test is successful")
    facts = probe(host)
    assert facts["accepted_versions"] == ["TLSv1.2", "TLSv1.3"] and facts["chain_trusted"] is True


def _forget_issued_certificates():
    # The lab CA issues a fresh certificate for the same host key on the next run.
    for h in HOSTS:
        issued = os.path.join(
            os.environ["MOLECULE_PROJECT_DIRECTORY"], "lab", "state", "ca", "issued", f"{h}.crt"
        )
        if os.path.exists(issued):
            os.remove(issued)


def test_certificate_rotation_reloads_without_restart(host):
    proc, before, after, out = _run_for_all(
        "rotate",
        "converge.yml",
        "--tags",
        "tls_preflight,tls_certs,tls_service,tls_verify",
        before_run=_forget_issued_certificates,
    )
    assert proc.returncode == 0, out[-3000:]
    assert _recap(out, name(host))["failed"] == 0
    assert "RUNNING HANDLER [tls : Reload nginx]" in out
    old, new = before[name(host)], after[name(host)]
    assert new["serial"] != old["serial"]
    assert new["pid"] == old["pid"], "nginx was restarted instead of reloaded"
    served = probe(host)
    assert int(served["certificate"]["serial"], 16) == int(new["serial"].split("=", 1)[1], 16)
    assert served["chain_trusted"] is True
