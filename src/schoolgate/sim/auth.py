"""Who is calling: a provider access token (from the cabinet) or an ESIA access token (JWT) we issued."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..esia.errors import EsiaError
from .cabinet import PROVIDER_TOKEN_PREFIX
from .common import TOKEN_INVALID, SimError, bearer, ctx
from .store import sha256_hex

_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Caller:
    client_id: str
    service_id: str
    kind: str  # "provider_token" | "esia_token"
    claims: dict[str, Any]


def _unauthorized(detail: str) -> SimError:
    return SimError.esia(
        401,
        TOKEN_INVALID,
        detail,
        error="invalid_token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _service_by_name(request: web.Request, client_id: str) -> Any:
    row = ctx(request).store.one("SELECT service_id FROM services WHERE name = ?", (client_id,))
    if row is None:
        raise _unauthorized(f"client {client_id!r} is not a registered service (deleted?)")
    return row


async def caller(request: web.Request) -> Caller:
    """Authenticate the request's bearer token. Verified tokens are cached until they expire, so a
    50,000-record/s intake does not pay a GOST signature check per batch."""
    token = bearer(request)
    sim = ctx(request)
    now = time.time()
    if sim.faults.config.expire_tokens:
        raise _unauthorized("token expired (fault injection: expire_tokens)")
    cached = sim.token_cache.get(token)
    if cached is not None and cached[0] > now:
        claims = cached[1]
        return Caller(claims["client_id"], claims["_service_id"], claims["_kind"], claims)
    if token.startswith(PROVIDER_TOKEN_PREFIX):
        row = sim.store.one(
            "SELECT t.*, s.name FROM provider_tokens t JOIN services s ON s.service_id = t.service_id"
            " WHERE t.token_hash = ?",
            (sha256_hex(token),),
        )
        if row is None:
            raise _unauthorized("unknown provider access token")
        if row["revoked_at"]:
            raise _unauthorized("provider access token revoked")
        if row["expires_at"] <= now:
            raise _unauthorized("provider access token expired")
        claims = {"client_id": row["name"], "_service_id": row["service_id"], "_kind": "provider_token"}
        expires = row["expires_at"]
    else:
        if sim.keys is None:
            raise _unauthorized("ESIA keys not loaded")
        try:
            # GOST verification runs openssl: keep it off the event loop.
            loop = asyncio.get_running_loop()
            claims = dict(await loop.run_in_executor(None, sim.keys.verify_access_token, token))
        except EsiaError as exc:
            raise _unauthorized(str(exc)) from exc
        client_id = str(claims.get("client_id", ""))
        service = _service_by_name(request, client_id)
        claims.update(_service_id=service["service_id"], _kind="esia_token")
        expires = float(claims.get("exp", now))
    if len(sim.token_cache) >= _CACHE_MAX:
        sim.token_cache.clear()
    sim.token_cache[token] = (expires, claims)
    return Caller(claims["client_id"], claims["_service_id"], claims["_kind"], claims)
