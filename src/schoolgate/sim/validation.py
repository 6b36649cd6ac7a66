"""Adapter between the intake and the ESIA core's payload contracts (schoolgate.esia.contracts).

The contracts (JSON Schema files and the fast compiled validator) live in the ESIA core; this module only
splits a batch into valid records and per-record rejections in the intake's answer shape.
"""

from __future__ import annotations

from typing import Any

from .common import BAD_BODY, SimError

MAX_XML_BYTES = 64 * 1024 * 1024


def _contracts() -> Any:
    from ..esia import contracts

    return contracts


def validate_records(kind: str, records: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid records, rejected [{record_id, index, code, message}])."""
    contracts = _contracts()
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    validate = contracts.validate
    for index, record in enumerate(records):
        problems = validate(kind, record)
        if problems:
            rid = record.get("record_id") if isinstance(record, dict) else None
            rejected.append(
                {
                    "record_id": rid if isinstance(rid, str) else None,
                    "index": index,
                    "code": "SIM-422",
                    "message": "; ".join(f"{p.path}: {p.message}" for p in problems)[:500],
                }
            )
        else:
            valid.append(record)
    return valid, rejected


def parse_xml_records(kind: str, raw: bytes) -> list[Any]:
    contracts = _contracts()
    try:
        return contracts.parse_records_xml(raw, kind=kind, max_bytes=MAX_XML_BYTES)
    except ValueError as exc:
        raise SimError(400, "invalid_request", BAD_BODY, f"XML: {exc}") from exc


def validate_csv(table: str, text: str) -> tuple[int, list[dict[str, Any]]]:
    """(number of data rows, errors [{line, message}]) for a `;`-separated edu-upload table."""
    contracts = _contracts()
    problems = contracts.validate(table, text, fmt="csv")
    rows = max(0, len([line for line in text.splitlines() if line.strip()]) - 1)
    return rows, [{"path": p.path, "message": p.message} for p in problems]
