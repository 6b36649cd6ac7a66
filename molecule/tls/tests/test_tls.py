"""Molecule verify for the tls role on Debian 12 and 13: the portal as seen from outside nginx.

Every protocol verdict is checked twice, by tls_probe and by `openssl s_client` in the same container.
The last tests run ansible-playbook again (broken variable, certificate rotation) and must stay last.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

TRUST = "/etc/nginx/schoolgate-tls/trust.pem"
PROFILE_CIPHERS = [
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
]
S_CLIENT_FLAG = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
EXPECTED = {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": True}


def name(host) -> str:
    return host.backend.get_hostname()


def probe(host, **extra):
    args = {"host": "127.0.0.1", "port": 443, "server_name": name(host), "ca_path": TRUST, "http_port": 80}
    args.update(extra)
    return host.ansible("tls_probe", " ".join(f"{k}={v}" for k, v in args.items()), check=False)


@pytest.fixture(scope="module")
def facts(host):
    return probe(host)


def s_client(host, version: str, extra: str = "") -> tuple[bool, str]:
    cmd = (f"openssl s_client -connect 127.0.0.1:443 -servername {name(host)} {S_CLIENT_FLAG[version]} "
           f"-cipher DEFAULT@SECLEVEL=0 {extra} </dev/null")
    out = host.run(cmd)
    ok = out.rc == 0 and "Cipher is (NONE)" not in out.stdout and "New, " in out.stdout
    return ok, out.stdout + out.stderr


def master_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value nginx")


def test_nginx_running_and_enabled(host):
    svc = host.service("nginx")
    assert svc.is_running and svc.is_enabled
    assert host.socket("tcp://0.0.0.0:443").is_listening
    assert host.socket("tcp://0.0.0.0:80").is_listening


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
def test_protocols_probe_agrees_with_s_client(host, facts, version):
    ok, out = s_client(host, version)
    assert ok is EXPECTED[version], out[-600:]
    status = facts["protocols"][version]["status"]
    # "unsupported_by_probe" would mean the probe could not even offer the version: not a pass.
    assert status == ("accepted" if EXPECTED[version] else "refused"), facts["protocols"][version]


def test_sslv3_reported_honestly(facts):
    assert facts["protocols"]["SSLv3"]["status"] in ("unsupported_by_probe", "refused")


def test_only_profile_ciphers(host, facts):
    accepted = facts["tls12_ciphers"]
    assert accepted, "no TLS 1.2 cipher accepted"
    assert set(accepted) <= set(PROFILE_CIPHERS), accepted
    # RSA key: exactly the six RSA suites of the profile.
    assert set(accepted) == {c for c in PROFILE_CIPHERS if "ECDSA" not in c}
    for weak in ("ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES256-SHA384"):
        ok, _ = s_client(host, "TLSv1.2", f"-cipher {weak}:@SECLEVEL=0")
        assert not ok, f"{weak} accepted"
    assert facts["tls13_cipher"].startswith("TLS_")


def test_full_chain_served_and_trusted(host, facts):
    assert facts["chain_length"] == 2
    assert facts["chain_complete"] and facts["chain_trusted"] is True, facts["chain_error"]
    assert facts["hostname_match"] is True
    assert facts["certificate"]["common_name"] == name(host)
    assert facts["certificate"]["days_left"] > 300
    assert "intermediate" in facts["chain"][1]["subject"]
    ok, out = s_client(host, "TLSv1.3", f"-showcerts -CAfile {TRUST} -verify_return_error")
    assert ok, out[-600:]
    assert out.count("-----BEGIN CERTIFICATE-----") == 2
    assert "Verify return code: 0 (ok)" in out


def test_hsts_and_security_headers(host, facts):
    assert facts["hsts"]["present"] and facts["hsts"]["max_age"] == 63072000
    assert not facts["hsts"]["preload"]
    headers = host.check_output(
        f"curl -sS -D - -o /dev/null --cacert {TRUST} --resolve {name(host)}:443:127.0.0.1 https://{name(host)}/")
    assert re.search(r"(?im)^strict-transport-security: max-age=63072000\s*$", headers), headers
    assert re.search(r"(?im)^x-content-type-options: nosniff", headers)
    assert re.search(r"(?im)^x-frame-options: SAMEORIGIN", headers)
    assert not re.search(r"(?im)^server: nginx/", headers), "server_tokens should be off"


def test_http_redirects_to_https(host, facts):
    assert facts["http_redirect"]["status"] == 301
    assert facts["http_redirect"]["location"].startswith(f"https://{name(host)}/")
    out = host.check_output(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' "
                            f"-H 'Host: {name(host)}' 'http://127.0.0.1/a?b=1'")
    assert out == f"301 https://{name(host)}/a?b=1"


def test_reverse_proxy_to_agent(host):
    out = host.check_output(f"curl -sS --cacert {TRUST} --resolve {name(host)}:443:127.0.0.1 "
                            f"https://{name(host)}/api/v1/healthz")
    assert out.strip() == "agent-ok"


def test_request_size_limit(host):
    code = host.check_output(
        f"head -c 2000000 /dev/zero | curl -sS -o /dev/null -w '%{{http_code}}' --cacert {TRUST} "
        f"--resolve {name(host)}:443:127.0.0.1 --data-binary @- https://{name(host)}/")
    assert code == "413"


def test_key_stays_private(host):
    key = host.file("/etc/nginx/schoolgate-tls/privkey.pem")
    assert key.mode == 0o600 and key.user == "root"
    assert host.file("/etc/nginx/schoolgate-tls").mode == 0o750
    # Only the CA certificate travels to the host, never a CA key.
    assert "PRIVATE KEY" not in host.file(TRUST).content_string
    assert host.run("grep -rl 'PRIVATE KEY' /etc/nginx/schoolgate-tls").stdout.split() == [
        "/etc/nginx/schoolgate-tls/privkey.pem"]


def test_managed_header_and_ffdhe(host):
    conf = host.file("/etc/nginx/nginx.conf").content_string
    assert "Ansible managed" in conf or "managed" in conf.splitlines()[0].lower()
    assert "ssl_session_tickets off;" in conf
    assert "ssl_dhparam /etc/nginx/schoolgate-tls/ffdhe2048.pem;" in conf
    assert "ssl_prefer_server_ciphers off;" in conf
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in conf


# ----- the following re-run Ansible; keep them last -------------------------------------------------

def _playbook(host, playbook: str, *extra: str) -> subprocess.CompletedProcess:
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", name(host),
         os.path.join(scenario, playbook), *extra],
        capture_output=True, text=True, timeout=1200, env=os.environ.copy())


def test_broken_variable_fails_and_old_config_keeps_serving(host):
    before_conf = host.file("/etc/nginx/nginx.conf").sha256sum
    before_pid = master_pid(host)
    # Preflight and configure only: the failure has to come from nginx -t on the candidate.
    run = _playbook(host, "broken.yml", "--tags", "tls_preflight,tls_configure")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-2000:]
    assert 'unknown directive "schoolgate_bogus_directive"' in out, out[-2000:]
    assert "was NOT replaced" in out
    assert host.file("/etc/nginx/nginx.conf").sha256sum == before_conf
    assert master_pid(host) == before_pid
    assert host.run("nginx -t").rc == 0
    facts = probe(host)
    assert facts["accepted_versions"] == ["TLSv1.2", "TLSv1.3"] and facts["chain_trusted"] is True


def test_certificate_rotation_reloads_without_restart(host, facts):
    old_serial = facts["certificate"]["serial"]
    pid = master_pid(host)
    issued = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "lab", "state", "ca", "issued",
                          f"{name(host)}.crt")
    os.remove(issued)  # the lab CA issues a fresh certificate for the same key on the next run
    run = _playbook(host, "converge.yml", "--tags", "tls_preflight,tls_certs,tls_service,tls_verify")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "RUNNING HANDLER [tls : Reload nginx]" in out
    new = probe(host)
    assert new["certificate"]["serial"] != old_serial
    assert new["chain_trusted"] is True
    assert master_pid(host) == pid, "nginx was restarted instead of reloaded"
