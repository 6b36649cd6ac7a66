"""Contract tests: data intake (JSON, XML, CSV), idempotency and exactly-once storage."""

from __future__ import annotations

import uuid

import requests

from schoolgate.esia import contracts

from .simclient import School, grade
from .test_region_cabinet import _err


def _post(base, token, records, key=None, kind="grades", **kw):
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key or str(uuid.uuid4())}
    headers.update(kw.pop("headers", {}))
    if "data" in kw:
        return requests.post(base + f"/edu/v1/batches/{kind}", headers=headers, **kw)
    return requests.post(base + f"/edu/v1/batches/{kind}", json={"records": records}, headers=headers, **kw)


def _stored(base, token, ids):
    resp = requests.get(
        base + "/edu/v1/records",
        params=[("record_id", i) for i in ids],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["records"]


def test_batch_is_stored_once_and_replay_is_acknowledged(base, service_token):
    records = [grade() for _ in range(5)]
    key = "batch-" + str(uuid.uuid4())
    first = _post(base, service_token, records, key)
    assert first.status_code == 200
    body = first.json()
    assert (body["accepted"], body["duplicates"], body["rejected"], body["replayed"]) == (5, 0, [], False)
    again = _post(base, service_token, records, key)
    assert again.status_code == 200
    assert again.json() == {**body, "replayed": True}
    stored = _stored(base, service_token, [r["record_id"] for r in records])
    assert sorted(s["record_id"] for s in stored) == sorted(r["record_id"] for r in records)
    assert all(s["batch_id"] == body["batch_id"] for s in stored)
    assert stored[0]["record"]["grade"] == 5


def test_same_key_with_different_body_is_refused(base, service_token):
    key = str(uuid.uuid4())
    assert _post(base, service_token, [grade()], key).status_code == 200
    body = _err(_post(base, service_token, [grade()], key), 422, "SIM-422")
    assert body["error"] == "idempotency_key_reused"


def test_record_already_stored_counts_as_duplicate(base, service_token):
    rec = grade()
    assert _post(base, service_token, [rec]).json()["accepted"] == 1
    body = _post(base, service_token, [rec, grade(), rec]).json()
    assert (body["accepted"], body["duplicates"]) == (1, 2)
    assert len(_stored(base, service_token, [rec["record_id"]])) == 1


def test_invalid_records_are_rejected_with_their_ids(base, service_token):
    good, bad = grade(), grade(grade=9)
    body = _post(base, service_token, [good, bad, "x", {"record_id": 5}]).json()
    assert body["accepted"] == 1
    assert [r["record_id"] for r in body["rejected"]] == [bad["record_id"], None, None]
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert "grade" in body["rejected"][0]["message"]
    assert _stored(base, service_token, [bad["record_id"]]) == []


def test_attendance_and_performance_kinds(base, service_token):
    att = {
        "record_id": str(uuid.uuid4()),
        "school_id": "school-001",
        "pupil_id": "p1",
        "date": "2026-11-20",
        "lesson": 2,
        "status": "late",
    }
    perf = {
        "record_id": str(uuid.uuid4()),
        "school_id": "school-001",
        "pupil_id": "p1",
        "period": "2026-Q1",
        "subject": "Физика",
        "average": 4.5,
        "final_grade": 5,
    }
    assert _post(base, service_token, [att], kind="attendance").json()["accepted"] == 1
    assert _post(base, service_token, [perf], kind="performance").json()["accepted"] == 1
    # A grade sent to the attendance endpoint does not match that contract.
    assert _post(base, service_token, [grade()], kind="attendance").json()["accepted"] == 0


def test_xml_batch(base, service_token):
    records = [grade(), grade()]
    xml = contracts.records_to_xml("grade", records)
    resp = _post(base, service_token, None, data=xml, headers={"Content-Type": "application/xml"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 2
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<records kind="grade"><record><subject>&b;</subject></record></records>'
    )
    _err(
        _post(base, service_token, None, data=bomb, headers={"Content-Type": "application/xml"}),
        400,
        "SG-ESIA-130",
    )
    _err(
        _post(base, service_token, None, data=b"<records", headers={"Content-Type": "text/xml"}),
        400,
        "SG-ESIA-130",
    )
    wrong_kind = contracts.records_to_xml("attendance", [])
    resp = _post(base, service_token, None, data=wrong_kind, headers={"Content-Type": "application/xml"})
    assert resp.status_code == 400


def test_intake_error_paths(base, service_token):
    _err(
        requests.post(
            base + "/edu/v1/batches/grades", json={"records": []}, headers={"Idempotency-Key": "k"}
        ),
        401,
        "SG-ESIA-110",
    )
    _err(_post(base, "garbage.token.here", []), 401, "SG-ESIA-110")
    _err(_post(base, "sgpt_unknown", []), 401, "SG-ESIA-110")
    resp = requests.post(
        base + "/edu/v1/batches/grades",
        json={"records": []},
        headers={"Authorization": f"Bearer {service_token}"},
    )
    _err(resp, 400, "ESIA-007014")
    _err(_post(base, service_token, [], key="bad key with spaces"), 400, "SIM-400")
    _err(_post(base, service_token, [], kind="marks"), 404, "SIM-404")
    _err(
        _post(base, service_token, None, data=b"{", headers={"Content-Type": "application/json"}),
        400,
        "SIM-400",
    )
    _err(
        _post(base, service_token, None, data=b"[1]", headers={"Content-Type": "application/json"}),
        400,
        "SIM-400",
    )
    _err(_post(base, service_token, None, data=b"a", headers={"Content-Type": "text/plain"}), 415, "SIM-400")
    _err(
        requests.get(
            base + "/edu/v1/records",
            params={"kind": "x"},
            headers={"Authorization": f"Bearer {service_token}"},
        ),
        400,
        "SIM-400",
    )
    _err(
        requests.get(
            base + "/edu/v1/records",
            params={"limit": "x"},
            headers={"Authorization": f"Bearer {service_token}"},
        ),
        400,
        "SIM-400",
    )


def test_records_are_private_to_the_client(base, service_token, tmp_path):
    from .simclient import onboard

    rec = grade()
    _post(base, service_token, [rec])
    other = onboard(base, tmp_path / "other")
    assert _stored(base, other.service_token(), [rec["record_id"]]) == []


def test_edu_upload_csv(base, service_token):
    records = [grade(), grade()]
    csv_body = contracts.records_to_csv("grade", records)
    h = {"Authorization": f"Bearer {service_token}", "Content-Type": "text/csv; charset=utf-8"}
    resp = requests.post(base + "/api/edu-upload/v1/csv/grades", data=csv_body, headers=h)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["rows"], resp.json()["accepted"]) == (2, 2)
    assert len(_stored(base, service_token, [r["record_id"] for r in records])) == 2
    again = requests.post(base + "/api/edu-upload/v1/csv/grades", data=csv_body, headers=h)
    assert again.json()["duplicates"] == 2
    bad = contracts.records_to_csv("grade", [grade(grade=0)])
    body = _err(requests.post(base + "/api/edu-upload/v1/csv/grades", data=bad, headers=h), 422, "SIM-422")
    assert body["errors"][0]["path"].startswith("rows[0]")
    _err(
        requests.post(base + "/api/edu-upload/v1/csv/grades", data=b"nope;x\n1;2\n", headers=h),
        422,
        "SIM-422",
    )
    _err(requests.post(base + "/api/edu-upload/v1/csv/pupils", data=csv_body, headers=h), 404, "SIM-404")
    _err(requests.post(base + "/api/edu-upload/latest/csv/grades", data=csv_body, headers=h), 404, "SIM-404")
    _err(requests.post(base + "/api/edu-upload/v1/csv/grades", data=b"\xff\xfe", headers=h), 400, "SIM-400")
    _err(requests.post(base + "/api/edu-upload/v1/csv/grades", data=csv_body), 401, "SG-ESIA-110")


def test_stats_prove_exactly_once(base, school: School):
    token = school.service_token()
    before = requests.get(base + "/admin/v1/intake/stats").json()
    records = [grade() for _ in range(10)]
    key = str(uuid.uuid4())
    for _ in range(3):
        assert _post(base, token, records, key).status_code == 200
    after = requests.get(base + "/admin/v1/intake/stats").json()
    assert after["records_total"] - before["records_total"] == 10
    assert after["batches"] - before["batches"] == 1
    assert after["replays"] - before["replays"] == 2
