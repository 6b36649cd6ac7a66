"""Provider cabinet: the service registry and the provider access tokens of each registered service."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..esia.errors import EsiaError
from .common import BAD_BODY, CONFLICT, SimError, ctx, not_found, ok, read_json, require_object
from .logs import log
from .region import dossier_for
from .store import sha256_hex

# The service name is the ESIA system mnemonic (client_id).
SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
MAX_TOKEN_LIFETIME_S = 366 * 86400
PROVIDER_TOKEN_PREFIX = "sgpt_"  # noqa: S105 - a prefix, not a secret


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _certificate(data: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Parse the uploaded signing certificate with the ESIA core: (pem, client_certificate_hash, info)."""
    from ..esia import certhash

    pem = data.get("certificate")
    if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem or len(pem) > 64 * 1024:
        raise SimError(400, "invalid_request", BAD_BODY, "certificate must be a PEM X.509 certificate")
    try:
        info = certhash.certificate_info(pem.encode())
        digest = certhash.client_certificate_hash(pem.encode())
    except EsiaError as exc:
        raise SimError(400, "invalid_request", exc.code, f"certificate: {exc}") from exc
    except ValueError as exc:
        raise SimError(400, "invalid_request", BAD_BODY, f"certificate: {exc}") from exc
    return pem, digest, info


def _api_url(data: dict[str, Any]) -> str:
    url = data.get("api_url")
    if not isinstance(url, str) or len(url) > 2048:
        raise SimError(400, "invalid_request", BAD_BODY, "api_url must be an http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SimError(400, "invalid_request", BAD_BODY, "api_url must be an http(s) URL with a host")
    return url


def _public(row: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {
        "service_id": row["service_id"],
        "name": row["name"],
        "client_id": row["name"],
        "api_url": row["api_url"],
        "certificate_hash": row["certificate_hash"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if info is not None:
        out["certificate"] = {k: v for k, v in info.items() if isinstance(v, str | int | float | bool | None)}
    return out


def _own_service(request: web.Request) -> dict[str, Any]:
    dossier = dossier_for(request)
    row = ctx(request).store.one(
        "SELECT * FROM services WHERE service_id = ? AND dossier_id = ?",
        (request.match_info["service_id"], dossier["dossier_id"]),
    )
    if row is None:
        raise not_found("service")
    return dict(row)


async def list_services(request: web.Request) -> web.Response:
    dossier = dossier_for(request)
    rows = ctx(request).store.all(
        "SELECT * FROM services WHERE dossier_id = ? ORDER BY created_at", (dossier["dossier_id"],)
    )
    return ok({"services": [_public(dict(r)) for r in rows]})


async def register_service(request: web.Request) -> web.Response:
    dossier = dossier_for(request)
    data = require_object(await read_json(request), "name", "api_url", "certificate")
    name = data["name"]
    if not isinstance(name, str) or not SERVICE_NAME_RE.match(name):
        raise SimError(400, "invalid_request", BAD_BODY, "name must match ^[A-Za-z0-9_.-]{2,64}$")
    api_url = _api_url(data)
    pem, digest, info = _certificate(data)
    store = ctx(request).store
    if store.one("SELECT 1 FROM services WHERE name = ?", (name,)):
        raise SimError(409, "conflict", CONFLICT, f"a service named {name!r} is already registered")
    now = time.time()
    row = {
        "service_id": str(uuid.uuid4()),
        "dossier_id": dossier["dossier_id"],
        "name": name,
        "api_url": api_url,
        "certificate_pem": pem,
        "certificate_hash": digest,
        "created_at": now,
        "updated_at": now,
    }
    store.execute(
        "INSERT INTO services(service_id, dossier_id, name, api_url, certificate_pem, certificate_hash,"
        " created_at, updated_at) VALUES (:service_id, :dossier_id, :name, :api_url, :certificate_pem,"
        " :certificate_hash, :created_at, :updated_at)",
        row,  # type: ignore[arg-type]
    )
    log("service.registered", service_id=row["service_id"], client_id=name, certificate_hash=digest)
    return ok(_public(row, info), status=201)


async def get_service(request: web.Request) -> web.Response:
    return ok(_public(_own_service(request)))


async def update_service(request: web.Request) -> web.Response:
    row = _own_service(request)
    data = require_object(await read_json(request), "api_url")
    row["api_url"] = _api_url(data)
    row["updated_at"] = time.time()
    ctx(request).store.execute(
        "UPDATE services SET api_url = ?, updated_at = ? WHERE service_id = ?",
        (row["api_url"], row["updated_at"], row["service_id"]),
    )
    return ok(_public(row))


async def update_certificate(request: web.Request) -> web.Response:
    row = _own_service(request)
    data = require_object(await read_json(request), "certificate")
    pem, digest, info = _certificate(data)
    row.update(certificate_pem=pem, certificate_hash=digest, updated_at=time.time())
    ctx(request).store.execute(
        "UPDATE services SET certificate_pem = ?, certificate_hash = ?, updated_at = ? WHERE service_id = ?",
        (pem, digest, row["updated_at"], row["service_id"]),
    )
    log("service.certificate_updated", service_id=row["service_id"], certificate_hash=digest)
    return ok(_public(row, info))


async def delete_service(request: web.Request) -> web.Response:
    row = _own_service(request)
    store = ctx(request).store
    with store.tx() as db:
        db.execute("DELETE FROM provider_tokens WHERE service_id = ?", (row["service_id"],))
        db.execute("DELETE FROM services WHERE service_id = ?", (row["service_id"],))
    ctx(request).token_cache.clear()
    log("service.deleted", service_id=row["service_id"], client_id=row["name"])
    return web.Response(status=204)


# -- provider access tokens --------------------------------------------------------------------------
def _lifetime(request: web.Request, data: Any) -> int:
    default = ctx(request).config.provider_token_lifetime_s
    if data is None:
        return default
    if not isinstance(data, dict):
        raise SimError(400, "invalid_request", BAD_BODY, "body must be a JSON object")
    value = data.get("lifetime_s", default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKEN_LIFETIME_S:
        raise SimError(
            400, "invalid_request", BAD_BODY, f"lifetime_s must be an integer 1..{MAX_TOKEN_LIFETIME_S}"
        )
    return value


async def _optional_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    return await read_json(request)


def _new_token(request: web.Request, service_id: str, lifetime: int) -> dict[str, Any]:
    token = PROVIDER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    token_id = str(uuid.uuid4())
    ctx(request).store.execute(
        "INSERT INTO provider_tokens(token_id, service_id, token_hash, expires_at, created_at)"
        " VALUES (?,?,?,?,?)",
        (token_id, service_id, sha256_hex(token), now + lifetime, now),
    )
    return {
        "token_id": token_id,
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "expires_at": _iso(now + lifetime),
    }


def _token_public(row: Any) -> dict[str, Any]:
    now = time.time()
    status = "revoked" if row["revoked_at"] else ("expired" if row["expires_at"] <= now else "active")
    return {
        "token_id": row["token_id"],
        "status": status,
        "expires_at": _iso(row["expires_at"]),
        "created_at": _iso(row["created_at"]),
    }


async def issue_token(request: web.Request) -> web.Response:
    service = _own_service(request)
    lifetime = _lifetime(request, await _optional_json(request))
    token = _new_token(request, service["service_id"], lifetime)
    log(
        "provider_token.issued",
        service_id=service["service_id"],
        token_id=token["token_id"],
        lifetime_s=lifetime,
    )
    return ok(token, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    service = _own_service(request)
    rows = ctx(request).store.all(
        "SELECT * FROM provider_tokens WHERE service_id = ? ORDER BY created_at", (service["service_id"],)
    )
    return ok({"tokens": [_token_public(r) for r in rows]})


def _own_token(request: web.Request, service: dict[str, Any]) -> Any:
    row = ctx(request).store.one(
        "SELECT * FROM provider_tokens WHERE token_id = ? AND service_id = ?",
        (request.match_info["token_id"], service["service_id"]),
    )
    if row is None:
        raise not_found("token")
    return row


async def rotate_token(request: web.Request) -> web.Response:
    """Issue a new token and revoke the old one in one step (what a school does before expiry)."""
    service = _own_service(request)
    old = _own_token(request, service)
    if old["revoked_at"]:
        raise SimError(409, "conflict", CONFLICT, "token already revoked; issue a new one instead")
    data = await _optional_json(request)
    lifetime = (
        _lifetime(request, data) if data is not None else int(max(1, old["expires_at"] - old["created_at"]))
    )
    token = _new_token(request, service["service_id"], lifetime)
    ctx(request).store.execute(
        "UPDATE provider_tokens SET revoked_at = ? WHERE token_id = ?", (time.time(), old["token_id"])
    )
    ctx(request).token_cache.clear()
    log(
        "provider_token.rotated", service_id=service["service_id"], old=old["token_id"], new=token["token_id"]
    )
    return ok({**token, "replaces": old["token_id"]}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    service = _own_service(request)
    row = _own_token(request, service)
    if not row["revoked_at"]:
        ctx(request).store.execute(
            "UPDATE provider_tokens SET revoked_at = ? WHERE token_id = ?", (time.time(), row["token_id"])
        )
    ctx(request).token_cache.clear()
    log("provider_token.revoked", service_id=service["service_id"], token_id=row["token_id"])
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    base = "/cabinet/v1/services"
    return [
        web.get(base, list_services),
        web.post(base, register_service),
        web.get(base + "/{service_id}", get_service),
        web.patch(base + "/{service_id}", update_service),
        web.delete(base + "/{service_id}", delete_service),
        web.put(base + "/{service_id}/certificate", update_certificate),
        web.get(base + "/{service_id}/tokens", list_tokens),
        web.post(base + "/{service_id}/tokens", issue_token),
        web.post(base + "/{service_id}/tokens/{token_id}/rotate", rotate_token),
        web.delete(base + "/{service_id}/tokens/{token_id}", revoke_token),
    ]
