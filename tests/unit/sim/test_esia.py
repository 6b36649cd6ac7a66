"""Contract tests: the simulated ESIA (ac v1/v2, te v1/v3, certs, prns) with the ESIA core as client."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from schoolgate.esia import secret, tokens

from .simclient import School
from .test_region_cabinet import _err


def _certs(base):
    return [c.encode() for c in requests.get(base + "/aas/oauth2/certs").json()["certificates"]]


def test_login_page_lists_test_users(school: School):
    resp = school.http.get(school.ac_url())
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    for role in ("pupil", "parent", "teacher"):
        assert f'id="user-{role}"' in resp.text


def test_code_flow_v2_v3_and_person_data(base, school: School):
    code, _state = school.login_via_form("1000001")
    resp = school.token("authorization_code", code=code)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) >= {"access_token", "id_token", "refresh_token", "state", "token_type", "expires_in"}
    claims = tokens.verify_token(body["access_token"], _certs(base), issuer=None, client_id=school.client_id)
    assert claims["urn:esia:sbj_id"] == 1000001 and claims["scope"] == "openid fullname"
    header, _, _ = tokens.decode_token(body["access_token"])
    assert header["alg"] == "GOST3410_2012_256"
    person = requests.get(base + "/rs/prns/1000001", headers=school.bearer(body["access_token"]))
    assert person.status_code == 200 and person.json()["oid"] == 1000001
    _err(
        requests.get(base + "/rs/prns/1000002", headers=school.bearer(body["access_token"])),
        403,
        "ESIA-007019",
    )
    _err(requests.get(base + "/rs/prns/1000001"), 401, "SG-ESIA-110")
    _err(
        requests.get(base + "/rs/prns/1000001", headers=school.bearer(school.service_token())),
        403,
        "ESIA-007019",
    )
    # A code is single-use.
    _err(school.token("authorization_code", code=code), 400, "ESIA-007011")
    # Refresh rotates: the new refresh token works, the old one does not.
    refreshed = school.token("refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != body["refresh_token"]
    _err(school.token("refresh_token", refresh_token=body["refresh_token"]), 400, "ESIA-007011")


def test_v1_endpoints_with_cms_secret(base, school: School):
    code, _ = school.login_via_form("1000003", version="v1")
    resp = school.token("authorization_code", version="v1", code=code)
    assert resp.status_code == 200, resp.text
    claims = tokens.verify_token(resp.json()["access_token"], _certs(base), issuer=None)
    assert claims["urn:esia:sbj_id"] == 1000003
    cc = school.token("client_credentials", version="v1", scope="edu_intake")
    assert cc.status_code == 200 and "refresh_token" not in cc.json()


def test_authorization_error_paths(base, school: School):
    http = school.http
    _err(http.get(base + "/aas/oauth2/v2/ac"), 400, "ESIA-007014")
    missing = _err(http.get(school.ac_url(client_certificate_hash="")), 400, "ESIA-007014")
    assert "client_certificate_hash" in missing["error_description"]
    _err(http.get(school.ac_url(client_id="NOSUCH")), 400, "ESIA-007005")
    wrong_hash = _err(http.get(school.ac_url(client_certificate_hash="ab" * 32)), 400, "ESIA-007053")
    assert wrong_hash["error"] == "access_denied"
    # Signed for another scope than sent: the ESIA core explains, the simulator answers 007053.
    url = school.ac_url(scope="openid")
    tampered = url.replace("scope=openid", "scope=openid+fullname")
    _err(http.get(tampered), 400, "ESIA-007053")
    _err(http.get(school.ac_url(scope="openid nosuchscope")), 400, "ESIA-007006")
    _err(http.get(school.ac_url(redirect_uri="https://evil.test/cb")), 400, "ESIA-007023")
    _err(http.get(school.ac_url(response_type="token")), 400, "SG-ESIA-111")
    bad_ts = http.get(school.ac_url(timestamp="yesterday"))
    assert bad_ts.status_code == 400 and bad_ts.json()["code"].startswith(("ESIA-", "SG-ESIA-"))
    # An old timestamp is refused (replay protection).
    old = http.get(school.ac_url().replace("timestamp=", "timestamp=2020.01.01+00%3A00%3A00+%2B0000&x="))
    assert old.status_code == 400
    _err(
        http.post(base + "/aas/oauth2/v2/ac/login", data={"login_id": "nope", "oid": "1000001"}),
        400,
        "ESIA-007011",
    )


def test_user_can_deny(school: School):
    resp = school.http.get(school.ac_url())
    login_id = resp.text.split('name="login_id" value="')[1].split('"')[0]
    denied = school.http.post(
        school.base + "/aas/oauth2/v2/ac/login",
        data={"login_id": login_id, "decision": "deny"},
        allow_redirects=False,
    )
    assert denied.status_code == 302
    q = parse_qs(urlsplit(denied.headers["Location"]).query)
    assert q["error"] == ["access_denied"] and q["error_description"][0].startswith("ESIA-007004")


def test_token_error_paths(base, school: School):
    te = base + "/aas/oauth2/v3/te"
    _err(requests.post(te, json={"grant_type": "client_credentials"}), 400, "SG-ESIA-111")
    _err(requests.post(te, data={"client_id": "x"}), 400, "ESIA-007014")
    _err(requests.post(te, data={"grant_type": "password"}), 400, "ESIA-007012")
    form = school.token_form("client_credentials", scope="edu_intake")
    _err(requests.post(te, data={**form, "client_id": "NOSUCH"}), 400, "ESIA-007005")
    _err(
        requests.post(te, data={**form, "client_secret": form["client_secret"][:-4] + "AAAA"}),
        400,
        "ESIA-007053",
    )
    _err(
        requests.post(te, data={k: v for k, v in form.items() if k != "client_certificate_hash"}),
        400,
        "ESIA-007014",
    )
    _err(requests.post(te, data={**form, "client_certificate_hash": "00" * 32}), 400, "ESIA-007053")
    bogus = school.token_form("authorization_code", code="not-a-code")
    _err(requests.post(te, data=bogus), 400, "ESIA-007011")
    code, _ = school.login_via_form("1000002")
    wider = school.token_form("authorization_code", code=code, scope="openid fullname snils")
    _err(requests.post(te, data=wider), 400, "ESIA-007006")
    assert secret.is_uuid4(form["state"])


def test_esia_key_rotation_keeps_old_tokens_valid(base, school: School):
    old_token = school.service_token()
    assert len(_certs(base)) >= 1
    rotated = requests.post(base + "/admin/v1/esia/rotate")
    assert rotated.status_code == 200
    certs = _certs(base)
    assert len(certs) >= 2
    new_token = school.service_token()
    h_old, h_new = tokens.decode_token(old_token)[0], tokens.decode_token(new_token)[0]
    assert h_old["x5t#S256"] != h_new["x5t#S256"]
    # A client that only trusts the old certificate can no longer verify new tokens...
    import pytest

    from schoolgate.esia.errors import EsiaError

    with pytest.raises(EsiaError):
        tokens.verify_token(new_token, certs[1:], issuer=None)
    # ...while the simulator accepts both.
    for tok in (old_token, new_token):
        resp = requests.post(
            base + "/edu/v1/batches/grades",
            json={"records": []},
            headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": tok[-20:]},
        )
        assert resp.status_code == 200, resp.text
