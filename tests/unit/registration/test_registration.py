"""The registration role and gosuslugi_service, run by real ansible-playbook against a real simulator."""

from __future__ import annotations

import re
import stat
import uuid
from pathlib import Path

import requests
from sim.simclient import SimProcess

from .conftest import HERE, role_vars, run_playbook

PLAY = HERE / "play.yml"


def _name() -> str:
    return "REG" + uuid.uuid4().hex[:8].upper()


def _services(sim: SimProcess, code: str) -> dict[str, dict]:
    resp = requests.get(sim.base + "/cabinet/v1/services", headers={"X-Access-Code": code}, timeout=10)
    return {s["name"]: s for s in resp.json()["services"]}


def test_register_from_scratch_then_idempotent_then_rotated_certificate(
    sim, access_code, certs, etc, tmp_path
):
    name = _name()
    v = role_vars(sim, access_code, certs[0], etc, name)

    check = run_playbook(PLAY, v, tmp_path, "--check", "--diff")
    assert check.rc == 0, check.output[-3000:]
    assert name not in _services(sim, access_code), "check mode registered the service"
    assert not (etc / "provider-token").exists()
    assert "register" in check.stdout

    first = run_playbook(PLAY, v, tmp_path)
    assert first.rc == 0, first.output[-3000:]
    assert first.recap()["changed"] > 0
    svc = _services(sim, access_code)[name]
    token_file = etc / "provider-token"
    mode = stat.S_IMODE(token_file.stat().st_mode)
    assert mode == 0o600
    token = token_file.read_text()
    assert token.startswith("sgpt_")
    # the stored token really works against the provider
    ok = requests.get(
        sim.base + "/services/v1/catalogue", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert ok.status_code == 200, ok.text

    again = run_playbook(PLAY, v, tmp_path)
    assert again.rc == 0, again.output[-3000:]
    assert again.recap()["changed"] == 0, again.stdout[-3000:]
    assert token_file.read_text() == token
    planned = run_playbook(PLAY, v, tmp_path, "--check", "--diff")
    assert planned.rc == 0 and planned.recap()["changed"] == 0, planned.stdout[-3000:]

    rotated = run_playbook(PLAY, {**v, "registration_certificate_path": str(certs[1])}, tmp_path, "--diff")
    assert rotated.rc == 0, rotated.output[-3000:]
    assert rotated.recap()["changed"] > 0
    assert "update_certificate" in rotated.stdout
    assert "certificate_hash" in rotated.stdout  # the diff shows what changed
    after = _services(sim, access_code)[name]
    assert after["service_id"] == svc["service_id"], "certificate rotation must update in place"
    assert after["certificate_hash"] != svc["certificate_hash"]
    assert token_file.read_text() == token, "a certificate change must not replace a valid token"


def test_wrong_access_code_is_a_clear_failure(sim, certs, etc, tmp_path):
    v = role_vars(sim, "SGAC-wrong-code-000000000000", certs[0], etc, _name())
    run = run_playbook(PLAY, v, tmp_path)
    assert run.rc != 0
    assert "Код доступа" in run.stdout or "код доступа" in run.stdout, run.stdout[-3000:]
    assert "registration_access_code" in run.stdout
    assert "SGAC-wrong-code" not in run.output


def test_503_for_a_while_is_retried_then_succeeds(sim, access_code, certs, etc, tmp_path):
    # A count, not a time window: on a busy machine an 8-second window was over before the first request.
    r = requests.put(
        sim.base + "/admin/v1/faults",
        json={"fail_first": 3, "status_5xx": 503, "paths": ["/cabinet/"]},
        timeout=10,
    )
    assert r.status_code == 200
    v = role_vars(
        sim, access_code, certs[0], etc, _name(), registration_attempts=10, registration_backoff_max_s=3.0
    )
    run = run_playbook(PLAY, v, tmp_path)
    assert run.rc == 0, run.output[-3000:]
    retries = re.search(r"Повторы запросов: (\d+)", run.stdout)
    assert retries and int(retries.group(1)) >= 3, run.stdout[-2000:]
    assert (etc / "provider-token").exists()


def test_permanent_503_fails_after_configured_attempts(sim, access_code, certs, etc, tmp_path):
    r = requests.put(
        sim.base + "/admin/v1/faults",
        json={"rate_5xx": 1.0, "status_5xx": 503, "paths": ["/cabinet/"]},
        timeout=10,
    )
    assert r.status_code == 200
    v = role_vars(sim, access_code, certs[0], etc, _name(), registration_attempts=3)
    run = run_playbook(PLAY, v, tmp_path)
    assert run.rc != 0
    assert "HTTP 503" in run.stdout and "после 3 попыток" in run.stdout, run.stdout[-3000:]
    assert not (etc / "provider-token").exists()


def test_token_never_in_output_even_at_vvv(sim, access_code, certs, etc, tmp_path):
    name = _name()
    v = role_vars(sim, access_code, certs[0], etc, name, registration_token_state="present")
    run = run_playbook(PLAY, v, tmp_path, "-vvv")
    assert run.rc == 0, run.output[-3000:]
    token = (etc / "provider-token").read_text()
    rotated = run_playbook(PLAY, {**v, "registration_token_state": "rotated"}, tmp_path, "-vvv")
    assert rotated.rc == 0, rotated.output[-3000:]
    new_token = (etc / "provider-token").read_text()
    assert new_token != token
    for out in (run.output, rotated.output):
        assert token not in out and new_token not in out
        assert access_code not in out
        assert "sgpt_" not in out
    # the old token was revoked by the rotation
    old = requests.get(
        sim.base + "/services/v1/catalogue", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert old.status_code == 401
    # and revoke removes the file and kills the token
    gone = run_playbook(PLAY, {**v, "registration_token_state": "absent"}, tmp_path)
    assert gone.rc == 0, gone.output[-3000:]
    assert not (etc / "provider-token").exists()
    dead = requests.get(
        sim.base + "/services/v1/catalogue", headers={"Authorization": f"Bearer {new_token}"}, timeout=10
    )
    assert dead.status_code == 401


def test_bad_variables_fail_before_any_change(sim, access_code, certs, etc, tmp_path):
    v = role_vars(sim, access_code, certs[0], etc, "bad name!")
    run = run_playbook(PLAY, v, tmp_path)
    assert run.rc != 0
    assert "registration_name" in run.stdout
    assert not (etc / "provider-token").exists()


def test_missing_certificate_is_named(sim, access_code, etc, tmp_path: Path):
    v = role_vars(sim, access_code, tmp_path / "nope.pem", etc, _name())
    run = run_playbook(PLAY, v, tmp_path)
    assert run.rc != 0
    assert "signing_cert" in run.stdout and "nope.pem" in run.stdout


def test_check_mode_on_a_fresh_host_plans_without_failing(sim, access_code, etc, tmp_path: Path):
    v = role_vars(sim, access_code, tmp_path / "not-yet" / "cert.pem", etc, _name())
    run = run_playbook(PLAY, v, tmp_path, "--check", "--diff")
    assert run.rc == 0, run.stdout[-3000:]
    assert run.recap()["changed"] > 0 and "будет зарегистрирован" in run.stdout
    assert not (etc / "provider-token").exists()


def test_broken_certificate_gets_the_esia_core_hint(sim, access_code, etc, tmp_path: Path):
    bad = tmp_path / "cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n")
    name = _name()
    run = run_playbook(PLAY, role_vars(sim, access_code, bad, etc, name), tmp_path)
    assert run.rc != 0
    assert "SG-ESIA-108" in run.stdout and "Что сделать" in run.stdout, run.stdout[-3000:]
    assert name not in _services(sim, access_code)


def test_unknown_token_owner_fails_before_any_change(sim, access_code, certs, etc, tmp_path: Path):
    name = _name()
    v = role_vars(sim, access_code, certs[0], etc, name, registration_token_owner="no-such-agent-user")
    run = run_playbook(PLAY, v, tmp_path)
    assert run.rc != 0
    assert "registration_token_owner" in run.stdout and "no-such-agent-user" in run.stdout
    assert name not in _services(sim, access_code)
