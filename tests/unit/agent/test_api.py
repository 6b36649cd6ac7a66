"""The local API of a really started agent: authentication, hostile and malformed input, fuzzing."""

from __future__ import annotations

import json
import socket
import sqlite3
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schoolgate.agent.auth import sign
from schoolgate.agent.harness import AgentProcess

from .conftest import grade


def stored_count(agent: AgentProcess) -> int:
    with sqlite3.connect(agent.db_path) as c:
        return int(c.execute("SELECT COUNT(*) FROM records").fetchone()[0])


def fields(body: dict) -> list[str]:
    return [e["field"] for e in body["errors"]]


def test_single_and_batch_push_are_acknowledged_and_idempotent(agent: AgentProcess) -> None:
    rec = grade()
    status, body = agent.request("POST", "/v1/records/grade", rec)
    assert (status, body["status"]) == (202, "accepted")
    status, body = agent.request("POST", "/v1/records/grade", rec)
    assert (status, body["status"]) == (202, "duplicate")
    status, body = agent.request("POST", "/v1/batches/grade", {"records": [rec, grade(), grade()]})
    assert status == 202 and (body["accepted"], body["duplicates"]) == (2, 1)
    assert stored_count(agent) == 3
    changed = dict(rec, grade=2)
    status, body = agent.request("POST", "/v1/records/grade", changed)
    assert status == 409 and fields(body) == ["record_id"]
    status, body = agent.request("POST", "/v1/batches/grade", {"records": [grade(), changed]})
    assert status == 409 and fields(body) == ["records[1].record_id"]
    assert stored_count(agent) == 3  # the conflicting batch stored nothing, not even its new record


def test_xml_and_csv_batches(agent: AgentProcess) -> None:
    from schoolgate.esia import contracts

    recs = [grade(), grade()]
    status, body = agent.request(
        "POST", "/v1/batches/grade", contracts.records_to_xml("grade", recs), "application/xml"
    )
    assert status == 202 and body["accepted"] == 2, body
    recs = [grade(), grade(), grade()]
    status, body = agent.request(
        "POST", "/v1/batches/grade", contracts.records_to_csv("grade", recs), "text/csv"
    )
    assert status == 202 and body["accepted"] == 3, body
    status, st_ = agent.request("GET", f"/v1/records/status/{recs[0]['record_id']}")
    assert status == 200 and st_["status"] == "queued"


def test_authentication_is_required_and_checked(agent: AgentProcess) -> None:
    rec = json.dumps(grade()).encode()
    status, body = agent.request("POST", "/v1/records/grade", rec, signed=False)
    assert status == 401 and "HMAC" in body["message"]
    path = "/v1/records/grade"
    cases = {
        "wrong secret": sign(b"x" * 32, "POST", path, rec),
        "stale": sign(agent.secret, "POST", path, rec, timestamp=int(time.time()) - 3600),
        "other body": sign(agent.secret, "POST", path, rec + b" "),
        "other path": sign(agent.secret, "POST", "/v1/records/attendance", rec),
    }
    import urllib.error
    import urllib.request

    for name, headers in cases.items():
        req = urllib.request.Request(
            agent.url + path, data=rec, headers={**headers, "Content-Type": "application/json"}, method="POST"
        )
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError(f"{name}: accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401, name
    assert stored_count(agent) == 0


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE records [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<records kind="grade"><record><record_id>&x;</record_id></record></records>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<records kind="grade"><record><subject>&lol4;</subject></record></records>"""


def test_hostile_and_malformed_input_gets_4xx_naming_the_field(agent: AgentProcess) -> None:
    cases = [
        ("/v1/batches/grade", XXE, "application/xml", 400, "body", "DTD"),
        ("/v1/batches/grade", LAUGHS, "application/xml", 400, "body", "DTD"),
        ("/v1/records/grade", b'{"record_id": "\xff\xfe"}', "application/json", 400, "body", "UTF-8"),
        ("/v1/records/grade", json.dumps(grade(grade=6)).encode(), "application/json", 422, "grade", ""),
        ("/v1/records/grade", json.dumps(grade(grade="5")).encode(), "application/json", 422, "grade", ""),
        (
            "/v1/batches/grade",
            json.dumps({"records": [grade(), grade(grade=0)]}).encode(),
            "application/json",
            422,
            "records[1].grade",
            "",
        ),
        (
            "/v1/records/grade",
            json.dumps(grade(pupil="Иванов Иван")).encode(),
            "application/json",
            422,
            "pupil_id",
            "",
        ),
        (
            "/v1/records/grade",
            json.dumps(dict(grade(), comment="x" * 600)).encode(),
            "application/json",
            422,
            "comment",
            "",
        ),
        ("/v1/records/grade", b"[1,2,3]", "application/json", 400, "body", ""),
        ("/v1/records/grade", b"[" * 60_000, "application/json", 400, "body", ""),
        ("/v1/batches/grade", b'{"records": []}', "application/json", 400, "records", ""),
        ("/v1/batches/grade", b"a;b\n1;2", "text/plain", 415, "Content-Type", ""),
        ("/v1/records/pupils", json.dumps(grade()).encode(), "application/json", 404, "kind", ""),
        ("/v1/batches/grade", b"record_id;grade\nx;9", "text/csv", 422, "records[0].grade", ""),
    ]
    for path, body, ctype, want_status, want_field, want_text in cases:
        status, resp = agent.request("POST", path, body, ctype)
        assert status == want_status, (path, body[:60], resp)
        assert want_field in fields(resp), (want_field, resp)
        assert want_text in resp["message"], resp
        assert "Иванов" not in json.dumps(resp, ensure_ascii=False)  # errors never echo pupils' data
    assert stored_count(agent) == 0


def _raw(agent: AgentProcess, head: bytes, body_chunks: list[bytes] | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", agent.port), timeout=15) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks or []:
                s.sendall(chunk)
        except OSError:
            pass  # the agent hung up early, as it should
        data = b""
        try:
            while True:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    length = 0
                    for line in data[:head_end].split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if len(data) >= head_end + 4 + length:
                        break
                more = s.recv(65536)
                if not more:
                    break
                data += more
        except OSError:
            pass
        return data


def test_oversized_bodies_are_refused_before_being_buffered(agent: AgentProcess) -> None:
    size = 100 * 1024 * 1024
    path = "/v1/batches/grade"
    h = sign(agent.secret, "POST", path, b"")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Schoolgate-Timestamp: {h['X-Schoolgate-Timestamp']}\r\nX-Schoolgate-Signature: "
        f"{h['X-Schoolgate-Signature']}\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    t0 = time.monotonic()
    resp = _raw(agent, head, [b"x" * 65536])
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert json.loads(resp.split(b"\r\n\r\n", 1)[1])["errors"][0]["field"] == "body"
    assert time.monotonic() - t0 < 5
    # Without Content-Length (chunked): refused once the limit is crossed, not after 100 MB.
    head = head.replace(f"Content-Length: {size}".encode(), b"Transfer-Encoding: chunked")
    chunk = b"%x\r\n" % (1 << 20) + b"[" * (1 << 20) + b"\r\n"
    resp = _raw(agent, head, [chunk] * 100)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert stored_count(agent) == 0
    assert agent.request("GET", "/healthz", signed=False)[0] == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
record_like = st.fixed_dictionaries(
    {
        "record_id": st.uuids().map(str) | st.text(max_size=40),
        "school_id": st.text(max_size=10),
        "pupil_id": st.text(max_size=70),
        "subject": st.text(max_size=110),
        "grade": json_values,
        "date": st.text(max_size=12),
        "teacher_id": st.text(max_size=10),
    },
    optional={"comment": st.text(max_size=600), "extra": json_values},
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(record_like, json_values, st.binary(max_size=300)),
    batch=st.booleans(),
    ctype=st.sampled_from(["application/json", "application/xml", "text/csv"]),
)
def test_fuzzed_input_never_causes_5xx(agent: AgentProcess, payload: object, batch: bool, ctype: str) -> None:
    if isinstance(payload, bytes):
        body = payload
    else:
        body = json.dumps({"records": [payload]} if batch else payload).encode()
    path = "/v1/batches/grade" if batch else "/v1/records/grade"
    status, resp = agent.request("POST", path, body, ctype if batch else "application/json")
    assert status < 500, (status, resp)
    if status >= 400:
        assert resp["errors"] and all(e["field"] for e in resp["errors"])
