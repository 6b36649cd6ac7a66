"""Simulated ESIA: /aas/oauth2/ac (v1), /aas/oauth2/v2/ac, /aas/oauth2/te (v1), /aas/oauth2/v3/te, /rs/prns.

client_secret and client_certificate_hash are verified against the service's REGISTERED certificate with the
ESIA core (schoolgate.esia.secret); tokens are JWTs issued and verified by the ESIA core
(schoolgate.esia.tokens)
with the simulator's ESIA keys. Every failure answers with an ESIA-0070xx code.
"""

from __future__ import annotations

import asyncio
import functools
import html
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from ..esia.errors import EsiaError
from .auth import caller
from .common import (
    BAD_PARAMS,
    BAD_REDIRECT,
    INVALID_GRANT,
    INVALID_SCOPE,
    MISSING_PARAMS,
    UNAUTHORIZED_CLIENT,
    UNSUPPORTED_GRANT,
    SimError,
    ctx,
    not_found,
    ok,
    read_form,
)
from .logs import log
from .store import sha256_hex
from .testusers import TEST_USERS, person

KNOWN_SCOPES = frozenset(
    [
        "openid",
        "fullname",
        "birthdate",
        "gender",
        "snils",
        "inn",
        "id_doc",
        "birthplace",
        "email",
        "mobile",
        "contacts",
        "usr_org",
        "kid_fullname",
        "kid_birthdate",
        "edu_data",
        "edu_intake",
        "edu_documents",
    ]
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


def _esia_error(code: str, detail: str = "", status: int = 400, **extra: Any) -> SimError:
    return SimError.esia(status, code, detail, **extra)


def _from_core(exc: EsiaError, status: int = 400) -> SimError:
    return SimError.esia(status, exc.code, exc.detail or "")


def _service(request: web.Request, client_id: str) -> dict[str, Any]:
    row = ctx(request).store.one("SELECT * FROM services WHERE name = ?", (client_id,))
    if row is None:
        raise _esia_error(UNAUTHORIZED_CLIENT, f"client_id {client_id!r} is not registered")
    return dict(row)


def _scopes(scope: str) -> list[str]:
    items = scope.split(" ")
    unknown = [s for s in items if s not in KNOWN_SCOPES]
    if not scope or unknown:
        raise _esia_error(INVALID_SCOPE, f"unknown scope(s): {' '.join(unknown) or '(empty)'}")
    return items


def _check_redirect(service: dict[str, Any], redirect_uri: str) -> None:
    """redirect_uri must belong to the registered service (same scheme, host and port as its api_url)."""
    want, got = urlsplit(service["api_url"]), urlsplit(redirect_uri)
    if (got.scheme, got.hostname, got.port) != (want.scheme, want.hostname, want.port):
        raise _esia_error(BAD_REDIRECT, "redirect_uri is not on the registered service's host")


def _params(source: Any, names: tuple[str, ...]) -> dict[str, str]:
    missing = [n for n in names if not source.get(n)]
    if missing:
        raise _esia_error(MISSING_PARAMS, "missing: " + ", ".join(missing), missing=missing)
    return {n: str(source.get(n)) for n in names}


async def _verify_secret(
    version: str, service: dict[str, Any], p: dict[str, str], **extra: str | None
) -> None:
    """Verify in a worker thread: GOST verification runs openssl and must not stall the event loop."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, functools.partial(_verify_secret_sync, version, service, p, **extra))


def _verify_secret_sync(
    version: str, service: dict[str, Any], p: dict[str, str], **extra: str | None
) -> None:
    from ..esia import secret

    try:
        check = secret.verify_client_secret(
            version,
            p["client_secret"],
            certificate=service["certificate_pem"].encode(),
            client_id=p["client_id"],
            scope=p["scope"],
            timestamp=p["timestamp"],
            state=p["state"],
            redirect_uri=p.get("redirect_uri"),
            client_certificate_hash=p.get("client_certificate_hash"),
            **extra,
        )
        check.raise_for_problems()
    except EsiaError as exc:
        raise _from_core(exc) from exc


# -- authorization (/ac) -------------------------------------------------------------------------------
LOGIN_PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Вход — ЕСИА (симулятор schoolgate)</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}} button{{display:block;margin:.5em 0;
padding:.6em 1em;font-size:1em;width:100%}}</style></head>
<body><h1>Госуслуги — тестовый вход</h1>
<p>Система <b>{client}</b> запрашивает доступ: <code>{scope}</code>.</p>
<p>Выберите тестового пользователя:</p>
<form method="post" action="{action}">
<input type="hidden" name="login_id" value="{login_id}">
{buttons}
<button type="submit" name="decision" value="deny" id="deny">Отказать в доступе</button>
</form>
<p><small>Симулятор ЕСИА для тестового стенда. Реальные персональные данные не используются.</small></p>
</body></html>
"""


async def _authorize(request: web.Request, version: str) -> web.Response:
    q = request.rel_url.query
    names = ("client_id", "client_secret", "redirect_uri", "scope", "response_type", "state", "timestamp")
    if version == "v2":
        names += ("client_certificate_hash",)
    p = _params(q, names)
    p["access_type"] = q.get("access_type", "online")
    if p["response_type"] != "code":
        raise _esia_error(BAD_PARAMS, "response_type must be 'code'")
    if p["access_type"] not in ("online", "offline"):
        raise _esia_error(BAD_PARAMS, "access_type must be online or offline")
    service = _service(request, p["client_id"])
    _check_redirect(service, p["redirect_uri"])
    _scopes(p["scope"])
    await _verify_secret(version, service, p)
    login_id = str(uuid.uuid4())
    ctx(request).store.execute(
        "INSERT INTO pending_logins(login_id, client_id, scope, state, redirect_uri, access_type, expires_at)"
        " VALUES (?,?,?,?,?,?,?)",
        (
            login_id,
            p["client_id"],
            p["scope"],
            p["state"],
            p["redirect_uri"],
            p["access_type"],
            time.time() + 600,
        ),
    )
    buttons = "\n".join(
        f'<button type="submit" name="oid" value="{oid}" id="user-{u["role"]}">'
        f"{html.escape(u['title'])}: {html.escape(u['lastName'])} {html.escape(u['firstName'])}</button>"
        for oid, u in TEST_USERS.items()
    )
    page = LOGIN_PAGE.format(
        client=html.escape(p["client_id"]),
        scope=html.escape(p["scope"]),
        action=html.escape(f"/aas/oauth2/{version}/ac/login" if version == "v2" else "/aas/oauth2/ac/login"),
        login_id=login_id,
        buttons=buttons,
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _redirect(uri: str, params: dict[str, str]) -> web.Response:
    sep = "&" if urlsplit(uri).query else "?"
    return web.Response(status=302, headers={"Location": uri + sep + urlencode(params)})


async def _login(request: web.Request) -> web.Response:
    form = await read_form(request)
    login_id = str(form.get("login_id", ""))
    sim = ctx(request)
    row = sim.store.one("SELECT * FROM pending_logins WHERE login_id = ?", (login_id,))
    if row is None or row["expires_at"] < time.time():
        raise _esia_error(INVALID_GRANT, "login session unknown or expired; start again from the portal")
    sim.store.execute("DELETE FROM pending_logins WHERE login_id = ?", (login_id,))
    if form.get("decision") == "deny":
        err = SimError.esia(400, "ESIA-007004", "the user denied access")
        return _redirect(
            row["redirect_uri"],
            {
                "error": err.error,
                "error_description": err.code + ": " + err.description,
                "state": row["state"],
            },
        )
    oid = str(form.get("oid", ""))
    if oid not in TEST_USERS:
        raise _esia_error(BAD_PARAMS, "choose one of the test users")
    code = secrets.token_urlsafe(32)
    sim.store.execute(
        "INSERT INTO auth_codes(code, client_id, oid, scope, redirect_uri, expires_at) VALUES (?,?,?,?,?,?)",
        (
            sha256_hex(code),
            row["client_id"],
            oid,
            row["scope"],
            row["redirect_uri"],
            time.time() + sim.config.auth_code_lifetime_s,
        ),
    )
    log("esia.login", client_id=row["client_id"], oid=oid)
    return _redirect(row["redirect_uri"], {"code": code, "state": row["state"]})


async def authorize_v1(request: web.Request) -> web.Response:
    return await _authorize(request, "v1")


async def authorize_v2(request: web.Request) -> web.Response:
    return await _authorize(request, "v2")


# -- tokens (/te) -----------------------------------------------------------------------------------------
async def _issue(
    request: web.Request, client_id: str, scope: str, state: str, oid: str | None
) -> dict[str, Any]:
    sim = ctx(request)
    loop = asyncio.get_running_loop()
    now = int(time.time())
    lifetime = sim.config.esia_token_lifetime_s
    issuer = sim.store.get_kv("issuer")
    sid = str(uuid.uuid4())
    claims: dict[str, Any] = {
        "nbf": now,
        "iat": now,
        "exp": now + lifetime,
        "iss": issuer,
        "client_id": client_id,
        "scope": scope,
        "urn:esia:sid": sid,
    }
    if oid is not None:
        claims["urn:esia:sbj_id"] = int(oid)
    # Signing runs openssl (GOST): in a worker thread, not on the event loop.
    access_token = await loop.run_in_executor(None, sim.keys.issue_jwt, claims)
    out: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "state": state,
    }
    if oid is not None:
        id_claims = {
            "iss": issuer,
            "sub": int(oid),
            "aud": client_id,
            "nbf": now,
            "iat": now,
            "exp": now + lifetime,
            "auth_time": now,
            "urn:esia:sid": sid,
            "urn:esia:amd": "PWD",
            "urn:esia:sbj": {
                "urn:esia:sbj:typ": "P",
                "urn:esia:sbj:oid": int(oid),
                "urn:esia:sbj:is_tru": True,
            },
        }
        out["id_token"] = await loop.run_in_executor(None, sim.keys.issue_jwt, id_claims)
        refresh = secrets.token_urlsafe(32)
        sim.store.execute(
            "INSERT INTO refresh_tokens(token_hash, client_id, oid, scope, expires_at) VALUES (?,?,?,?,?)",
            (sha256_hex(refresh), client_id, oid, scope, time.time() + sim.config.refresh_token_lifetime_s),
        )
        out["refresh_token"] = refresh
    log("esia.token_issued", client_id=client_id, oid=oid, key=sim.keys.esia_current)
    return out


async def _token(request: web.Request, version: str) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        raise _esia_error(BAD_PARAMS, "send the parameters form-encoded (application/x-www-form-urlencoded)")
    form = await read_form(request)
    grant = str(form.get("grant_type", ""))
    if not grant:
        raise _esia_error(MISSING_PARAMS, "missing: grant_type", missing=["grant_type"])
    if grant not in GRANT_TYPES:
        raise _esia_error(UNSUPPORTED_GRANT, f"grant_type {grant!r}")
    names = ("client_id", "client_secret", "scope", "state", "timestamp")
    if version == "v3":
        names += ("redirect_uri", "client_certificate_hash")
    if grant == "authorization_code":
        names += ("code",)
    elif grant == "refresh_token":
        names += ("refresh_token",)
    p = _params(form, names)
    if version == "v1" and form.get("redirect_uri"):
        p["redirect_uri"] = str(form["redirect_uri"])
    service = _service(request, p["client_id"])
    scopes = _scopes(p["scope"])
    extra: dict[str, str | None] = {}
    if version == "v3":
        extra = {"code": p.get("code"), "refresh_token": p.get("refresh_token")}
    await _verify_secret(version, service, p, **extra)
    sim = ctx(request)
    if grant == "authorization_code":
        row = sim.store.one("SELECT * FROM auth_codes WHERE code = ?", (sha256_hex(p["code"]),))
        if (
            row is None
            or row["used"]
            or row["expires_at"] < time.time()
            or row["client_id"] != p["client_id"]
        ):
            raise _esia_error(
                INVALID_GRANT, "authorization code unknown, used, expired or issued to another client"
            )
        if p.get("redirect_uri") and p["redirect_uri"] != row["redirect_uri"]:
            raise _esia_error(BAD_REDIRECT, "redirect_uri differs from the one of the authorization request")
        if not set(scopes) <= set(row["scope"].split(" ")):
            raise _esia_error(INVALID_SCOPE, "scope wider than the one the user granted")
        # Single use: mark first, so a replayed code fails even if issuing fails later.
        sim.store.execute("UPDATE auth_codes SET used = 1 WHERE code = ?", (row["code"],))
        return ok(await _issue(request, p["client_id"], p["scope"], p["state"], row["oid"]))
    if grant == "refresh_token":
        digest = sha256_hex(p["refresh_token"])
        row = sim.store.one("SELECT * FROM refresh_tokens WHERE token_hash = ?", (digest,))
        if (
            row is None
            or row["used"]
            or row["expires_at"] < time.time()
            or row["client_id"] != p["client_id"]
        ):
            raise _esia_error(
                INVALID_GRANT, "refresh token unknown, already used, expired or of another client"
            )
        sim.store.execute("UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?", (digest,))
        return ok(await _issue(request, p["client_id"], p["scope"], p["state"], row["oid"]))
    return ok(await _issue(request, p["client_id"], p["scope"], p["state"], None))


async def token_v1(request: web.Request) -> web.Response:
    return await _token(request, "v1")


async def token_v3(request: web.Request) -> web.Response:
    return await _token(request, "v3")


async def certificates(request: web.Request) -> web.Response:
    """The ESIA verification certificates in force (current first), for the clients' trust configuration."""
    pems = [p.decode() for p in reversed(ctx(request).keys.esia_certificates_pem())]
    return ok({"certificates": pems, "current": pems[0]})


# -- person data ---------------------------------------------------------------------------------------
async def prns(request: web.Request) -> web.Response:
    who = await caller(request)
    oid = request.match_info["oid"]
    if who.kind != "esia_token" or "urn:esia:sbj_id" not in who.claims:
        raise SimError.esia(
            403, "ESIA-007019", "person data needs a user's access token (authorization_code)"
        )
    if str(who.claims["urn:esia:sbj_id"]) != oid:
        raise SimError.esia(403, "ESIA-007019", "the token was issued for another person")
    if oid not in TEST_USERS:
        raise not_found("person")
    if not {"openid", "fullname"} & set(str(who.claims.get("scope", "")).split(" ")):
        raise SimError.esia(403, "ESIA-007019", "scope fullname (or openid) was not granted")
    return ok(person(oid))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/aas/oauth2/ac", authorize_v1),
        web.post("/aas/oauth2/ac/login", _login),
        web.get("/aas/oauth2/v2/ac", authorize_v2),
        web.post("/aas/oauth2/v2/ac/login", _login),
        web.post("/aas/oauth2/te", token_v1),
        web.post("/aas/oauth2/v3/te", token_v3),
        web.get("/aas/oauth2/certs", certificates),
        web.get("/rs/prns/{oid}", prns),
    ]
