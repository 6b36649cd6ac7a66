"""Adapter between the intake and the ESIA core's payload contracts (schoolgate.esia.contracts).

The contracts (JSON Schema files, the compiled fast validator, safe XML and CSV readers) live in the ESIA
core; this module only splits a batch into valid records and per-record rejections in the intake's shape.
"""

from __future__ import annotations

from typing import Any

from ..esia import contracts
from ..esia.errors import EsiaError
from .common import BAD_BODY, SimError

MAX_XML_BYTES = 64 * 1024 * 1024
MAX_CSV_BYTES = 64 * 1024 * 1024


def validate_records(kind: str, records: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid records, rejected [{record_id, index, code, message}]). Fast compiled check per record; the
    full error list is only computed for the failing ones."""
    is_valid = contracts.is_valid_record
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        if is_valid(kind, record):
            valid.append(record)
            continue
        problems = contracts.record_errors(kind, record)
        rid = record.get("record_id") if isinstance(record, dict) else None
        rejected.append(
            {
                "record_id": rid if isinstance(rid, str) else None,
                "index": index,
                "code": "SIM-422",
                "message": "; ".join(str(p) for p in problems)[:500] or "record does not match the contract",
            }
        )
    return valid, rejected


def parse_xml_records(kind: str, raw: bytes) -> list[Any]:
    try:
        obj = contracts.xml_to_object(kind, raw, max_bytes=MAX_XML_BYTES)
    except EsiaError as exc:
        raise SimError(400, "invalid_request", exc.code, f"XML: {exc.detail or exc.message_en}") from exc
    if not isinstance(obj, dict) or "records" not in obj:
        raise SimError(
            400, "invalid_request", BAD_BODY, 'XML must be <records kind="..."><record>...</record>'
        )
    return obj["records"]


def csv_kind(table: str) -> str | None:
    return contracts.CSV_TABLES.get(table)


def validate_csv(table: str, text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records, errors [{path, message}]) for a `;`-separated edu-upload table."""
    kind = contracts.CSV_TABLES[table]
    try:
        records = contracts.csv_to_records(kind, text, max_bytes=MAX_CSV_BYTES)
    except EsiaError as exc:
        return [], [{"path": "$", "message": exc.detail or exc.message_en}]
    errors = contracts.validate_records(kind, records, base="rows")
    return records, [{"path": e.path, "message": e.message} for e in errors]
