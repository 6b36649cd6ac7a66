"""Provider services for the portal: the service catalogue (cached) and "ученик запрашивает справку".

- `GET /v1/services`: the provider's catalogue, refreshed every `services.refresh_s`; when the provider is
  unreachable the last copy is served with `"stale": true` (503 only if there never was one).
- `POST /v1/documents {"service", "oid"}`: a справка is requested at the provider with the agent's service
  token and remembered in the outbox database; `GET /v1/documents/{id}` tracks it, `.../content` returns the
  document once ready. A poller fetches ready documents with their detached CMS signature, verifies the
  signature with the ESIA core (pinned to the provider's signing certificate) and stores both. The portal is
  told by webhook (`services.webhook_url`, HMAC-signed like the portal's own requests, retried) and can poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from . import auth, logs
from .config import AgentConfig
from .records import FieldError, InputError
from .store import Outbox


class Services:
    def __init__(
        self,
        cfg: AgentConfig,
        outbox: Outbox,
        session: aiohttp.ClientSession,
        token: Callable[[], Awaitable[str]],
        secret: bytes | None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.session = session
        self.token = token
        self.secret = secret
        self.catalogue: list[dict[str, Any]] | None = None
        self.fetched_at = 0.0
        self.last_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    @property
    def base(self) -> str:
        return self.cfg.provider.base_url.rstrip("/")

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._refresh_loop()), asyncio.create_task(self._poll_loop())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # -- helpers shared by справки and signing sessions --------------------------------------------------
    async def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token()}"}

    async def _provider_post(
        self, path: str, payload: dict[str, Any], accepted: tuple[int, ...], field: str
    ) -> dict[str, Any]:
        """POST to the provider; a refusal becomes 422 (or 502 for a provider failure) naming `field`."""
        async with self.session.post(self.base + path, json=payload, headers=await self._headers()) as r:
            text = await r.text()
            if r.status not in accepted:
                raise InputError(
                    502 if r.status >= 500 else 422,
                    [FieldError(field, f"provider refused: HTTP {r.status} {text[:300]}")],
                    "provider_refused",
                )
        answer: dict[str, Any] = json.loads(text)
        return answer

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """One statement in the outbox's next group commit."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(sql, params)

        await self.outbox.write(op)

    async def _ids(self, sql: str) -> list[str]:
        return await self.outbox.read(lambda c: [r[0] for r in c.execute(sql)])

    async def _stored(self, sql: str, key: str, what: str, ready: str, field: str) -> bytes:
        """A stored blob (document, CMS) once its row has status `ready`: 404 unknown, 409 not yet."""
        row = await self.outbox.read(lambda c: c.execute(sql, (key,)).fetchone())
        if row is None:
            raise InputError(404, [FieldError(field, f"unknown {what}")], "not_found")
        if row[0] != ready:
            raise InputError(
                409, [FieldError("status", f"the {what} is {row[0]}, not {ready}")], f"not_{ready}"
            )
        return bytes(row[1])

    async def _status(
        self,
        row_of: Callable[[sqlite3.Connection, str], dict[str, Any] | None],
        key: str,
        field: str,
        unknown: str,
        done: str,
        link: tuple[str, str],
    ) -> web.Response:
        """A tracked item's row for the portal: 404 when unknown; the link to its result once `done`."""
        row = await self.outbox.read(lambda c: row_of(c, key))
        if row is None:
            raise InputError(404, [FieldError(field, unknown)], "not_found")
        if row["status"] == done:
            row[link[0]] = link[1]
        return web.json_response(row)

    async def _verify(
        self, cms: bytes, document: bytes, expected_cert: str | None, trusted_ca_file: str | None = None
    ) -> str | None:
        """Verify a detached CMS signature with the ESIA core, off the event loop: None, or why not."""
        from schoolgate.esia.errors import EsiaError
        from schoolgate.esia.verify import verify_cms_detached

        try:
            await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: verify_cms_detached(
                    cms, document, expected_cert=expected_cert, trusted_ca_file=trusted_ca_file
                ),
            )
        except EsiaError as exc:
            return f"signature does not verify: {exc}"[:500]
        return None

    # -- catalogue ------------------------------------------------------------------------------------
    async def refresh(self) -> None:
        async with self.session.get(self.base + "/services/v1/catalogue", headers=await self._headers()) as r:
            if r.status != 200:
                raise RuntimeError(f"catalogue: HTTP {r.status}")
            data = await r.json()
        self.catalogue = list(data.get("services", []))
        self.fetched_at = time.time()

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
                self.last_error = None
                delay = self.cfg.services.refresh_s
            except Exception as exc:  # keep serving the last copy; retry sooner
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                logs.warning("services.catalogue_refresh_failed", reason=self.last_error)
                delay = min(30.0, self.cfg.services.refresh_s)
            await asyncio.sleep(delay)

    async def get_catalogue(self, request: web.Request) -> web.Response:
        if self.catalogue is None:
            raise InputError(
                503, [FieldError("services", f"catalogue not fetched yet: {self.last_error}")], "unavailable"
            )
        stale = time.time() - self.fetched_at > 2 * self.cfg.services.refresh_s or self.last_error is not None
        return web.json_response({"services": self.catalogue, "fetched_at": self.fetched_at, "stale": stale})

    # -- справка ---------------------------------------------------------------------------------------
    async def create(self, request: web.Request, body: bytes) -> web.Response:
        data = _json_object(body)
        service, oid = data.get("service"), data.get("oid")
        codes = {s.get("code") for s in self.catalogue or [] if s.get("kind") == "document"}
        if not isinstance(service, str) or (codes and service not in codes):
            raise InputError(422, [FieldError("service", f"must be one of {sorted(codes)}")], "bad_service")
        if not isinstance(oid, str | int) or not str(oid).isdigit():
            raise InputError(422, [FieldError("oid", "must be the pupil's ESIA oid (digits)")], "bad_oid")
        answer = await self._provider_post(
            "/services/v1/requests", {"service": service, "oid": str(oid)}, (200, 201, 202), "service"
        )
        request_id = str(answer["request_id"])
        now = time.time()
        await self._write(
            "INSERT OR IGNORE INTO documents(request_id, service, oid, status, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            (request_id, service, str(oid), "pending", now, now),
        )
        self._wake.set()
        logs.info("services.document_requested", request_id=request_id, service=service)
        return web.json_response(
            {"request_id": request_id, "service": service, "status": "pending"}, status=202
        )

    def _row(self, c: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
        return _row_dict(
            c,
            "SELECT request_id, service, status, signature_verified, error, webhook_status, created_at,"
            " updated_at FROM documents WHERE request_id = ?",
            request_id,
        )

    async def status(self, request: web.Request) -> web.Response:
        rid = request.match_info["request_id"]
        link = ("content_url", f"/v1/documents/{rid}/content")
        return await self._status(self._row, rid, "request_id", "unknown request", "ready", link)

    async def content(self, request: web.Request) -> web.Response:
        document = await self._stored(
            "SELECT status, document FROM documents WHERE request_id = ?",
            request.match_info["request_id"],
            "document",
            "ready",
            "request_id",
        )
        return web.Response(body=document, content_type="application/xml", charset="utf-8")

    async def _poll_loop(self) -> None:
        webhooks = bool(self.cfg.services.webhook_url)
        while True:
            try:
                await self._each(
                    "SELECT request_id FROM documents WHERE status = 'pending' ORDER BY created_at LIMIT 100",
                    self._poll_one,
                )
                if webhooks:
                    await self._each(
                        "SELECT request_id FROM documents WHERE status IN ('ready', 'failed') AND"
                        " (webhook_status IS NULL OR webhook_status LIKE 'retry%') LIMIT 100",
                        self._webhook,
                    )
                await self._each(
                    "SELECT session_id FROM signing_sessions WHERE status = 'awaiting_signature'"
                    " ORDER BY created_at LIMIT 100",
                    self._poll_signing,
                )
                if webhooks:
                    await self._each(
                        "SELECT session_id FROM signing_sessions WHERE status != 'awaiting_signature' AND"
                        " (webhook_status IS NULL OR webhook_status LIKE 'retry%') LIMIT 100",
                        self._signing_webhook,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.warning("services.poll_failed", reason=f"{type(exc).__name__}: {exc}"[:300])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.cfg.services.poll_s)

    async def _each(self, sql: str, work: Callable[[str], Awaitable[None]]) -> None:
        """`work` for every id the query finds, `services.poll_concurrency` at a time. One by one, a backlog
        (thousands of справки after a busy hour) kept a new request waiting minutes: 11 a second were done."""
        ids = await self._ids(sql)
        gate = asyncio.Semaphore(self.cfg.services.poll_concurrency)

        async def one(key: str) -> None:
            async with gate:
                await work(key)

        # All finish before the next round, so no id is ever worked on twice at once.
        outcomes = await asyncio.gather(*(one(key) for key in ids), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]

    async def _poll_one(self, rid: str) -> None:
        headers = await self._headers()
        async with self.session.get(f"{self.base}/services/v1/requests/{rid}", headers=headers) as r:
            if r.status != 200:
                return
            info = await r.json()
        if info.get("status") != "ready":
            return
        async with self.session.get(self.base + info["document_url"], headers=headers) as r:
            document = await r.read()
        async with self.session.get(self.base + info["signature_url"], headers=headers) as r:
            signature = await r.read()
        # Pinned to the signing certificate the provider announces for this document.
        error = await self._verify(signature, document, info.get("signer_certificate") or None)
        verified = int(error is None)
        await self._write(
            "UPDATE documents SET status = ?, document = ?, signature = ?, signature_verified = ?, error = ?,"
            " updated_at = ? WHERE request_id = ?",
            ("ready" if verified else "failed", document, signature, verified, error, time.time(), rid),
        )
        logs.info("services.document_ready", request_id=rid, signature_verified=bool(verified))

    async def _webhook(self, rid: str) -> None:
        row = await self.outbox.read(lambda c: self._row(c, rid))
        if row is None:
            return
        body = {
            "event": "document." + row["status"],
            "request_id": rid,
            "status": row["status"],
            "content_url": f"/v1/documents/{rid}/content",
        }
        outcome = await self._post_webhook(body, row["webhook_status"])
        await self._write("UPDATE documents SET webhook_status = ? WHERE request_id = ?", (outcome, rid))

    async def _post_webhook(self, event: dict[str, Any], previous: str | None) -> str:
        """POST an event to the portal, HMAC-signed like the portal's requests. Returns the new status:
        delivered, retryN, or gave_up after 10 attempts (the portal can always poll)."""
        from urllib.parse import urlsplit

        body = json.dumps(event).encode()
        url = self.cfg.services.webhook_url
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers.update(auth.sign(self.secret, "POST", path, body))
        attempts = int(previous[5:] or 0) if previous and previous.startswith("retry") else 0
        try:
            async with self.session.post(url, data=body, headers=headers) as r:
                outcome = "delivered" if r.status < 300 else f"retry{attempts + 1}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = f"retry{attempts + 1}"
            logs.warning("services.webhook_failed", reason=str(exc)[:200])
        if outcome.startswith("retry") and attempts + 1 >= 10:
            outcome = "gave_up"
        return outcome

    # -- родитель подписывает документ ----------------------------------------------------------------------
    async def create_signing(self, request: web.Request, body: bytes) -> web.Response:
        import base64
        import binascii

        data = _json_object(body)
        try:
            document = base64.b64decode(str(data.get("document", "")), validate=True)
        except (binascii.Error, ValueError):
            raise InputError(422, [FieldError("document", "must be base64")], "bad_document") from None
        if not document:
            raise InputError(422, [FieldError("document", "empty")], "bad_document")
        name = data.get("document_name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise InputError(422, [FieldError("document_name", "1..255 characters")], "bad_document_name")
        signer_oid = data.get("signer_oid")
        if not isinstance(signer_oid, str | int) or not str(signer_oid).isdigit():
            raise InputError(
                422, [FieldError("signer_oid", "must be the parent's ESIA oid (digits)")], "bad_oid"
            )
        payload = {
            "document": base64.b64encode(document).decode(),
            "document_name": name,
            "signer_oid": str(signer_oid),
        }
        answer = await self._provider_post("/services/v1/signing-sessions", payload, (200, 201), "signer_oid")
        sid = str(answer["session_id"])
        sign_url = self.base + str(answer["sign_url"])
        now = time.time()
        await self._write(
            "INSERT OR IGNORE INTO signing_sessions(session_id, document_name, document, signer_oid,"
            " sign_url, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (sid, name, document, str(signer_oid), sign_url, "awaiting_signature", now, now),
        )
        self._wake.set()
        logs.info("services.signing_started", session_id=sid)
        return web.json_response(
            {"session_id": sid, "status": "awaiting_signature", "sign_url": sign_url}, status=201
        )

    def _session_row(self, c: sqlite3.Connection, sid: str) -> dict[str, Any] | None:
        return _row_dict(
            c,
            "SELECT session_id, document_name, sign_url, status, signature_verified, error,"
            " webhook_status, created_at, updated_at FROM signing_sessions WHERE session_id = ?",
            sid,
        )

    async def signing_status(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        link = ("signature_url", f"/v1/signing-sessions/{sid}/signature")
        return await self._status(
            self._session_row, sid, "session_id", "unknown signing session", "signed", link
        )

    async def signing_signature(self, request: web.Request) -> web.Response:
        cms = await self._stored(
            "SELECT status, cms FROM signing_sessions WHERE session_id = ?",
            request.match_info["session_id"],
            "signing session",
            "signed",
            "session_id",
        )
        return web.Response(body=cms, content_type="application/pkcs7-signature")

    async def _poll_signing(self, sid: str) -> None:
        import base64

        async with self.session.get(
            f"{self.base}/services/v1/signing-sessions/{sid}", headers=await self._headers()
        ) as r:
            if r.status != 200:
                return
            info = await r.json()
        status = info.get("status")
        if status == "awaiting_signature":
            return
        now = time.time()
        if status != "signed":
            await self._write(
                "UPDATE signing_sessions SET status = ?, updated_at = ? WHERE session_id = ?",
                (str(status), now, sid),
            )
            logs.info("services.signing_finished", session_id=sid, status=str(status))
            return
        cms = base64.b64decode(info["cms"])
        cert = str(info.get("signer_certificate") or "")
        document = await self.outbox.read(
            lambda c: bytes(
                c.execute("SELECT document FROM signing_sessions WHERE session_id = ?", (sid,)).fetchone()[0]
            )
        )
        # Our own copy of the document: what the parent signed must be exactly what the portal sent.
        error = await self._verify(cms, document, cert or None, self.cfg.services.signature_trust_ca_file)
        verified = int(error is None)
        final = "signed" if verified else "failed"
        await self._write(
            "UPDATE signing_sessions SET status = ?, cms = ?, signer_certificate = ?, signature_verified = ?,"
            " error = ?, updated_at = ? WHERE session_id = ?",
            (final, cms, cert, verified, error, now, sid),
        )
        logs.info(
            "services.signing_finished", session_id=sid, status=final, signature_verified=bool(verified)
        )

    async def _signing_webhook(self, sid: str) -> None:
        row = await self.outbox.read(lambda c: self._session_row(c, sid))
        if row is None:
            return
        body = {
            "event": "signature." + row["status"],
            "session_id": sid,
            "status": row["status"],
            "signature_verified": row["signature_verified"],
        }
        outcome = await self._post_webhook(body, row["webhook_status"])
        await self._write(
            "UPDATE signing_sessions SET webhook_status = ? WHERE session_id = ?", (outcome, sid)
        )

    def routes(
        self,
        authenticate: Callable[[web.Request, bytes], None],
        read_body: Callable[[web.Request], Awaitable[bytes]],
    ) -> list[web.RouteDef]:
        def get(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Handler:
            async def route(request: web.Request) -> web.Response:
                authenticate(request, b"")
                return await handler(request)

            return route

        def post(handler: Callable[[web.Request, bytes], Awaitable[web.Response]]) -> Handler:
            async def route(request: web.Request) -> web.Response:
                body = await read_body(request)
                authenticate(request, body)
                return await handler(request, body)

            return route

        return [
            web.get("/v1/services", get(self.get_catalogue)),
            web.post("/v1/documents", post(self.create)),
            web.get("/v1/documents/{request_id}", get(self.status)),
            web.get("/v1/documents/{request_id}/content", get(self.content)),
            web.post("/v1/signing-sessions", post(self.create_signing)),
            web.get("/v1/signing-sessions/{session_id}", get(self.signing_status)),
            web.get("/v1/signing-sessions/{session_id}/signature", get(self.signing_signature)),
        ]


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise InputError(400, [FieldError("body", "not valid JSON")], "bad_json") from None
    if not isinstance(data, dict):
        raise InputError(400, [FieldError("body", "must be a JSON object")], "bad_shape")
    return data


def _row_dict(c: sqlite3.Connection, sql: str, key: str) -> dict[str, Any] | None:
    """One row as {column: value}; signature_verified as a bool (or None while unknown)."""
    cur = c.execute(sql, (key,))
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip([d[0] for d in cur.description], row, strict=True))
    if out.get("signature_verified") is not None:
        out["signature_verified"] = bool(out["signature_verified"])
    return out
