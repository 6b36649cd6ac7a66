"""Payload contracts: JSON Schema/XSD/CSV, all errors with paths, fast path == reference, safe XML."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from schoolgate.cli import main
from schoolgate.esia.contracts import (
    KINDS,
    RECORD_KINDS,
    csv_to_records,
    is_valid_record,
    load_schema,
    parse_xml,
    record_errors,
    records_to_csv,
    records_to_xml,
    validate,
    xsd_path,
)
from schoolgate.esia.errors import EsiaError

DATA = Path(__file__).resolve().parents[2] / "data" / "esia" / "contracts"


def sample(kind: str):
    return json.loads((DATA / f"{kind}.json").read_text(encoding="utf-8"))


def one(kind: str) -> dict:
    doc = sample(kind)
    return doc["records"][0] if kind in RECORD_KINDS else doc


@pytest.mark.parametrize("kind", KINDS)
def test_checked_in_samples_are_valid_in_every_format(kind):
    assert validate(kind, (DATA / f"{kind}.json").read_bytes()) == []
    assert validate(kind, sample(kind)) == []
    assert validate(kind, (DATA / f"{kind}.xml").read_bytes(), "xml") == []
    if kind in RECORD_KINDS:
        assert validate(kind, (DATA / f"{kind}.csv").read_bytes(), "csv") == []


@pytest.mark.parametrize("kind", KINDS)
def test_xsd_accepts_the_samples(kind):
    schema = etree.XMLSchema(etree.parse(str(xsd_path(kind))))
    doc = etree.fromstring((DATA / f"{kind}.xml").read_bytes())
    assert schema.validate(doc), schema.error_log


MUTATIONS = [
    ("grade", "grade", 7),
    ("grade", "grade", "пять"),
    ("grade", "date", "15.09.2026"),
    ("grade", "pupil_id", "Иванов Иван"),
    ("grade", "subject", ""),
    ("grade", "comment", "x" * 501),
    ("attendance", "status", "sick"),
    ("attendance", "lesson", 0),
    ("attendance", "lesson", 13),
    ("performance", "average", 5.5),
    ("performance", "period", "2026-Q5"),
    ("performance", "final_grade", 0),
    ("certificate_request", "certificate_type", "passport"),
    ("certificate_request", "requested_at", "вчера"),
    ("signature_request", "document_hash", "ABC"),
    ("signature_request", "hash_alg", "md5"),
    ("signature_result", "status", "maybe"),
    ("grade", "record_id", "not-a-uuid"),
    ("grade", "extra_field", "x"),
    ("grade", "teacher_id", None),
]


@pytest.mark.parametrize("kind,field,value", MUTATIONS)
def test_json_and_xsd_reject_the_same_mutations(kind, field, value):
    record = copy.deepcopy(one(kind))
    if value is None:
        del record[field]
    else:
        record[field] = value
    errors = validate(kind, record)
    assert errors and errors[0].path == field
    xml = records_to_xml(kind, [record]) if kind in RECORD_KINDS else _doc_xml(kind, record)
    assert validate(kind, xml, "xml"), "XML form must be rejected too"
    schema = etree.XMLSchema(etree.parse(str(xsd_path(kind))))
    assert not schema.validate(etree.fromstring(xml))


def _doc_xml(kind, record):
    from schoolgate.esia.contracts import document_to_xml

    return document_to_xml(kind, record)


def test_all_errors_with_paths_and_no_values_in_messages():
    bad = dict(one("grade"), grade=9, date="2026-02-30", comment="секретный комментарий " * 40, name="Иванов")
    del bad["subject"]
    payload = {"records": [one("grade"), bad, {"record_id": 5}]}
    errors = validate("grade", json.dumps(payload, ensure_ascii=False).encode())
    paths = {e.path for e in errors}
    assert {
        "records[1].grade",
        "records[1].date",
        "records[1].comment",
        "records[1].subject",
        "records[1].name",
        "records[2].record_id",
        "records[2].pupil_id",
    } <= paths
    text = " ".join(map(str, errors))
    assert "секретный" not in text and "2026-02-30" not in text and "9" not in text.replace("≤ 5", "")
    assert "Иванов" not in text  # field *names* of extras are reported, values never
    assert (
        validate(
            "signature_result", {"request_id": one("signature_result")["request_id"], "status": "signed"}
        )[0].message
        == "required field is missing"
    )


def test_bad_envelopes_and_json():
    assert validate("grade", b"{not json")[0].path == "$"
    assert validate("grade", {"records": "nope"}) == [validate("grade", {"records": "nope"})[0]]
    assert validate("grade", {"records": "nope"})[0].path == "records"
    assert validate("grade", b"x" * 100, max_bytes=10)[0].message.startswith("Invalid request")
    with pytest.raises(EsiaError, match="unknown contract kind"):
        validate("diary", {})
    errors = validate("grade", [one("grade"), 5])
    assert errors and errors[0].path == "[1]"


def test_csv_edu_upload():
    records = sample("grade")["records"]
    data = records_to_csv("grade", records)
    assert data.startswith(b"record_id;school_id;pupil_id;subject;grade;date;teacher_id;comment\r\n")
    assert csv_to_records("grade", b"\xef\xbb\xbf" + data) == records  # BOM tolerated, types restored
    broken = data.replace(b";5;", b";5.5;", 1)
    assert validate("grade", broken, "csv")[0].path == "records[0].grade"
    assert "unknown CSV column" in validate("grade", b"record_id;name\r\n1;x\r\n", "csv")[0].message
    assert "cells" in validate("grade", data + b"a;b\r\n", "csv")[0].message
    assert "UTF-8" in validate("grade", "subject\r\nМатематика\r\n".encode("cp1251"), "csv")[0].message
    assert "empty" in validate("grade", b"", "csv")[0].message


XXE = {
    "external entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<records kind="grade"><record><comment>&x;</comment></record></records>',
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;'
    b'&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><records kind="grade">&c;</records>',
    "external DTD": b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd"><records/>',
    "parameter entity": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
    b"<records/>",
}


@pytest.mark.parametrize("name", list(XXE))
def test_xml_attacks_are_refused_clearly(name):
    with pytest.raises(EsiaError) as info:
        parse_xml(XXE[name])
    assert info.value.code == "SG-ESIA-130" and "not allowed" in info.value.detail
    errors = validate("grade", XXE[name], "xml")
    assert len(errors) == 1 and errors[0].path == "$" and "not allowed" in errors[0].message


def test_50mb_xml_is_refused_fast_without_parsing():
    record = (
        records_to_xml("grade", [one("grade")]).split(b'<records kind="grade">')[1].split(b"</records>")[0]
    )
    body = b'<?xml version="1.0"?><records kind="grade">' + record * (50 * 1024 * 1024 // len(record) + 1)
    body += b"</records>"
    assert len(body) > 50 * 1024 * 1024
    started = time.monotonic()
    errors = validate("grade", body, "xml")
    assert time.monotonic() - started < 2
    assert len(errors) == 1 and "limit" in errors[0].message and str(len(body)) in errors[0].message


def test_malformed_xml():
    for bad in (b"<records><record>", b"\x00\x01", b"", b"<records kind='attendance'/>"):
        errors = validate("grade", bad, "xml")
        assert len(errors) == 1 and errors[0].path == "$"


# ------------------------------------------------------------------ fast path == reference (hypothesis)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["2026-09-01", "2026-02-30", "2026-Q1", "present", "signed", "2026-09-16T09:00:00Z", "p-1", "x" * 101]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


@st.composite
def mutated_records(draw):
    kind = draw(st.sampled_from(KINDS))
    record = copy.deepcopy(one(kind))
    fields = [*sorted(load_schema(kind)["properties"]), "unexpected"]
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(fields))
        if draw(st.booleans()):
            record.pop(field, None)
        else:
            record[field] = draw(json_values)
    return kind, record


@settings(max_examples=300, deadline=None)
@given(mutated_records())
def test_compiled_validator_agrees_with_reference(case):
    kind, record = case
    assert is_valid_record(kind, record) == (record_errors(kind, record) == [])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KINDS), json_values)
def test_compiled_validator_agrees_on_arbitrary_json(kind, value):
    assert is_valid_record(kind, value) == (record_errors(kind, value) == [])


@settings(max_examples=100, deadline=None)
@given(mutated_records())
def test_xml_and_csv_forms_agree_with_json_for_string_safe_records(case):
    kind, record = case
    if kind not in RECORD_KINDS or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in record.values()
    ):
        return
    if any(
        (isinstance(v, str) and (v != v.strip() or v == "" or any(c in v for c in '\r\n\x00;"<&')))
        or (isinstance(v, str) and _numeric_field(kind, k))
        or (isinstance(v, int) and not _numeric_field(kind, k))  # text forms cannot tell 5 from "5"
        for k, v in record.items()
    ):
        return  # text that XML/CSV cannot carry unchanged, or a string where a number is expected
    expected = validate(kind, {"records": [record]}) == []
    assert (validate(kind, records_to_xml(kind, [record]), "xml") == []) == expected
    assert (validate(kind, records_to_csv(kind, [record]), "csv") == []) == expected


def _numeric_field(kind, name):
    return load_schema(kind)["properties"].get(name, {}).get("type") in ("integer", "number")


def test_cli_validate(capsys, tmp_path):
    assert main(["esia", "validate", "grade", str(DATA / "grade.csv")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"records": [dict(one("grade"), grade=0)]}))
    assert main(["esia", "validate", "grade", str(bad)]) == 1
    assert "records[0].grade: must be ≥ 1" in capsys.readouterr().out
