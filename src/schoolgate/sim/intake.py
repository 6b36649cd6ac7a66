"""Data intake: grades, attendance and performance batches, exactly once.

* A batch carries an `Idempotency-Key`; replaying it returns the stored answer with `replayed: true` and
  stores nothing. Reusing a key for a different body is refused (422), never silently merged.
* Every record's `record_id` is the primary key of the records table: a record already stored is counted as
  a duplicate and never stored twice, whichever batch brings it.
* Records and the batch's answer are written in one transaction (executemany), so a crash leaves either the
  whole batch or nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from .auth import caller
from .common import BAD_BODY, MISSING_PARAMS, SimError, ctx, ok
from .logs import log
from .validation import csv_kind, parse_xml_records, validate_csv, validate_records

WRITER_KEY: web.AppKey[ThreadPoolExecutor] = web.AppKey("sim_intake_writer", ThreadPoolExecutor)


def _writer(request: web.Request) -> ThreadPoolExecutor:
    return request.app[WRITER_KEY]


def setup(app: web.Application) -> None:
    """One writer thread: SQLite allows one writer anyway, and one thread keeps the writer connection's
    transactions from interleaving."""
    app[WRITER_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-intake-writer")

    async def _stop(_app: web.Application) -> None:
        _app[WRITER_KEY].shutdown(wait=True)

    app.on_cleanup.append(_stop)


KINDS = {"grades": "grade", "attendance": "attendance", "performance": "performance"}
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
UPLOAD_VERSION_RE = re.compile(r"^v?[0-9]{1,3}(\.[0-9]{1,3}){0,2}$")
# One encoder object: json.dumps with non-default options builds a new encoder per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
TABLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _kind(request: web.Request) -> str:
    name = request.match_info["kind"]
    kind = KINDS.get(name)
    if kind is None:
        raise SimError(404, "not_found", "SIM-404", f"unknown kind {name!r}; one of {', '.join(KINDS)}")
    return kind


def _parse(request: web.Request, kind: str, raw: bytes) -> list[Any]:
    ctype = request.content_type
    if ctype in ("application/xml", "text/xml"):
        return parse_xml_records(kind, raw)
    if ctype not in ("application/json", ""):
        raise SimError(
            415, "invalid_request", BAD_BODY, f"unsupported content type {ctype}; send JSON or XML"
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimError(400, "invalid_request", BAD_BODY, f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SimError(400, "invalid_request", BAD_BODY, 'body must be {"records": [...]}')
    return body["records"]


async def post_batch(request: web.Request) -> web.Response:
    kind = _kind(request)
    who = await caller(request)
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise SimError.esia(
            400, MISSING_PARAMS, "Idempotency-Key header is required", missing=["Idempotency-Key"]
        )
    if not IDEMPOTENCY_KEY_RE.match(key):
        raise SimError(
            400, "invalid_request", BAD_BODY, "Idempotency-Key must be 1..200 printable ASCII characters"
        )
    sim = ctx(request)
    raw = await request.read()
    body_hash = hashlib.sha256(kind.encode() + b"\0" + raw).hexdigest()
    previous = sim.store.find_batch(who.client_id, key)
    if previous is not None:
        if previous["body_hash"] != body_hash:
            raise SimError(
                422,
                "idempotency_key_reused",
                "SIM-422",
                "Idempotency-Key was already used for a different batch; use a new key for new data",
                batch_id=previous["batch_id"],
            )
        sim.store.mark_replay(who.client_id, key)
        sim.metrics.inc(
            "schoolgate_sim_intake_batches_total", help_text="Intake batches.", kind=kind, replayed="true"
        )
        response = json.loads(previous["response"])
        response["replayed"] = True
        log("intake.replayed", client_id=who.client_id, batch_id=previous["batch_id"])
        return ok(response)

    records = _parse(request, kind, raw)
    if len(records) > sim.config.max_batch_records:
        raise SimError(
            413, "invalid_request", "SIM-413", f"at most {sim.config.max_batch_records} records per batch"
        )
    valid, rejected = validate_records(kind, records)
    batch_id = str(uuid.uuid4())
    now = time.time()
    client_id = who.client_id
    dumps = _ENCODE
    rows = [(r["record_id"], kind, client_id, batch_id, r["school_id"], dumps(r), now) for r in valid]
    distinct = len({row[0] for row in rows})

    def response_for(inserted: int) -> dict[str, Any]:
        return {
            "batch_id": batch_id,
            "kind": kind,
            "received": len(records),
            "accepted": inserted,
            "duplicates": len(rows) - inserted,
            "rejected": rejected,
            "replayed": False,
        }

    loop = asyncio.get_running_loop()
    outcome, response = await loop.run_in_executor(
        _writer(request),
        functools.partial(
            sim.store.store_batch,
            client_id=client_id,
            key=key,
            kind=kind,
            body_hash=body_hash,
            batch_id=batch_id,
            rows=rows,
            response_for=response_for,
        ),
    )
    if outcome == "conflict":
        raise SimError(
            422,
            "idempotency_key_reused",
            "SIM-422",
            "Idempotency-Key was already used for a different batch; use a new key for new data",
            batch_id=response["batch_id"],
        )
    if outcome == "replayed":
        response["replayed"] = True
        return ok(response)
    inserted = response["accepted"]
    m = sim.metrics
    m.inc("schoolgate_sim_intake_batches_total", help_text="Intake batches.", kind=kind, replayed="false")
    m.inc(
        "schoolgate_sim_intake_records_total",
        inserted,
        help_text="Intake records by outcome.",
        kind=kind,
        outcome="accepted",
    )
    m.inc("schoolgate_sim_intake_records_total", len(rows) - inserted, kind=kind, outcome="duplicate")
    m.inc("schoolgate_sim_intake_records_total", len(rejected), kind=kind, outcome="rejected")
    # Record ids only: the payload (pupil ids, grades) never goes to the log.
    log(
        "intake.batch",
        client_id=client_id,
        batch_id=batch_id,
        kind=kind,
        accepted=inserted,
        duplicates=len(rows) - inserted,
        distinct_in_batch=distinct,
        rejected_record_ids=[r["record_id"] for r in rejected][:100],
    )
    return ok(response)


async def get_records(request: web.Request) -> web.Response:
    who = await caller(request)
    q = request.rel_url.query
    clauses, params = ["client_id = ?"], [who.client_id]
    kind = q.get("kind")
    if kind is not None:
        if kind not in KINDS and kind not in KINDS.values():
            raise SimError(400, "invalid_request", BAD_BODY, f"kind must be one of {', '.join(KINDS)}")
        clauses.append("kind = ?")
        params.append(KINDS.get(kind, kind))
    ids = q.getall("record_id", [])
    if len(ids) > 1000:
        raise SimError(400, "invalid_request", BAD_BODY, "at most 1000 record_id values per query")
    if ids:
        clauses.append(f"record_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    if "batch_id" in q:
        clauses.append("batch_id = ?")
        params.append(q["batch_id"])
    try:
        limit = int(q.get("limit", "1000"))
    except ValueError as exc:
        raise SimError(400, "invalid_request", BAD_BODY, "limit must be an integer") from exc
    if not 1 <= limit <= 10_000:
        raise SimError(400, "invalid_request", BAD_BODY, "limit must be 1..10000")
    rows = ctx(request).store.all(
        f"SELECT record_id, kind, batch_id, received_at, payload FROM records WHERE {' AND '.join(clauses)}"  # noqa: S608 - placeholders only
        " ORDER BY received_at, record_id LIMIT ?",
        [*params, limit],
    )
    out = [
        {
            "record_id": r["record_id"],
            "kind": r["kind"],
            "batch_id": r["batch_id"],
            "received_at": r["received_at"],
            "record": json.loads(r["payload"]),
        }
        for r in rows
    ]
    return ok({"count": len(out), "records": out})


async def edu_upload_csv(request: web.Request) -> web.Response:
    """ПОДД-agent-shaped upload: `;`-separated UTF-8 CSV for one table; all rows or nothing."""
    who = await caller(request)
    version, table = request.match_info["version"], request.match_info["table"]
    if not UPLOAD_VERSION_RE.match(version):
        raise SimError(404, "not_found", "SIM-404", f"unknown edu-upload version {version!r}")
    kind = csv_kind(table) if TABLE_RE.match(table) else None
    if kind is None:
        raise SimError(404, "not_found", "SIM-404", f"unknown table {table!r}; one of {', '.join(KINDS)}")
    raw = await request.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SimError(400, "invalid_request", BAD_BODY, f"CSV must be UTF-8: {exc}") from exc
    records, errors = validate_csv(table, text)
    if errors:
        raise SimError(
            422,
            "invalid_csv",
            "SIM-422",
            f"{len(errors)} error(s) in {table}.csv; nothing stored",
            errors=errors[:200],
        )
    upload_id = str(uuid.uuid4())
    now = time.time()
    rows = [
        (r["record_id"], kind, who.client_id, upload_id, r["school_id"], _ENCODE(r), now) for r in records
    ]
    # Same exactly-once rule as the batch API: a record_id already stored is never stored twice.
    with ctx(request).store.tx() as db:
        inserted = max(
            db.executemany(
                "INSERT OR IGNORE INTO records(record_id, kind, client_id, batch_id, school_id, payload,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            ).rowcount,
            0,
        )
        db.execute(
            "INSERT INTO uploads(upload_id, version, table_name, client_id, rows, body_sha256, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (upload_id, version, table, who.client_id, len(rows), hashlib.sha256(raw).hexdigest(), now),
        )
    log("edu_upload.accepted", client_id=who.client_id, upload_id=upload_id, table=table, rows=len(rows))
    return ok(
        {
            "upload_id": upload_id,
            "version": version,
            "table": table,
            "rows": len(rows),
            "accepted": inserted,
            "duplicates": len(rows) - inserted,
            "status": "accepted",
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/edu/v1/batches/{kind}", post_batch),
        web.get("/edu/v1/records", get_records),
        web.post("/api/edu-upload/{version}/csv/{table}", edu_upload_csv),
    ]
