"""The agent's credentials: the ESIA access token and the signer behind it, renewed with zero downtime.

Token: refreshed in the background ahead of expiry, one refresh at a time (single flight). Until the new token
is in hand every request keeps using the old one, so a refresh never fails or delays a request in flight. Only
a missing or (nearly) expired token makes callers wait, and then all of them wait for the same refresh.

Signer: loaded once (the key's bytes for file-based signers, so renaming key files on disk during a renewal
changes nothing until the agent is told). SIGHUP re-reads the configuration, builds the new signer, proves it
with a token request and only then switches; if the provider refuses it, the old signer and token stay.

A status file (no secrets: certificate hash/serial, counters, times) lets the renewal playbook see that the
agent switched, and tests count refreshes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from . import logs
from .config import AgentConfig
from .metrics import Registry

# A token with less than this left is not handed out: the request would race its expiry on the wire.
MIN_VALID_S = 5.0
STATUS_NAME = "credentials.json"


@dataclass
class Token:
    value: str
    expires_at: float  # unix time (local clock, conservative)
    refresh_at: float  # unix time the background refresh starts


def refresh_time(issued_at: float, lifetime_s: float, margin_s: float) -> float:
    """`margin_s` before expiry, but never earlier than half the lifetime (short lab tokens, big margins)."""
    expires = issued_at + lifetime_s
    return max(expires - margin_s, issued_at + lifetime_s / 2)


def retry_delay(seconds_left: float) -> float:
    """After a failed refresh: retry soon enough to get several tries before expiry, never hammer."""
    return min(30.0, max(1.0, seconds_left / 5))


class _Loaded:
    """A signer plus what identifies it (never the key)."""

    def __init__(self, signer: Any, config: dict[str, Any]) -> None:
        from schoolgate.esia.certhash import certificate_info, client_certificate_hash

        self.signer = signer
        self.config = config
        info = certificate_info(signer.certificate_der)
        self.certificate_hash = client_certificate_hash(signer.certificate_der)
        self.serial = str(info.get("serial", ""))
        self.not_after = str(info.get("not_after", ""))
        self.loaded_at = time.time()

    def public(self) -> dict[str, Any]:
        return {
            "certificate_hash": self.certificate_hash,
            "serial": self.serial,
            "not_after": self.not_after,
            "cert": str(self.config.get("cert", "")),
            "loaded_at": self.loaded_at,
        }


def load_signer(config: dict[str, Any]) -> _Loaded:
    """Build the signer with the key held in memory where the signer type allows it."""
    from schoolgate.esia.signing import make_signer

    cfg = dict(config)
    key = cfg.get("key")
    if cfg.get("type") in ("openssl-gost", "cryptography") and isinstance(key, str) and key:
        with open(key, "rb") as fh:
            cfg["key"] = fh.read()
    return _Loaded(make_signer(cfg), dict(config))


class AccessTokens:
    """Drop-in for the delivery's token source: `get()`, `invalidate()`, `seconds_left()`."""

    def __init__(
        self,
        cfg: AgentConfig,
        session_factory: Callable[[], aiohttp.ClientSession],
        registry: Registry | None = None,
    ) -> None:
        self.cfg = cfg
        self._session_factory = session_factory
        self._token: Token | None = None
        self._inflight: asyncio.Task[Token] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_attempt = 0.0
        self._signer: _Loaded | None = None
        self._static_mtime: float | None = None
        self.refreshes = 0
        self.failures = 0
        self.reloads: dict[str, int] = {"ok": 0, "failed": 0}
        self.last_error: str | None = None
        self.last_refresh_at: float | None = None
        self.last_reload: dict[str, Any] = {}
        self._reload_task: asyncio.Task[bool] | None = None
        self._last_auto_reload = -1e9
        state_dir = Path(cfg.outbox.path).parent
        self.status_path = state_dir / STATUS_NAME
        self.m_refresh = self.m_reload = None
        if registry is not None:
            self.m_refresh = registry.counter(
                "schoolgate_agent_token_refreshes_total",
                "ESIA access token refreshes, by outcome.",
                ["outcome"],
            )
            self.m_reload = registry.counter(
                "schoolgate_agent_signer_reloads_total",
                "Signer reloads (SIGHUP after a certificate renewal), by outcome.",
                ["outcome"],
            )

    # -- the delivery's interface --------------------------------------------------------------------
    def seconds_left(self) -> float:
        """0 without a token; -1 for the cabinet's provider token (its expiry is in the token's .json
        metadata, which the monitoring expiry collector reads)."""
        if self._token is None:
            return 0.0
        if self._token.expires_at == float("inf"):
            return -1.0
        return max(0.0, self._token.expires_at - time.time())

    def invalidate(self, value: str | None = None) -> None:
        """The provider said 401: forget this token (not a newer one fetched meanwhile)."""
        tok = self._token
        if tok is not None and (value is None or tok.value == value):
            self._token = None

    async def get(self) -> str:
        if self.cfg.provider.token_file:
            return self._static_token()
        now = time.time()
        tok = self._token
        if tok is not None and tok.expires_at - now > MIN_VALID_S:
            if now >= tok.refresh_at and now >= self._next_attempt:
                self._start_refresh("due")  # background; this request goes with the old token
            return tok.value
        task = self._start_refresh("missing" if tok is None else "expired")
        # shield: a caller giving up (timeout, cancel) must not cancel the refresh the others wait for
        return (await asyncio.shield(task)).value

    # -- refresh -----------------------------------------------------------------------------------------
    def _start_refresh(self, reason: str) -> asyncio.Task[Token]:
        if self._inflight is None or self._inflight.done():
            task = asyncio.get_running_loop().create_task(self._refresh(reason), name="token-refresh")
            task.add_done_callback(_consume)
            self._inflight = task
        return self._inflight

    async def _refresh(self, reason: str, signer: _Loaded | None = None) -> Token:
        try:
            if signer is None:
                signer = await self._current_signer()
            tok = await self._fetch(signer)
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            left = self.seconds_left()
            self._next_attempt = time.time() + retry_delay(left)
            if self.m_refresh is not None:
                self.m_refresh.inc(1, "failed")
            logs.warning(
                "token.refresh_failed",
                reason=reason,
                error=self.last_error[:300],
                old_token_seconds_left=int(left),
                retry_in_s=round(self._next_attempt - time.time(), 1),
            )
            self._schedule(self._next_attempt)
            self._write_status()
            if "refused" in str(exc) and self._disk_certificate_changed():
                # e.g. site.yml installed a new certificate (and registered it) without telling the agent
                self.request_reload("certificate on disk differs from the one in use", automatic=True)
            raise
        self._token = tok
        self._next_attempt = 0.0
        self.refreshes += 1
        self.last_refresh_at = time.time()
        self.last_error = None
        if self.m_refresh is not None:
            self.m_refresh.inc(1, "ok")
        logs.info(
            "token.refreshed",
            reason=reason,
            expires_in_s=int(tok.expires_at - time.time()),
            refresh_in_s=int(tok.refresh_at - time.time()),
            refreshes=self.refreshes,
        )
        self._schedule(tok.refresh_at)
        self._write_status()
        return tok

    def _schedule(self, when: float) -> None:
        """Refresh proactively even when idle, so the first request after a quiet hour never waits."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time())
        self._timer = loop.call_later(delay, self._scheduled)

    def _scheduled(self) -> None:
        self._timer = None
        tok = self._token
        if tok is None or time.time() >= tok.refresh_at:
            self._start_refresh("scheduled")

    def current_signer(self) -> Any:
        """The signer in use (sync; also the ESIA login's, so a SIGHUP renewal switches both)."""
        if self._signer is None:
            self._signer = load_signer(dict(self.cfg.esia.signer))
        return self._signer.signer

    async def _current_signer(self) -> _Loaded:
        if self._signer is None:
            config = dict(self.cfg.esia.signer)
            self._signer = await asyncio.get_running_loop().run_in_executor(None, load_signer, config)
            logs.info(
                "signer.loaded", certificate_hash=self._signer.certificate_hash, serial=self._signer.serial
            )
        return self._signer

    def _token_form(self, loaded: _Loaded) -> dict[str, str]:
        from schoolgate.esia import secret

        esia = self.cfg.esia
        timestamp, state = secret.esia_timestamp(), secret.new_state()
        # v3 /te with grant_type=client_credentials signs client_id+scope+timestamp+state+redirect_uri.
        client_secret = secret.client_secret_v3(
            loaded.signer,
            client_id=esia.client_id,
            scope=esia.scope,
            timestamp=timestamp,
            state=state,
            redirect_uri=esia.redirect_uri,
        )
        return {
            "client_id": esia.client_id,
            "grant_type": "client_credentials",
            "scope": esia.scope,
            "state": state,
            "timestamp": timestamp,
            "token_type": "Bearer",
            "redirect_uri": esia.redirect_uri,
            "client_secret": client_secret,
            "client_certificate_hash": loaded.certificate_hash,
        }

    async def _fetch(self, loaded: _Loaded) -> Token:
        from schoolgate.esia import tokens as esia_tokens  # the one ESIA implementation

        from .delivery import DeliveryError, _esia_reason, explain_tls

        esia = self.cfg.esia
        # Signing may shell out to openssl/the site's signer command: keep it off the event loop.
        form = await asyncio.get_running_loop().run_in_executor(None, self._token_form, loaded)
        url = esia.base_url.rstrip("/") + "/aas/oauth2/v3/te"
        sent_at = time.time()
        try:
            async with self._session_factory().post(url, data=form) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise DeliveryError(
                        f"ESIA token request refused: HTTP {resp.status} {_esia_reason(text)}"
                    )
                data = json.loads(text)
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"ESIA token request failed: {explain_tls(exc)}") from exc
        access = data.get("access_token")
        if not isinstance(access, str):
            raise DeliveryError("ESIA token response has no access_token")
        lifetime = float(data.get("expires_in", 3600))
        expires_at = sent_at + lifetime  # measured from before the request: never later than the real expiry
        if esia.verify_certificates:
            certs = [Path(p).read_bytes() for p in esia.verify_certificates]
            claims = esia_tokens.verify_token(access, certs, issuer=None, client_id=esia.client_id)
            if "exp" in claims and "iat" in claims:
                lifetime = min(lifetime, float(claims["exp"]) - float(claims["iat"]))
                expires_at = min(expires_at, sent_at + lifetime)
        return Token(access, expires_at, refresh_time(sent_at, lifetime, esia.refresh_margin_s))

    # -- provider token file (the cabinet's token instead of ESIA client_credentials) --------------------
    def _static_token(self) -> str:
        from .auth import load_secret

        path = self.cfg.provider.token_file or ""
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = None
        tok = self._token
        # Re-read when the file was replaced (renew.yml writes the new token atomically) or after a 401.
        if tok is None or mtime != self._static_mtime:
            value = load_secret(path, key="provider.token_file", min_bytes=16)
            self._token = tok = Token(value.decode(), float("inf"), float("inf"))
            self._static_mtime = mtime
        return tok.value

    # -- signer reload (SIGHUP) --------------------------------------------------------------------------
    def _disk_certificate_changed(self) -> bool:
        from schoolgate.esia.der import certificate_der

        path = self.cfg.esia.signer.get("cert")
        if self._signer is None or not path:
            return False
        try:
            return certificate_der(Path(str(path)).read_bytes()) != self._signer.signer.certificate_der
        except (OSError, ValueError):
            return False

    def request_reload(self, why: str, *, automatic: bool = False) -> asyncio.Task[bool] | None:
        """One reload at a time; automatic ones (refused refresh + new file on disk) at most every 30 s."""
        if self._reload_task is not None and not self._reload_task.done():
            logs.info("signer.reload_already_running", why=why)
            return self._reload_task
        now = time.monotonic()
        if automatic and now - self._last_auto_reload < 30:
            return None
        if automatic:
            self._last_auto_reload = now
        logs.info("signer.reload_requested", why=why)
        self._reload_task = asyncio.get_running_loop().create_task(self.reload_signer(), name="signer-reload")
        self._reload_task.add_done_callback(_consume)
        return self._reload_task

    async def reload_signer(self) -> bool:
        """Re-read the config's signer, prove it with a token request, then switch. False: old one kept."""
        from .config import load

        loop = asyncio.get_running_loop()
        started = time.time()
        old = self._signer
        try:
            cfg = await loop.run_in_executor(None, load, self.cfg.source)
            new = await loop.run_in_executor(None, load_signer, dict(cfg.esia.signer))
            if self.cfg.provider.token_file:
                # No ESIA token to prove it with: the provider token is independent of the signer.
                self._signer = new
            else:
                # Not through the single-flight slot: a failure here must not touch the current token.
                if self._inflight is not None and not self._inflight.done():
                    with contextlib.suppress(Exception):  # its failure is its own, not this reload's
                        await asyncio.shield(self._inflight)
                tok = await self._fetch(new)
                self._signer, self._token = new, tok
                self.last_error = None
                self.refreshes += 1
                self.last_refresh_at = time.time()
                if self.m_refresh is not None:
                    self.m_refresh.inc(1, "ok")
                self._schedule(tok.refresh_at)
            self.cfg.esia.signer = dict(cfg.esia.signer)
        except Exception as exc:
            self.reloads["failed"] += 1
            if self.m_reload is not None:
                self.m_reload.inc(1, "failed")
            self.last_reload = {
                "at": started,
                "outcome": "failed",
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "kept_certificate_hash": old.certificate_hash if old else None,
            }
            logs.error(
                "signer.reload_failed",
                error=str(exc)[:300],
                kept_certificate_hash=old.certificate_hash if old else None,
            )
            self._write_status()
            return False
        self.reloads["ok"] += 1
        if self.m_reload is not None:
            self.m_reload.inc(1, "ok")
        self.last_reload = {"at": started, "outcome": "ok", "certificate_hash": new.certificate_hash}
        logs.info(
            "signer.reloaded",
            certificate_hash=new.certificate_hash,
            serial=new.serial,
            previous_certificate_hash=old.certificate_hash if old else None,
        )
        self._write_status()
        return True

    # -- status ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        tok = self._token
        return {
            "signer": self._signer.public() if self._signer else None,
            "token": {
                "source": "provider.token_file" if self.cfg.provider.token_file else "esia",
                "seconds_left": round(self.seconds_left(), 1) if tok else None,
                "refreshes": self.refreshes,
                "failures": self.failures,
                "last_refresh_at": self.last_refresh_at,
                "last_error": self.last_error,
            },
            "reloads": dict(self.reloads),
            "last_reload": self.last_reload,
            "pid": os.getpid(),
            "written_at": time.time(),
        }

    def _write_status(self) -> None:
        try:
            tmp = self.status_path.with_name(f".{STATUS_NAME}.tmp")
            tmp.write_text(json.dumps(self.status(), indent=1, sort_keys=True))
            os.replace(tmp, self.status_path)
        except OSError as exc:  # the status file is a convenience; never let it stop delivery
            logs.warning("credentials.status_unwritable", path=str(self.status_path), error=str(exc)[:200])


def _consume(task: asyncio.Task[Any]) -> None:
    # Background refresh failures are logged and counted in _refresh; retrieving them avoids asyncio's
    # "exception was never retrieved" noise.
    if not task.cancelled():
        task.exception()


def install_reload_handler(loop: asyncio.AbstractEventLoop, tokens: AccessTokens | None) -> None:
    """SIGHUP → reload the signer (after a certificate renewal); requests keep flowing meanwhile."""
    if tokens is None:
        # No delivery, no signer in use; still catch SIGHUP, whose default action would stop the agent
        # (and systemd counts SIGHUP as a clean exit: no restart).
        loop.add_signal_handler(signal.SIGHUP, lambda: logs.info("signer.reload_skipped", why="delivery off"))
        return
    loop.add_signal_handler(signal.SIGHUP, lambda: tokens.request_reload("SIGHUP"))
