"""Provider services: the catalogue, "ученик запрашивает справку" and "родитель подписывает документ".

* A справка request goes pending → ready; when ready the document (XML) is generated and signed (detached
  CMS) by the provider's document signing key through the ESIA core's signer.
* A signing session waits for the parent: the sign page (HTML, for a browser) or its form POST makes the
  simulated parent sign with the test user's certificate (CMS via the ESIA core); the result is available by
  polling and, when a callback_url was given, POSTed to it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import time
import uuid
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from .auth import Caller, caller
from .common import BAD_BODY, CONFLICT, SimError, ctx, not_found, ok, read_form, read_json, require_object
from .logs import log
from .testusers import TEST_USERS, subject_for

CATALOGUE: list[dict[str, str]] = [
    {
        "code": "spravka-ob-obuchenii",
        "title": "Справка об обучении в образовательной организации",
        "kind": "document",
    },
    {"code": "vypiska-ocenok", "title": "Выписка из электронного журнала (оценки)", "kind": "document"},
    {"code": "vypiska-poseshchaemosti", "title": "Выписка о посещаемости", "kind": "document"},
    {"code": "podpis-roditelya", "title": "Подписание электронного документа родителем", "kind": "signature"},
]
DOCUMENT_SERVICES = {c["code"]: c for c in CATALOGUE if c["kind"] == "document"}
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


async def catalogue(request: web.Request) -> web.Response:
    await caller(request)
    return ok({"services": CATALOGUE})


def _subject_oid(who: Caller, data: dict[str, Any]) -> str:
    """The person the request is for: the logged-in user of a user token, else `oid` in the body."""
    if "urn:esia:sbj_id" in who.claims:
        oid = str(who.claims["urn:esia:sbj_id"])
        if "oid" in data and str(data["oid"]) != oid:
            raise SimError.esia(403, "ESIA-007019", "a user's token can only request documents for that user")
        return oid
    oid = str(data.get("oid", ""))
    if not oid:
        raise SimError.esia(400, "ESIA-007014", "missing: oid (needed with a service token)", missing=["oid"])
    return oid


async def request_document(request: web.Request) -> web.Response:
    who = await caller(request)
    data = require_object(await read_json(request), "service")
    service = data["service"]
    if not isinstance(service, str) or service not in DOCUMENT_SERVICES:
        raise SimError(
            400, "invalid_request", BAD_BODY, f"service must be one of {sorted(DOCUMENT_SERVICES)}"
        )
    oid = _subject_oid(who, data)
    if oid not in TEST_USERS or TEST_USERS[oid]["role"] != "pupil":
        raise not_found("pupil")
    sim = ctx(request)
    request_id = str(uuid.uuid4())
    now = time.time()
    sim.store.execute(
        "INSERT INTO doc_requests(request_id, client_id, service_code, oid, status, ready_at, created_at)"
        " VALUES (?,?,?,?,?,?,?)",
        (request_id, who.client_id, service, oid, "pending", now + sim.config.document_ready_after_s, now),
    )
    log("document.requested", client_id=who.client_id, request_id=request_id, service=service)
    return ok(
        {"request_id": request_id, "service": service, "status": "pending"},
        status=202,
        headers={"Location": f"/services/v1/requests/{request_id}"},
    )


def _document_xml(row: Any) -> bytes:
    user = TEST_USERS[row["oid"]]
    title = DOCUMENT_SERVICES[row["service_code"]]["title"]
    issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<document xmlns="urn:schoolgate:sim:document:1" '
        f'id="{row["request_id"]}" service="{row["service_code"]}">'
        f"<title>{escape(title)}</title>"
        f'<pupil oid="{row["oid"]}"><lastName>{escape(user["lastName"])}</lastName>'
        f"<firstName>{escape(user['firstName'])}</firstName><middleName>{escape(user['middleName'])}</middleName>"
        f"</pupil><issuedAt>{issued}</issuedAt><issuer>{escape(row['client_id'])}</issuer>"
        "<text>Справка дана в том, что обучающийся действительно обучается "
        "в образовательной организации.</text>"
        "</document>\n"
    ).encode()


async def _ensure_ready(request: web.Request, row: Any) -> Any:
    """Generate and sign the document the first time a ready request is looked at."""
    sim = ctx(request)
    if row["status"] != "pending" or row["ready_at"] > time.time():
        return row
    document = _document_xml(row)
    signer = sim.keys.signer("org")
    signature = await asyncio.get_running_loop().run_in_executor(None, signer.sign_cms_detached, document)
    sim.store.execute(
        "UPDATE doc_requests SET status = 'ready', document = ?, signature = ? WHERE request_id = ? AND"
        " status = 'pending'",
        (document, signature, row["request_id"]),
    )
    log("document.ready", request_id=row["request_id"])
    return sim.store.one("SELECT * FROM doc_requests WHERE request_id = ?", (row["request_id"],))


async def _own_request(request: web.Request) -> tuple[Caller, Any]:
    who = await caller(request)
    row = ctx(request).store.one(
        "SELECT * FROM doc_requests WHERE request_id = ? AND client_id = ?",
        (request.match_info["request_id"], who.client_id),
    )
    if row is None:
        raise not_found("request")
    return who, row


async def get_request(request: web.Request) -> web.Response:
    _who, row = await _own_request(request)
    row = await _ensure_ready(request, row)
    body: dict[str, Any] = {
        "request_id": row["request_id"],
        "service": row["service_code"],
        "status": row["status"],
    }
    if row["status"] == "ready":
        base = f"/services/v1/requests/{row['request_id']}"
        body.update(
            document_url=base + "/document",
            signature_url=base + "/signature",
            document_sha256=hashlib.sha256(row["document"]).hexdigest(),
            signer_certificate=ctx(request).keys.signer("org").certificate_pem.decode(),
        )
    return ok(body)


async def get_document(request: web.Request) -> web.Response:
    _who, row = await _own_request(request)
    row = await _ensure_ready(request, row)
    if row["status"] != "ready":
        raise SimError(409, "not_ready", CONFLICT, "the document is not ready yet; poll the request")
    if request.path.endswith("/signature"):
        return web.Response(body=row["signature"], content_type="application/pkcs7-signature")
    return web.Response(body=row["document"], content_type="application/xml", charset="utf-8")


# -- parent signature --------------------------------------------------------------------------------------
def _session_public(row: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_id": row["session_id"],
        "status": row["status"],
        "signer_oid": row["signer_oid"],
        "document_name": row["document_name"],
        "document_sha256": hashlib.sha256(row["document"]).hexdigest(),
        "sign_url": f"/services/v1/signing-sessions/{row['session_id']}/sign",
        "callback_status": row["callback_status"],
    }
    if row["status"] == "signed":
        body["cms"] = base64.b64encode(row["cms"]).decode()
        body["signer_certificate"] = row["signer_certificate"]
    return body


async def create_signing_session(request: web.Request) -> web.Response:
    who = await caller(request)
    data = require_object(await read_json(request), "document", "document_name", "signer_oid")
    try:
        document = base64.b64decode(str(data["document"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SimError(400, "invalid_request", BAD_BODY, "document must be base64") from exc
    if not document or len(document) > MAX_DOCUMENT_BYTES:
        raise SimError(400, "invalid_request", BAD_BODY, f"document must be 1..{MAX_DOCUMENT_BYTES} bytes")
    name = data["document_name"]
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise SimError(400, "invalid_request", BAD_BODY, "document_name must be 1..255 characters")
    signer_oid = str(data["signer_oid"])
    if signer_oid not in TEST_USERS or TEST_USERS[signer_oid]["role"] != "parent":
        raise SimError(400, "invalid_request", BAD_BODY, "signer_oid must be a parent test user")
    callback = data.get("callback_url")
    if callback is not None:
        parts = urlsplit(str(callback)) if isinstance(callback, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SimError(400, "invalid_request", BAD_BODY, "callback_url must be an http(s) URL")
    session_id = str(uuid.uuid4())
    now = time.time()
    store = ctx(request).store
    store.execute(
        "INSERT INTO signing_sessions(session_id, client_id, signer_oid, document_name, document,"
        " callback_url, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (session_id, who.client_id, signer_oid, name, document, callback, "awaiting_signature", now, now),
    )
    log("signing.session_created", client_id=who.client_id, session_id=session_id)
    row = store.one("SELECT * FROM signing_sessions WHERE session_id = ?", (session_id,))
    return ok(_session_public(row), status=201)


async def get_signing_session(request: web.Request) -> web.Response:
    who = await caller(request)
    row = ctx(request).store.one(
        "SELECT * FROM signing_sessions WHERE session_id = ? AND client_id = ?",
        (request.match_info["session_id"], who.client_id),
    )
    if row is None:
        raise not_found("signing session")
    return ok(_session_public(row))


def _session(request: web.Request) -> Any:
    row = ctx(request).store.one(
        "SELECT * FROM signing_sessions WHERE session_id = ?", (request.match_info["session_id"],)
    )
    if row is None:
        raise not_found("signing session")
    return row


SIGN_PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Подписание документа — Госуслуги (симулятор)</title></head>
<body><h1>Подписание электронного документа</h1>
<p>Документ: <b>{name}</b><br>SHA-256: <code>{digest}</code></p>
<p>Подписывает: {signer}</p><p>Статус: <span id="status">{status}</span></p>
<form method="post"><button type="submit" name="decision" value="sign" id="sign">Подписать</button>
<button type="submit" name="decision" value="decline" id="decline">Отказаться</button></form>
</body></html>
"""


async def sign_page(request: web.Request) -> web.Response:
    row = _session(request)
    user = TEST_USERS[row["signer_oid"]]
    page = SIGN_PAGE.format(
        name=html.escape(row["document_name"]),
        digest=hashlib.sha256(row["document"]).hexdigest(),
        signer=html.escape(f"{user['lastName']} {user['firstName']} ({user['title']})"),
        status=html.escape(row["status"]),
    )
    return web.Response(
        text=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )


async def sign(request: web.Request) -> web.Response:
    """The simulated parent's decision. Possession of the unguessable session id stands in for the parent's
    own Gosuslugi login in this simulator."""
    row = _session(request)
    if row["status"] != "awaiting_signature":
        raise SimError(409, "conflict", CONFLICT, f"session is already {row['status']}")
    decision = "sign"
    if request.content_type == "application/json":
        data = await read_json(request)
        decision = data.get("decision", "sign") if isinstance(data, dict) else "sign"
    else:
        form = await read_form(request)
        decision = str(form.get("decision", "sign"))
    if decision not in ("sign", "decline"):
        raise SimError(400, "invalid_request", BAD_BODY, "decision must be sign or decline")
    sim = ctx(request)
    now = time.time()
    if decision == "sign":
        key, cert = sim.keys.user_key(row["signer_oid"], subject_for(row["signer_oid"]))
        signer = sim.keys.signer(key.stem)
        cms = await asyncio.get_running_loop().run_in_executor(
            None, signer.sign_cms_detached, row["document"]
        )
        sim.store.execute(
            "UPDATE signing_sessions SET status = 'signed', cms = ?, signer_certificate = ?, updated_at = ?"
            " WHERE session_id = ? AND status = 'awaiting_signature'",
            (cms, cert.read_text(), now, row["session_id"]),
        )
    else:
        sim.store.execute(
            "UPDATE signing_sessions SET status = 'declined', updated_at = ? WHERE session_id = ?",
            (now, row["session_id"]),
        )
    log("signing.decided", session_id=row["session_id"], decision=decision)
    row = _session(request)
    if row["callback_url"]:
        task = asyncio.get_running_loop().create_task(_callback(request.app, row["session_id"]))
        request.app[_TASKS].add(task)
        task.add_done_callback(request.app[_TASKS].discard)
    if request.content_type == "application/json":
        return ok(_session_public(row))
    return await sign_page(request)


_TASKS: web.AppKey[set] = web.AppKey("sim_callback_tasks", set)


async def _callback(app: web.Application, session_id: str) -> None:
    from .common import CTX_KEY

    sim = app[CTX_KEY]
    row = sim.store.one("SELECT * FROM signing_sessions WHERE session_id = ?", (session_id,))
    status = "failed"
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(row["callback_url"], json=_session_public(row)) as resp,
        ):
            status = f"delivered:{resp.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        status = f"failed:{type(exc).__name__}"
    sim.store.execute(
        "UPDATE signing_sessions SET callback_status = ? WHERE session_id = ?", (status, session_id)
    )
    log("signing.callback", session_id=session_id, callback_status=status)


def setup(app: web.Application) -> None:
    app[_TASKS] = set()


def routes() -> list[web.RouteDef]:
    return [
        web.get("/services/v1/catalogue", catalogue),
        web.post("/services/v1/requests", request_document),
        web.get("/services/v1/requests/{request_id}", get_request),
        web.get("/services/v1/requests/{request_id}/document", get_document),
        web.get("/services/v1/requests/{request_id}/signature", get_document),
        web.post("/services/v1/signing-sessions", create_signing_session),
        web.get("/services/v1/signing-sessions/{session_id}", get_signing_session),
        web.get("/services/v1/signing-sessions/{session_id}/sign", sign_page),
        web.post("/services/v1/signing-sessions/{session_id}/sign", sign),
    ]
