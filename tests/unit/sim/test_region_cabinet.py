"""Contract tests: regional onboarding, provider cabinet, provider tokens, the simulated УЦ."""

from __future__ import annotations

import subprocess
import time

import requests

from schoolgate.esia import certhash

from .simclient import School, dossier, grade, onboard


def _err(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert body["error_description"].startswith(code + ": ")
    return body


def test_requirements_list_the_four_documents(base):
    types = [d["type"] for d in requests.get(base + "/region/v1/requirements").json()["documents"]]
    assert types == ["charter", "connection_decision", "parent_committee_consent", "license"]


def test_complete_dossier_gets_access_code_and_can_be_read_back(base):
    resp = requests.post(base + "/region/v1/dossiers", json=dossier("school-042"))
    assert resp.status_code == 201
    body = resp.json()
    assert body["access_code"].startswith("SGAC-")
    got = requests.get(
        base + f"/region/v1/dossiers/{body['dossier_id']}", headers={"X-Access-Code": body["access_code"]}
    )
    assert got.status_code == 200 and got.json()["school_id"] == "school-042"
    assert "access_code" not in got.json()
    other = requests.get(
        base + "/region/v1/dossiers/00000000-0000-4000-8000-000000000000",
        headers={"X-Access-Code": body["access_code"]},
    )
    _err(other, 404, "SIM-404")


def test_incomplete_dossier_lists_what_is_missing(base):
    d = dossier()
    d["documents"] = [doc for doc in d["documents"] if doc["type"] != "license"]
    d["documents"][0]["sha256"] = "not-a-hash"
    body = _err(requests.post(base + "/region/v1/dossiers", json=d), 422, "SIM-422")
    assert [m["type"] for m in body["missing"]] == ["charter", "license"]
    assert body["invalid"][0]["path"] == "documents[0].sha256"
    assert "Лицензия" in body["message_ru"]


def test_dossier_bad_requests(base):
    _err(
        requests.post(base + "/region/v1/dossiers", data="{", headers={"Content-Type": "application/json"}),
        400,
        "SIM-400",
    )
    _err(requests.post(base + "/region/v1/dossiers", json={"school_id": "x"}), 400, "ESIA-007014")
    _err(
        requests.post(base + "/region/v1/dossiers", json={**dossier(), "school_id": "школа 1"}),
        400,
        "SIM-400",
    )
    _err(requests.post(base + "/region/v1/dossiers", json={**dossier(), "documents": "x"}), 400, "SIM-400")
    _err(
        requests.post(
            base + "/region/v1/dossiers",
            data="a=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "SIM-400",
    )
    _err(requests.get(base + "/region/v1/dossiers/x"), 401, "SIM-401")
    _err(requests.get(base + "/region/v1/dossiers/x", headers={"X-Access-Code": "SGAC-nope"}), 401, "SIM-401")


def test_service_registration_uses_esia_core_hash(school: School):
    resp = school.http.get(
        school.base + f"/cabinet/v1/services/{school.service_id}",
        headers={"X-Access-Code": school.access_code},
    )
    assert resp.status_code == 200
    assert resp.json()["certificate_hash"] == certhash.client_certificate_hash(school.cert_pem.encode())
    listed = school.http.get(
        school.base + "/cabinet/v1/services", headers={"X-Access-Code": school.access_code}
    )
    assert school.service_id in [s["service_id"] for s in listed.json()["services"]]


def test_registration_errors(base, school: School):
    h = {"X-Access-Code": school.access_code}
    good = {"name": "OTHER1", "api_url": "https://portal.school.test/api", "certificate": school.cert_pem}
    _err(requests.post(base + "/cabinet/v1/services", json=good), 401, "SIM-401")
    _err(
        requests.post(base + "/cabinet/v1/services", json={**good, "name": school.client_id}, headers=h),
        409,
        "SIM-409",
    )
    _err(
        requests.post(base + "/cabinet/v1/services", json={**good, "name": "a b"}, headers=h), 400, "SIM-400"
    )
    _err(
        requests.post(base + "/cabinet/v1/services", json={**good, "api_url": "ftp://x"}, headers=h),
        400,
        "SIM-400",
    )
    _err(
        requests.post(base + "/cabinet/v1/services", json={**good, "certificate": "nope"}, headers=h),
        400,
        "SIM-400",
    )
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    resp = requests.post(base + "/cabinet/v1/services", json={**good, "certificate": broken}, headers=h)
    assert resp.status_code == 400, resp.text
    _err(requests.post(base + "/cabinet/v1/services", json={"name": "X1"}, headers=h), 400, "ESIA-007014")


def test_update_and_delete_service_are_scoped_to_the_school(base, tmp_path):
    mine = onboard(base, tmp_path / "a")
    theirs = onboard(base, tmp_path / "b")
    url = base + f"/cabinet/v1/services/{mine.service_id}"
    _err(requests.get(url, headers={"X-Access-Code": theirs.access_code}), 404, "SIM-404")
    _err(requests.delete(url, headers={"X-Access-Code": theirs.access_code}), 404, "SIM-404")
    h = {"X-Access-Code": mine.access_code}
    resp = requests.patch(url, json={"api_url": "https://new.school.test/api"}, headers=h)
    assert resp.status_code == 200 and resp.json()["api_url"] == "https://new.school.test/api"
    _err(requests.patch(url, json={"api_url": 5}, headers=h), 400, "SIM-400")
    resp = requests.put(url + "/certificate", json={"certificate": theirs.cert_pem}, headers=h)
    assert resp.status_code == 200
    assert resp.json()["certificate_hash"] == theirs.cert_hash
    # The old certificate no longer authenticates the service: ESIA-007053 with the old key.
    assert mine.token().json()["code"] == "ESIA-007053"
    token = requests.post(url + "/tokens", headers=h).json()["access_token"]
    assert requests.delete(url, headers=h).status_code == 204
    _err(requests.get(url, headers=h), 404, "SIM-404")
    # Tokens of a deleted service stop working.
    resp = requests.post(
        base + "/edu/v1/batches/grades",
        json={"records": []},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "del-1"},
    )
    _err(resp, 401, "SG-ESIA-110")


def _intake(base, token, key, records):
    return requests.post(
        base + "/edu/v1/batches/grades",
        json={"records": records},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def test_provider_tokens_issue_rotate_revoke_expire(base, school: School):
    url = base + f"/cabinet/v1/services/{school.service_id}/tokens"
    h = {"X-Access-Code": school.access_code}
    issued = requests.post(url, json={"lifetime_s": 600}, headers=h)
    assert issued.status_code == 201 and issued.json()["expires_in"] == 600
    tok = issued.json()
    assert _intake(base, tok["access_token"], "pt-1", [grade()]).status_code == 200
    rotated = requests.post(url + f"/{tok['token_id']}/rotate", headers=h)
    assert rotated.status_code == 201 and rotated.json()["replaces"] == tok["token_id"]
    _err(_intake(base, tok["access_token"], "pt-2", [grade()]), 401, "SG-ESIA-110")
    new = rotated.json()
    assert _intake(base, new["access_token"], "pt-3", [grade()]).status_code == 200
    _err(requests.post(url + f"/{tok['token_id']}/rotate", headers=h), 409, "SIM-409")
    assert requests.delete(url + f"/{new['token_id']}", headers=h).status_code == 204
    _err(_intake(base, new["access_token"], "pt-4", [grade()]), 401, "SG-ESIA-110")
    statuses = {t["token_id"]: t["status"] for t in requests.get(url, headers=h).json()["tokens"]}
    assert statuses[tok["token_id"]] == "revoked" and statuses[new["token_id"]] == "revoked"
    short = requests.post(url, json={"lifetime_s": 1}, headers=h).json()
    time.sleep(1.2)
    body = _err(_intake(base, short["access_token"], "pt-5", [grade()]), 401, "SG-ESIA-110")
    assert "expired" in body["error_description"]
    _err(requests.post(url, json={"lifetime_s": 0}, headers=h), 400, "SIM-400")
    _err(requests.post(url, json={"lifetime_s": "1"}, headers=h), 400, "SIM-400")
    _err(requests.delete(url + "/00000000-0000-4000-8000-000000000000", headers=h), 404, "SIM-404")


def test_ca_issues_gost_certificate_from_csr(base, school: School, tmp_path):
    from schoolgate.sim.keys import csr_for, generate_key

    ca = requests.get(base + "/ca/v1/ca.crt")
    assert ca.status_code == 200 and b"BEGIN CERTIFICATE" in ca.content
    key = generate_key(tmp_path / "k.key")
    csr = csr_for(key, "/C=RU/O=School 7/CN=signing").decode()
    resp = requests.post(
        base + "/ca/v1/certificates",
        json={"csr": csr, "days": 10},
        headers={"X-Access-Code": school.access_code},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    info = certhash.certificate_info(body["certificate"].encode())
    assert "GOST" in str(info.get("algorithm", "")).upper() or certhash.is_gost(body["certificate"].encode())
    assert "School 7" in str(info["subject"])
    assert body["certificate_hash"] == certhash.client_certificate_hash(body["certificate"].encode())
    again = requests.get(base + f"/ca/v1/certificates/{body['serial']}")
    assert again.status_code == 200 and again.json()["certificate"] == body["certificate"]
    h = {"X-Access-Code": school.access_code}
    _err(requests.post(base + "/ca/v1/certificates", json={"csr": csr}), 401, "SIM-401")
    _err(requests.post(base + "/ca/v1/certificates", json={"csr": "x"}, headers=h), 400, "SIM-400")
    _err(
        requests.post(base + "/ca/v1/certificates", json={"csr": csr, "days": 5000}, headers=h),
        400,
        "SIM-400",
    )
    tampered = csr.replace(csr.splitlines()[3][:8], "AAAAAAAA")
    resp = requests.post(base + "/ca/v1/certificates", json={"csr": tampered}, headers=h)
    assert resp.status_code == 400, resp.text
    _err(requests.get(base + "/ca/v1/certificates/nope"), 404, "SIM-404")


def test_uc_uses_the_one_ca_implementation(base, school: School, tmp_path):
    """The simulator's УЦ issues through schoolgate.pki: the school's subject is kept as is (ОГРН, ИНН ЮЛ),
    signing usages are set, and pki's own check accepts the result against the УЦ root."""
    from schoolgate import pki

    key = pki.generate_key(tmp_path / "k.pem")
    csr = pki.create_csr(key, "/C=RU/O=Школа № 7/CN=school-007/OGRN=1027700132195")
    resp = requests.post(
        base + "/ca/v1/certificates",
        json={"csr": csr.decode(), "days": 30},
        headers={"X-Access-Code": school.access_code},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    (tmp_path / "h.csr").write_bytes(csr)
    (tmp_path / "h.crt").write_text(body["certificate"])
    (tmp_path / "root.pem").write_text(body["chain"])
    assert pki.up_to_date(body["certificate"].encode(), csr, tmp_path / "root.pem", renew_days=1)
    text = subprocess.run(
        ["openssl", "x509", "-engine", "gost", "-noout", "-text", "-nameopt", "utf8,-esc_msb"],
        input=body["certificate"].encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "OGRN=1027700132195" in text and "Школа № 7" in text
    assert "Digital Signature, Non Repudiation" in text
    assert "schoolgate simulated accredited CA (UC)" in text
