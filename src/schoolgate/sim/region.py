"""Regional onboarding: a school submits its dossier and gets the access code for the provider cabinet."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any

from aiohttp import web

from .common import BAD_BODY, SimError, ctx, not_found, ok, read_json, require_object
from .logs import log
from .store import sha256_hex

# The documents the regional digital education center asks for (seed, stage 1).
REQUIRED_DOCUMENTS: dict[str, str] = {
    "charter": "Устав образовательной организации",
    "connection_decision": "Решение о подключении к государственным сервисам",
    "parent_committee_consent": "Согласие родительского комитета",
    "license": "Лицензия на осуществление образовательной деятельности",
}
SCHOOL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ACCESS_CODE_HEADER = "X-Access-Code"


def _check_documents(
    documents: Any,
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, Any]]]:
    """Return (missing, invalid, accepted) so a school sees everything to fix in one answer."""
    if not isinstance(documents, list):
        raise SimError(400, "invalid_request", BAD_BODY, "documents must be a list")
    invalid: list[dict[str, str]] = []
    accepted: dict[str, dict[str, Any]] = {}
    for index, doc in enumerate(documents):
        where = f"documents[{index}]"
        if not isinstance(doc, dict):
            invalid.append({"path": where, "message": "must be an object with type, name and sha256"})
            continue
        doc_type, name, digest = doc.get("type"), doc.get("name"), doc.get("sha256")
        if not isinstance(doc_type, str) or doc_type not in REQUIRED_DOCUMENTS:
            invalid.append(
                {"path": f"{where}.type", "message": f"unknown type; one of {sorted(REQUIRED_DOCUMENTS)}"}
            )
            continue
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            invalid.append({"path": f"{where}.name", "message": "file name of 1..255 characters required"})
            continue
        if not isinstance(digest, str) or not SHA256_RE.match(digest.lower()):
            invalid.append({"path": f"{where}.sha256", "message": "SHA-256 of the file, 64 hex characters"})
            continue
        accepted[doc_type] = {"type": doc_type, "name": name, "sha256": digest.lower()}
    missing = [{"type": t, "title": title} for t, title in REQUIRED_DOCUMENTS.items() if t not in accepted]
    return missing, invalid, list(accepted.values())


async def requirements(request: web.Request) -> web.Response:
    return ok({"documents": [{"type": t, "title": title} for t, title in REQUIRED_DOCUMENTS.items()]})


async def submit_dossier(request: web.Request) -> web.Response:
    data = require_object(await read_json(request), "school_id", "documents")
    school_id = data["school_id"]
    if not isinstance(school_id, str) or not SCHOOL_ID_RE.match(school_id):
        raise SimError(400, "invalid_request", BAD_BODY, "school_id must match ^[A-Za-z0-9_-]{1,64}$")
    missing, invalid, accepted = _check_documents(data["documents"])
    if missing or invalid:
        raise SimError(
            422,
            "dossier_incomplete",
            "SIM-422",
            "dossier incomplete: " + ", ".join([m["type"] for m in missing] + [i["path"] for i in invalid]),
            missing=missing,
            invalid=invalid,
            message_ru="Пакет документов неполон: " + "; ".join(m["title"] for m in missing)
            if missing
            else "Пакет документов содержит ошибки",
        )
    access_code = "SGAC-" + secrets.token_urlsafe(24)
    dossier_id = str(uuid.uuid4())
    store = ctx(request).store

    store.execute(
        "INSERT INTO dossiers(dossier_id, school_id, documents, access_code_hash, created_at)"
        " VALUES (?,?,?,?,?)",
        (dossier_id, school_id, json.dumps(accepted), sha256_hex(access_code), time.time()),
    )
    log("dossier.accepted", dossier_id=dossier_id, school_id=school_id, documents=len(accepted))
    return ok(
        {"dossier_id": dossier_id, "school_id": school_id, "access_code": access_code, "documents": accepted},
        status=201,
    )


def dossier_for(request: web.Request) -> dict[str, Any]:
    code = request.headers.get(ACCESS_CODE_HEADER, "")
    if not code:
        raise SimError(
            401, "unauthorized", "SIM-401", f"missing {ACCESS_CODE_HEADER} header (the regional access code)"
        )
    row = ctx(request).store.one("SELECT * FROM dossiers WHERE access_code_hash = ?", (sha256_hex(code),))
    if row is None:
        raise SimError(401, "unauthorized", "SIM-401", "unknown access code")
    return dict(row)


async def get_dossier(request: web.Request) -> web.Response:

    dossier = dossier_for(request)
    if dossier["dossier_id"] != request.match_info["dossier_id"]:
        raise not_found("dossier")
    return ok(
        {
            "dossier_id": dossier["dossier_id"],
            "school_id": dossier["school_id"],
            "documents": json.loads(dossier["documents"]),
            "created_at": dossier["created_at"],
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/region/v1/requirements", requirements),
        web.post("/region/v1/dossiers", submit_dossier),
        web.get("/region/v1/dossiers/{dossier_id}", get_dossier),
    ]
