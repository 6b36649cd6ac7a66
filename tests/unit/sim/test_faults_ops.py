"""Contract tests: fault injection (seeded), /healthz, /metrics, OpenAPI, persistence, logs."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from .simclient import SimProcess, grade, onboard
from .test_region_cabinet import _err

REQ = "/region/v1/requirements"


def _faults(base, **cfg):
    resp = requests.put(base + "/admin/v1/faults", json=cfg)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _pattern(base, n=40):
    out = []
    for _ in range(n):
        try:
            out.append(requests.get(base + REQ, timeout=5).status_code)
        except requests.ConnectionError:
            out.append("drop")
    return out


def test_seeded_faults_are_deterministic(base):
    _faults(base, seed=7, rate_429=0.2, rate_5xx=0.2, rate_drop=0.1, status_5xx=502)
    first = _pattern(base)
    _faults(base, seed=7, rate_429=0.2, rate_5xx=0.2, rate_drop=0.1, status_5xx=502)
    second = _pattern(base)
    assert first == second
    assert {429, 502, "drop", 200} <= set(first)
    _faults(base, seed=8, rate_429=0.2, rate_5xx=0.2, rate_drop=0.1, status_5xx=502)
    assert _pattern(base) != first


def test_429_carries_retry_after_and_5xx_esia_shape(base):
    _faults(base, rate_429=1.0, retry_after_s=3)
    resp = requests.get(base + REQ)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert resp.json()["code"] == "SIM-429"
    _faults(base, rate_5xx=1.0)
    _err(requests.get(base + REQ), 503, "SIM-500")


def test_latency_and_path_filter(base):
    _faults(base, latency_ms=300, paths=["/region/"])
    resp = requests.get(base + REQ)
    assert resp.elapsed.total_seconds() >= 0.3
    fast = requests.get(base + "/healthz")
    assert fast.elapsed.total_seconds() < 0.3


def test_fail_first_answers_the_next_requests_with_5xx_then_recovers(base):
    state = _faults(base, fail_first=2, status_5xx=502, paths=["/region/"])
    assert state["fail_first"] == 2 and state["fail_first_remaining"] == 2
    assert requests.get(base + "/healthz").status_code == 200  # not faultable: does not count
    assert [requests.get(base + REQ).status_code for _ in range(3)] == [502, 502, 200]
    assert requests.get(base + "/admin/v1/faults").json()["fail_first_remaining"] == 0


def test_maintenance_window(base):
    _faults(base, maintenance_s=30)
    resp = requests.get(base + REQ)
    body = _err(resp, 503, "ESIA-007008")
    assert body["maintenance"] is True and 1 <= int(resp.headers["Retry-After"]) <= 30
    # The admin API is never faulted, so a test can always end the window.
    assert requests.delete(base + "/admin/v1/faults").status_code == 200
    assert requests.get(base + REQ).status_code == 200


def test_expired_tokens_fault(base, service_token):
    _faults(base, expire_tokens=True)
    resp = requests.post(
        base + "/edu/v1/batches/grades",
        json={"records": [grade()]},
        headers={"Authorization": f"Bearer {service_token}", "Idempotency-Key": str(uuid.uuid4())},
    )
    body = _err(resp, 401, "SG-ESIA-110")
    assert "expired" in body["error_description"]


@pytest.mark.parametrize(
    "cfg",
    [
        {"rate_429": 2},
        {"rate_5xx": "x"},
        {"latency_ms": -1},
        {"status_5xx": 404},
        {"nope": 1},
        {"paths": "/x"},
        {"expire_tokens": 1},
        {"maintenance_s": 10**9},
        {"fail_first": -1},
        {"fail_first": 10**7},
        {"fail_first": True},
    ],
)
def test_fault_config_validation(base, cfg):
    _err(requests.put(base + "/admin/v1/faults", json=cfg), 400, "SIM-400")


def test_fault_config_is_readable(base):
    _faults(base, seed=3, rate_5xx=0.5)
    got = requests.get(base + "/admin/v1/faults").json()
    assert got["seed"] == 3 and got["rate_5xx"] == 0.5


def test_healthz_metrics_openapi(base):
    assert requests.get(base + "/healthz").json()["status"] == "ok"
    _faults(base, rate_429=1.0, paths=["/region/"])
    requests.get(base + REQ)
    requests.delete(base + "/admin/v1/faults")
    text = requests.get(base + "/metrics").text
    assert "# TYPE schoolgate_sim_http_requests_total counter" in text
    assert 'schoolgate_sim_faults_injected_total{fault="429"}' in text
    assert "schoolgate_sim_request_duration_seconds_bucket" in text
    from importlib import resources

    served = requests.get(base + "/openapi.yaml")
    assert served.status_code == 200
    assert served.text == resources.files("schoolgate.sim").joinpath("openapi.yaml").read_text(
        encoding="utf-8"
    )


def test_openapi_document_is_valid():
    from importlib import resources

    import yaml
    from openapi_spec_validator import validate

    spec = yaml.safe_load(
        resources.files("schoolgate.sim").joinpath("openapi.yaml").read_text(encoding="utf-8")
    )
    validate(spec)


def test_unknown_route_and_method_are_esia_shaped(base):
    _err(requests.get(base + "/nope"), 404, "SIM-404")
    resp = requests.put(base + "/region/v1/dossiers")
    _err(resp, 405, "SIM-405")
    assert "POST" in resp.headers["Allow"]


def test_state_survives_restart_and_logs_carry_no_personal_data(tmp_path):
    sim = SimProcess(tmp_path / "state", "--esia-key-type", "rsa").start()
    try:
        school = onboard(sim.base, tmp_path / "school")
        token = school.service_token()
        rec = grade(pupil_id="pupil-secret-id-123", comment="Комментарий учителя")
        resp = requests.post(
            sim.base + "/edu/v1/batches/grades",
            json={"records": [rec]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "persist-1"},
        )
        assert resp.json()["accepted"] == 1
    finally:
        sim.stop()
    sim.start()
    try:
        # Same access code, same token (RSA ESIA keys persisted), same record, and the replay is recognised.
        again = requests.post(
            sim.base + "/edu/v1/batches/grades",
            json={"records": [rec]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "persist-1"},
        )
        assert again.status_code == 200 and again.json()["replayed"] is True
        got = requests.get(
            sim.base + f"/cabinet/v1/services/{school.service_id}",
            headers={"X-Access-Code": school.access_code},
        )
        assert got.status_code == 200
    finally:
        sim.stop()
    log = sim.log_path.read_text()
    assert "pupil-secret-id-123" not in log and "Комментарий" not in log and "Математика" not in log
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e["event"] == "intake.batch" for e in events)
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "state" / "sim.db").stat().st_mode & 0o777) == "0o600"
    key_dir = tmp_path / "state" / "keys"
    assert oct(key_dir.stat().st_mode & 0o777) == "0o700"
    assert all(oct(k.stat().st_mode & 0o777) == "0o600" for k in key_dir.glob("*.key"))


def test_admin_token_file_protects_admin_api(tmp_path):
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret-admin-token-for-tests\n")
    sim = SimProcess(
        tmp_path / "state", "--esia-key-type", "rsa", "--admin-token-file", str(token_file)
    ).start()
    try:
        _err(requests.get(sim.base + "/admin/v1/faults"), 401, "SIM-401")
        _err(
            requests.get(sim.base + "/admin/v1/intake/stats", headers={"X-Admin-Token": "wrong"}),
            401,
            "SIM-401",
        )
        ok = requests.get(
            sim.base + "/admin/v1/faults", headers={"X-Admin-Token": "s3cret-admin-token-for-tests"}
        )
        assert ok.status_code == 200
        # Health and metrics stay open for monitoring.
        assert requests.get(sim.base + "/healthz").status_code == 200
    finally:
        sim.stop()
