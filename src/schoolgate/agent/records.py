"""Turning request bodies into validated, storable records.

Validation itself is the ESIA core's contract (`schoolgate.esia.contracts`);
this module only decodes the body, asks the contract, and produces the
canonical JSON the outbox stores and the delivery workers send verbatim.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .store import Prepared, prepared

try:  # optional accelerator (3-10x faster JSON); the stdlib json gives the same canonical bytes
    import orjson
except ImportError:  # pragma: no cover - depends on the installation
    orjson = None  # type: ignore[assignment]

# URL kind (singular or the provider's plural) → contract kind; provider endpoint per contract kind.
KINDS = {
    "grade": "grade",
    "grades": "grade",
    "attendance": "attendance",
    "performance": "performance",
}
PROVIDER_PATH = {"grade": "grades", "attendance": "attendance", "performance": "performance"}


@dataclass
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InputError(Exception):
    """Bad input: becomes a 4xx naming the field(s)."""

    def __init__(self, status: int, errors: Sequence[FieldError], code: str = "invalid_input") -> None:
        self.status = status
        self.errors = list(errors)
        self.code = code
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    def __reduce__(self) -> tuple[type[InputError], tuple[int, list[FieldError], str]]:
        # Raised in a parsing worker process and re-raised in the agent: pickle the real arguments.
        return (InputError, (self.status, self.errors, self.code))


def kind_of(url_kind: str) -> str:
    kind = KINDS.get(url_kind)
    if kind is None:
        raise InputError(
            404,
            [FieldError("kind", f"unknown record kind {url_kind!r}; use grade, attendance or performance")],
            "unknown_kind",
        )
    return kind


def _decode_json(body: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the stdlib path below explains what is wrong
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            400, [FieldError("body", f"not valid UTF-8 (byte {exc.start})")], "bad_encoding"
        ) from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputError(400, [FieldError("body", "JSON nested too deeply")], "bad_json") from None
    except ValueError as exc:
        raise InputError(400, [FieldError("body", f"not valid JSON: {exc}")], "bad_json") from None
    if orjson is not None:  # stdlib accepted what orjson refused: NaN, huge integers, 1000+ levels deep
        raise InputError(
            400,
            [
                FieldError(
                    "body",
                    "not valid JSON (NaN/Infinity, integer beyond 64 bits "
                    "or nesting deeper than 1024 levels)",
                )
            ],
            "bad_json",
        )
    return value


def _contracts() -> Any:
    from schoolgate.esia import contracts  # the one implementation of the record contracts

    return contracts


def _raise_contract(errors: Sequence[Any]) -> None:
    if errors:
        # Messages name the field and the constraint, never the value (152-ФЗ); cap the list.
        out = [FieldError(str(e.path) or "body", str(e.message)) for e in errors[:50]]
        raise InputError(422, out, "validation_failed")


def _check(kind: str, records: list[Any], prefix: str) -> None:
    contracts = _contracts()
    if prefix:
        _raise_contract(contracts.validate_records(kind, records, base=prefix))
    elif not contracts.is_valid_record(kind, records[0]):
        _raise_contract(contracts.record_errors(kind, records[0]))


def _canonical(rec: dict[str, Any]) -> bytes:
    # Sorted keys, no spaces, UTF-8: the same record always gives the same bytes (and digest).
    if orjson is not None:
        return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def _prepare(kind: str, records: list[dict[str, Any]]) -> list[Prepared]:
    # One tuple per record and no per-record calls we can avoid: this loop runs 50,000 times a second.
    out: list[Prepared] = []
    append = out.append
    blake2b, crc32, fromhex = hashlib.blake2b, zlib.crc32, bytes.fromhex
    if orjson is not None:
        dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
        for r in records:
            rid = r["record_id"]
            low = rid.lower()
            if low != rid:  # UUIDs are case-insensitive: store, send and answer one form
                r["record_id"] = rid = low
            payload = dumps(r, option=sort)
            pupil = r["pupil_id"]
            append(
                Prepared(
                    rid,
                    kind,
                    pupil,
                    payload,
                    blake2b(payload, digest_size=16).digest(),
                    fromhex(rid.replace("-", "")),  # the contract's pattern makes this 16 bytes (record_key)
                    crc32(pupil.encode()),  # pupil_lane
                )
            )
        return out
    for r in records:
        r["record_id"] = r["record_id"].lower()
        append(prepared(r["record_id"], kind, r["pupil_id"], _canonical(r)))
    return out


def parse_single(kind: str, body: bytes) -> list[Prepared]:
    obj = _decode_json(body)
    if not isinstance(obj, dict):
        raise InputError(400, [FieldError("body", "must be one JSON object (a record)")], "bad_shape")
    _check(kind, [obj], "")
    return _prepare(kind, [obj])


def parse_batch(
    kind: str, body: bytes, content_type: str, max_records: int, max_bytes: int
) -> list[Prepared]:
    ct = content_type.split(";")[0].strip().lower()
    if ct in ("application/json", "", "application/octet-stream"):
        obj = _decode_json(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("records"), list):
            raise InputError(400, [FieldError("records", 'body must be {"records": [...]}')], "bad_shape")
        records = obj["records"]
    elif ct in ("application/xml", "text/xml"):
        records = _xml_records(kind, body, max_bytes)
    elif ct in ("text/csv", "application/csv"):
        records = _csv_records(kind, body)
    else:
        raise InputError(
            415,
            [
                FieldError(
                    "Content-Type",
                    f"{ct!r} is not accepted; use application/json, application/xml or text/csv",
                )
            ],
            "unsupported_media_type",
        )
    if not records:
        raise InputError(400, [FieldError("records", "empty batch")], "bad_shape")
    if len(records) > max_records:
        raise InputError(
            413,
            [FieldError("records", f"{len(records)} records; at most {max_records} per batch")],
            "too_many_records",
        )
    _check(kind, records, "records")
    return _prepare(kind, records)


def _xml_records(kind: str, body: bytes, max_bytes: int) -> list[Any]:
    # parse_xml underneath refuses DTDs, entities (billion laughs) and external references (XXE).
    return _records_from_parsed(
        kind, _contract_call("XML", _contracts().xml_to_object, kind, body, max_bytes), "XML"
    )


def _csv_records(kind: str, body: bytes) -> list[Any]:
    return _contract_call("CSV", _contracts().csv_to_records, kind, body, len(body) + 1)


def _contract_call(fmt: str, fn: Any, kind: str, body: bytes, max_bytes: int) -> Any:
    from schoolgate.esia.errors import EsiaError

    try:
        return fn(kind, body, max_bytes=max_bytes)
    except EsiaError as exc:
        detail = f"{exc.message_en}: {exc.detail}" if exc.detail else exc.message_en
        raise InputError(
            400, [FieldError("body", f"{fmt} refused: {detail}")], f"bad_{fmt.lower()}"
        ) from None


def _records_from_parsed(kind: str, parsed: Any, fmt: str) -> list[Any]:
    if isinstance(parsed, dict):
        parsed = parsed.get("records")
    if not isinstance(parsed, list):
        raise InputError(400, [FieldError("body", f"{fmt} document holds no records")], "bad_shape")
    return parsed
