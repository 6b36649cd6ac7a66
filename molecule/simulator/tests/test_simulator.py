"""The simulator runs as a hardened service on loopback, with its state and keys private."""

import json


def _get(host, path, headers=""):
    cmd = (
        "python3 -c 'import sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1])\n"
        '[req.add_header(*h.split(": ", 1)) for h in sys.argv[2:] if h]\n'
        "try:\n r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())' "
        f"http://127.0.0.1:8080{path} {headers}"
    )
    out = host.check_output(cmd)
    status, _, body = out.partition("\n")
    return int(status), body


def test_service_running_on_loopback_only(host):
    svc = host.service("schoolgate-sim")
    assert svc.is_running and svc.is_enabled
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening


def test_runs_unprivileged(host):
    procs = host.process.filter(comm="schoolgate")
    assert procs and all(p.user == "schoolgate-sim" for p in procs)


def test_healthz_and_openapi(host):
    status, body = _get(host, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = _get(host, "/openapi.yaml")
    assert status == 200 and body.startswith("openapi: 3")


def test_state_and_keys_are_private(host):
    state = host.file("/var/lib/schoolgate-sim")
    assert state.mode == 0o700 and state.user == "schoolgate-sim"
    keys = host.file("/var/lib/schoolgate-sim/keys")
    assert keys.mode == 0o700
    for name in ("ca.key", "esia-1.key", "org.key"):
        key = host.file(f"/var/lib/schoolgate-sim/keys/{name}")
        assert key.exists and key.mode == 0o600 and key.user == "schoolgate-sim"


def test_admin_api_needs_the_host_generated_token(host):
    token_file = host.file("/etc/schoolgate-sim/admin-token")
    assert token_file.mode == 0o640 and token_file.user == "root" and token_file.group == "schoolgate-sim"
    status, body = _get(host, "/admin/v1/faults")
    assert status == 401 and json.loads(body)["code"] == "SIM-401"
    token = host.check_output("cat /etc/schoolgate-sim/admin-token").strip()
    status, _ = _get(host, "/admin/v1/faults", f"'X-Admin-Token: {token}'")
    assert status == 200


def test_gost_esia_keys(host):
    out = host.check_output(
        "openssl x509 -engine gost -in /var/lib/schoolgate-sim/keys/esia-1.crt -noout -text 2>/dev/null"
    )
    assert "GOST R 34.10-2012" in out or "gost2012_256" in out.lower()
