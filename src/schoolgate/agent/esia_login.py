"""ESIA login for portal users: /esia/login → ESIA → /esia/callback → a signed identity assertion.

The browser is sent to ESIA's v2 authorization endpoint with a v2 client_secret; the callback checks the
`state` it issued (single use, 10 minutes), exchanges the code at /aas/oauth2/v3/te with a v3 client_secret,
verifies the access token against the configured ESIA certificates, fetches the person (/rs/prns/{oid})
and hands the portal an HS256 assertion signed with the portal↔agent secret (5 minutes), by redirect to
`esia.portal_return_url` (`#assertion=...`) or as JSON. The protocol pieces all come from the ESIA core.
Nothing of the person is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from . import logs
from .config import AgentConfig
from .records import FieldError, InputError

ASSERTION_ISSUER = "schoolgate-agent"
_STATE_TTL_S = 600
_MAX_PENDING = 10_000


def make_assertion(secret: bytes, claims: dict[str, Any]) -> str:
    from schoolgate.esia.encoding import b64url_encode

    header = b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url_encode(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode())
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url_encode(mac)}"


def verify_assertion(secret: bytes, token: str, *, now: float | None = None) -> dict[str, Any]:
    """What the portal does with the assertion (Python reference; any HS256 JWT library works)."""
    from schoolgate.esia.encoding import b64url_decode

    try:
        header, body, sig = token.split(".")
    except ValueError:
        raise ValueError("assertion is not a JWT") from None
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, b64url_decode(sig)):
        raise ValueError("assertion signature mismatch")
    claims = json.loads(b64url_decode(body))
    if claims.get("iss") != ASSERTION_ISSUER or float(claims.get("exp", 0)) < (now or time.time()):
        raise ValueError("assertion expired or not from the agent")
    return claims


class EsiaLogin:
    def __init__(self, cfg: AgentConfig, secret: bytes | None, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.secret = secret
        self.session = session
        self.pending: dict[str, tuple[float, str]] = {}  # state → (created, return_to)
        self._signer: Any = None
        self._certs: list[bytes] | None = None

    def _unavailable(self, why: str) -> InputError:
        return InputError(503, [FieldError("esia", why)], "login_unavailable")

    def _check_ready(self) -> None:
        esia = self.cfg.esia
        missing = [
            k
            for k, v in (
                ("esia.base_url", esia.base_url),
                ("esia.client_id", esia.client_id),
                ("esia.signer", esia.signer),
                ("esia.redirect_uri", esia.redirect_uri),
                ("esia.verify_certificates", esia.verify_certificates),
            )
            if not v
        ]
        if self.secret is None:
            missing.append("auth.hmac_secret_file (signs the identity assertion)")
        if missing:
            raise self._unavailable("ESIA login is not configured: set " + ", ".join(missing))

    def signer(self) -> Any:
        if self._signer is None:
            from schoolgate.esia.signing import make_signer

            self._signer = make_signer(self.cfg.esia.signer)
        return self._signer

    def certificates(self) -> list[bytes]:
        if self._certs is None:
            certs = []
            for path in self.cfg.esia.verify_certificates:
                with open(path, "rb") as fh:
                    certs.append(fh.read())
            self._certs = certs
        return self._certs

    def _authorize_url(self, state: str) -> str:
        from schoolgate.esia import certhash, secret

        esia = self.cfg.esia
        ts = secret.esia_timestamp()
        signer = self.signer()
        params = {
            "client_id": esia.client_id,
            "scope": esia.login_scope,
            "timestamp": ts,
            "state": state,
            "redirect_uri": esia.redirect_uri,
            "response_type": "code",
            "access_type": "online",
            "client_secret": secret.client_secret_v2(
                signer,
                client_id=esia.client_id,
                scope=esia.login_scope,
                timestamp=ts,
                state=state,
                redirect_uri=esia.redirect_uri,
            ),
            "client_certificate_hash": certhash.client_certificate_hash(signer.certificate_der),
        }
        return esia.base_url.rstrip("/") + "/aas/oauth2/v2/ac?" + urlencode(params)

    def _exchange_form(self, code: str) -> dict[str, str]:
        from schoolgate.esia import certhash, secret

        esia = self.cfg.esia
        ts, state = secret.esia_timestamp(), secret.new_state()
        signer = self.signer()
        return {
            "client_id": esia.client_id,
            "grant_type": "authorization_code",
            "code": code,
            "scope": esia.login_scope,
            "timestamp": ts,
            "state": state,
            "redirect_uri": esia.redirect_uri,
            "token_type": "Bearer",
            "client_secret": secret.client_secret_v3(
                signer,
                client_id=esia.client_id,
                scope=esia.login_scope,
                timestamp=ts,
                state=state,
                redirect_uri=esia.redirect_uri,
                code=code,
            ),
            "client_certificate_hash": certhash.client_certificate_hash(signer.certificate_der),
        }

    async def login(self, request: web.Request) -> web.Response:
        self._check_ready()
        from schoolgate.esia import secret

        now = time.time()
        for st, (created, _) in list(self.pending.items()):
            if now - created > _STATE_TTL_S:
                del self.pending[st]
        if len(self.pending) >= _MAX_PENDING:
            raise InputError(429, [FieldError("state", "too many logins in progress; retry")], "busy")
        state = secret.new_state()
        return_to = request.query.get("return_to", "")
        if return_to and not return_to.startswith("/"):  # only paths on the portal: no open redirect
            raise InputError(
                400, [FieldError("return_to", "must be a path on the portal, like /cabinet")], "bad_return_to"
            )
        url = await asyncio.get_running_loop().run_in_executor(None, self._authorize_url, state)
        self.pending[state] = (now, return_to)
        logs.info("esia.login_started")
        raise web.HTTPFound(url)

    async def callback(self, request: web.Request) -> web.Response:
        self._check_ready()
        q = request.query
        state = q.get("state", "")
        pending = self.pending.pop(state, None)
        if pending is None or time.time() - pending[0] > _STATE_TTL_S:
            raise InputError(
                400, [FieldError("state", "unknown, used or expired login state; start again")], "bad_state"
            )
        if "error" in q:
            from schoolgate.esia.errors import explain

            desc = q.get("error_description", "")
            code = desc.split(":", 1)[0].strip()
            hint = explain(code) if code.startswith("ESIA-") else ""
            logs.warning("esia.login_refused", esia_error=q.get("error"), code=code)
            raise InputError(
                403, [FieldError("esia", f"{q.get('error')}: {desc}. {hint}".strip())], "esia_refused"
            )
        code = q.get("code")
        if not code:
            raise InputError(400, [FieldError("code", "missing")], "bad_callback")
        esia = self.cfg.esia
        form = await asyncio.get_running_loop().run_in_executor(None, self._exchange_form, code)
        async with self.session.post(esia.base_url.rstrip("/") + "/aas/oauth2/v3/te", data=form) as resp:
            text = await resp.text()
            if resp.status != 200:
                logs.warning("esia.code_exchange_failed", http_status=resp.status)
                raise InputError(
                    502,
                    [FieldError("esia", f"code exchange refused: HTTP {resp.status} {text[:300]}")],
                    "esia_exchange_failed",
                )
            tokens = json.loads(text)
        from schoolgate.esia.errors import EsiaError
        from schoolgate.esia.tokens import verify_token

        try:
            claims = verify_token(
                tokens["access_token"],
                self.certificates(),
                issuer=esia.issuer or None,
                client_id=esia.client_id,
            )
        except (EsiaError, KeyError) as exc:
            logs.warning("esia.token_rejected", reason=str(exc)[:300])
            raise InputError(
                502, [FieldError("access_token", f"ESIA token not accepted: {exc}")], "esia_token_invalid"
            ) from None
        oid = str(claims.get("urn:esia:sbj_id", ""))
        if not oid:
            raise InputError(
                502, [FieldError("access_token", "no urn:esia:sbj_id claim")], "esia_token_invalid"
            )
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with self.session.get(f"{esia.base_url.rstrip('/')}/rs/prns/{oid}", headers=headers) as resp:
            if resp.status != 200:
                raise InputError(
                    502, [FieldError("person", f"ESIA person data: HTTP {resp.status}")], "esia_person_failed"
                )
            person = await resp.json()
        now = int(time.time())
        assertion_claims = {
            "iss": ASSERTION_ISSUER,
            "aud": "portal",
            "sub": oid,
            "iat": now,
            "exp": now + esia.assertion_ttl_s,
            "esia_sid": claims.get("urn:esia:sid"),
            "return_to": pending[1],
            "person": {
                k: person.get(k) for k in ("firstName", "lastName", "middleName", "trusted") if k in person
            },
        }
        assert self.secret is not None
        assertion = make_assertion(self.secret, assertion_claims)
        logs.info("esia.login_completed")  # deliberately no oid or name
        if esia.portal_return_url and "application/json" not in request.headers.get("Accept", ""):
            raise web.HTTPFound(f"{esia.portal_return_url}#assertion={assertion}")
        return web.json_response({"assertion": assertion, "expires_in": esia.assertion_ttl_s})

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/esia/login", self.login), web.get("/esia/callback", self.callback)]
