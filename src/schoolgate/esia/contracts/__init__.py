"""Payload contracts: JSON Schema (checked in under ``schemas/``, the contract), XSD for the XML form,
``;``-separated UTF-8 CSV for edu-upload tables, and one ``validate()`` returning *all* errors.

Speed: JSON records are first checked by a validator compiled from the schema (``fastjsonschema``, code
generation); only records that fail are re-checked by the reference ``jsonschema`` validator to collect every
error with its path. Both use the same format checkers, and a hypothesis test keeps them in agreement.

Privacy (152-ФЗ): error messages name fields and constraints, never the offending *values*.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import EsiaError

SCHEMA_DIR = Path(__file__).parent / "schemas"
RECORD_KINDS = ("grade", "attendance", "performance")
DOCUMENT_KINDS = ("certificate_request", "signature_request", "signature_result")
KINDS = RECORD_KINDS + DOCUMENT_KINDS
# edu-upload CSV tables and the record kind each one carries
CSV_TABLES = {"grades": "grade", "attendance": "attendance", "performance": "performance"}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class ContractError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True  # type errors are reported by "type"
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


# one definition of each format, shared by both validators so they cannot disagree
FORMATS: dict[str, Callable[[object], bool]] = {"date": _is_date, "date-time": _is_datetime}


@cache
def load_schema(kind: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise EsiaError.local(
            "SG-ESIA-111", detail=f"unknown contract kind {kind!r}; known: {', '.join(KINDS)}"
        )
    return json.loads((SCHEMA_DIR / f"{kind}.json").read_text(encoding="utf-8"))


def xsd_path(kind: str) -> Path:
    load_schema(kind)
    return SCHEMA_DIR / f"{kind}.xsd"


@cache
def _reference_validator(kind: str) -> Any:
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    for name, func in FORMATS.items():
        checker.checks(name)(func)
    return jsonschema.Draft7Validator(load_schema(kind), format_checker=checker)


@cache
def _fast_validator(kind: str) -> Callable[[Any], Any] | None:
    try:
        import fastjsonschema
    except ImportError:
        return None
    formats = {name: func for name, func in FORMATS.items()}
    return fastjsonschema.compile(load_schema(kind), formats=formats, use_default=False)


def _join(base: str, parts: Iterable[Any]) -> str:
    path = base
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "$"


_REQUIRED_RE = re.compile(r"^'(.+)' is a required property$")
_EXTRA_RE = re.compile(r"\((.+) (?:was|were) unexpected\)")


def _describe(error: Any) -> tuple[list[Any], str]:
    """(extra path parts, value-free message) for a jsonschema ValidationError."""
    v, val = error.validator, error.validator_value
    if v == "required":
        found = _REQUIRED_RE.match(error.message)
        return ([found.group(1)] if found else []), "required field is missing"
    if v == "additionalProperties":
        found = _EXTRA_RE.search(error.message)
        names = found.group(1) if found else "?"
        return [], f"unexpected field(s) {names}: only the contract's fields are allowed"
    messages = {
        "type": lambda: f"must be of type {val}",
        "minimum": lambda: f"must be ≥ {val}",
        "maximum": lambda: f"must be ≤ {val}",
        "minLength": lambda: f"must be at least {val} character(s)",
        "maxLength": lambda: f"must be at most {val} characters",
        "pattern": lambda: f"does not match the pattern {val}",
        "enum": lambda: "must be one of " + ", ".join(map(str, val)),
        "const": lambda: f"must be {val!r}",
        "format": lambda: f"is not a valid {val}",
    }
    return [], messages.get(v, lambda: f"violates {v}")()


def record_errors(kind: str, record: Any, base: str = "") -> list[ContractError]:
    """All errors of one record/document (reference validator)."""
    out = []
    for error in sorted(_reference_validator(kind).iter_errors(record), key=lambda e: list(map(str, e.path))):
        if error.validator in ("if", "then"):
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            allowed = error.schema.get("properties", {})
            for name in sorted(str(k) for k in error.instance if k not in allowed):
                path = _join(base, [*error.absolute_path, name])
                out.append(ContractError(path, "unexpected field: only the contract's fields are allowed"))
            continue
        extra, message = _describe(error)
        out.append(ContractError(_join(base, [*error.absolute_path, *extra]), message))
    return out


def is_valid_record(kind: str, record: Any) -> bool:
    fast = _fast_validator(kind)
    if fast is None:
        return not any(True for _ in _reference_validator(kind).iter_errors(record))
    try:
        fast(record)
    except Exception as exc:  # fastjsonschema.JsonSchemaValueException (not imported at module level)
        if type(exc).__name__ in ("JsonSchemaValueException", "JsonSchemaException"):
            return False
        raise
    return True


def validate_records(kind: str, records: list[Any], base: str = "records") -> list[ContractError]:
    """Validate many records: compiled fast path, full error collection only for failing records."""
    fast = _fast_validator(kind)
    if fast is None:
        errors: list[ContractError] = []
        for index, record in enumerate(records):
            errors.extend(record_errors(kind, record, f"{base}[{index}]"))
        return errors
    from fastjsonschema import JsonSchemaValueException

    failing: list[int] = []
    for index, record in enumerate(records):
        try:  # zero-cost on Python 3.11 when nothing is raised
            fast(record)
        except JsonSchemaValueException:
            failing.append(index)
    errors = []
    for index in failing:
        errors.extend(record_errors(kind, records[index], f"{base}[{index}]"))
    return errors


def validate(
    kind: str, payload: Any, fmt: str = "json", *, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[ContractError]:
    """Validate ``payload`` (bytes/str, or an already-parsed object for JSON) against contract ``kind``.

    Accepted shapes: one record/document; a list of them; ``{"records": [...]}`` (XML
    ``<records kind="grade"><record>…</record></records>``); for CSV a header row of field names and
    one record per line. Returns every error with a path like ``records[3].grade``; empty list = valid.
    """
    load_schema(kind)
    try:
        if fmt == "json":
            obj = _load_json(payload, max_bytes)
        elif fmt == "xml":
            obj = xml_to_object(kind, payload, max_bytes=max_bytes)
        elif fmt == "csv":
            obj = {"records": csv_to_records(kind, payload, max_bytes=max_bytes)}
        else:
            raise EsiaError.local("SG-ESIA-111", detail=f"fmt must be json, xml or csv, not {fmt!r}")
    except EsiaError as exc:
        return [ContractError("$", f"{exc.message_en}: {exc.detail}" if exc.detail else exc.message_en)]
    return validate_object(kind, obj)


def validate_object(kind: str, obj: Any) -> list[ContractError]:
    if isinstance(obj, list):
        return validate_records(kind, obj, "")
    if isinstance(obj, Mapping) and "records" in obj and set(obj) <= {"records", "kind"}:
        records = obj["records"]
        if not isinstance(records, list):
            return [ContractError("records", "must be of type array")]
        return validate_records(kind, records)
    if is_valid_record(kind, obj):
        return []
    return record_errors(kind, obj)


def _load_json(payload: Any, max_bytes: int) -> Any:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, bytes | bytearray):
        return payload
    if len(payload) > max_bytes:
        raise EsiaError.local("SG-ESIA-111", detail=f"JSON body is {len(payload)} bytes, limit {max_bytes}")
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EsiaError.local("SG-ESIA-111", detail=f"not valid JSON: {exc}") from exc


# ---------------------------------------------------------------- XML


def parse_xml(data: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse untrusted XML: no DTD, no entities, no external references, size capped *before* parsing."""
    from xml.etree.ElementTree import ParseError

    import defusedxml
    from defusedxml.ElementTree import fromstring

    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise EsiaError.local("SG-ESIA-130", detail=f"document is {len(raw)} bytes, limit is {max_bytes}")
    try:
        return fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden as exc:
        raise EsiaError.local("SG-ESIA-130", detail="DOCTYPE/DTD is not allowed") from exc
    except defusedxml.EntitiesForbidden as exc:
        raise EsiaError.local("SG-ESIA-130", detail="entity declarations are not allowed") from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise EsiaError.local("SG-ESIA-130", detail="external references are not allowed") from exc
    except ParseError as exc:
        raise EsiaError.local("SG-ESIA-130", detail=f"not well-formed XML: {exc}") from exc


@cache
def _field_types(kind: str) -> dict[str, str]:
    return {name: prop.get("type", "string") for name, prop in load_schema(kind)["properties"].items()}


def _coerce(kind: str, name: str, text: str) -> Any:
    """Convert element/cell text to the schema type; leave it a string if it does not convert (the
    validator then reports a type error with the path)."""
    field_type = _field_types(kind).get(name)
    try:
        if field_type == "integer":
            return int(text.strip())
        if field_type == "number":
            return float(text.strip())
    except ValueError:
        return text
    return text


def _element_to_record(kind: str, element: Any) -> dict[str, Any]:
    types = _field_types(kind)
    record: dict[str, Any] = {}
    for child in element:
        text = child.text or ""
        if types.get(child.tag, "string") == "string":
            record[child.tag] = text
        else:
            record[child.tag] = _coerce(kind, child.tag, text)
    return record


def xml_to_object(kind: str, data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    root = parse_xml(data, max_bytes)
    if root.tag == "records":
        declared = root.get("kind")
        if declared is not None and declared != kind:
            raise EsiaError.local("SG-ESIA-111", detail=f"<records kind={declared!r}> sent as {kind!r}")
        return {"records": [_element_to_record(kind, rec) for rec in root if rec.tag == "record"]}
    if root.tag in (kind, "record"):
        return _element_to_record(kind, root)
    raise EsiaError.local(
        "SG-ESIA-111", detail=f"root element <{root.tag}> is neither <records> nor <{kind}>"
    )


def records_to_xml(kind: str, records: Iterable[Mapping[str, Any]]) -> bytes:
    from xml.etree.ElementTree import Element, SubElement, tostring

    root = Element("records", kind=kind)
    for record in records:
        rec = SubElement(root, "record")
        for name, value in record.items():
            SubElement(rec, name).text = str(value)
    return tostring(root, encoding="utf-8", xml_declaration=True)


def document_to_xml(kind: str, document: Mapping[str, Any]) -> bytes:
    """XML form of a single document (certificate/signature request/result): root element named ``kind``."""
    from xml.etree.ElementTree import Element, SubElement, tostring

    root = Element(kind)
    for name, value in document.items():
        SubElement(root, name).text = str(value)
    return tostring(root, encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------- CSV (edu-upload)


def csv_columns(kind: str) -> list[str]:
    return list(load_schema(kind)["properties"])


def csv_to_records(
    kind: str, data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[dict[str, Any]]:
    """``;``-separated UTF-8 (BOM tolerated) with a header row; empty cells mean "field absent"."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise EsiaError.local("SG-ESIA-111", detail=f"CSV is {len(raw)} bytes, limit {max_bytes}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EsiaError.local("SG-ESIA-111", detail=f"CSV must be UTF-8: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    header = next(reader, None)
    if not header:
        raise EsiaError.local("SG-ESIA-111", detail="CSV is empty: a header row with field names is required")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in load_schema(kind)["properties"]]
    if unknown:
        raise EsiaError.local(
            "SG-ESIA-111",
            detail=f"unknown CSV column(s) {', '.join(unknown)}; expected {';'.join(csv_columns(kind))}",
        )
    records = []
    for line_no, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise EsiaError.local(
                "SG-ESIA-111", detail=f"CSV line {line_no} has {len(row)} cells, header has {len(header)}"
            )
        records.append(
            {name: _coerce(kind, name, cell) for name, cell in zip(header, row, strict=True) if cell != ""}
        )
    return records


def records_to_csv(kind: str, records: Iterable[Mapping[str, Any]]) -> bytes:
    columns = csv_columns(kind)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record.get(c) for c in columns])
    return buffer.getvalue().encode("utf-8")
