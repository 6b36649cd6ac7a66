"""The agent's token refresh: background, single flight, old token until the new one is in hand; signer
switch only after the provider accepted it. A real aiohttp ESIA stand-in on 127.0.0.1 (token endpoint only)
that the tests slow down, break and count; the client_secret is really signed (RSA test certificate)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from schoolgate.agent.config import AgentConfig
from schoolgate.agent.credentials import AccessTokens, refresh_time, retry_delay
from schoolgate.agent.delivery import DeliveryError
from schoolgate.esia.certhash import client_certificate_hash


def _pair(directory: Path, name: str) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {
        "type": "cryptography",
        "key": str(directory / f"{name}.key"),
        "cert": str(directory / f"{name}.crt"),
    }


class FakeEsia:
    """Token endpoint: counts requests, answers after `delay_s`, fails with `status`, accepts only
    client_certificate_hash values in `accepted` (None = any)."""

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_s = 0.0
        self.status = 200
        self.lifetime_s = 12  # > 2 x MIN_VALID_S; refresh due at 6 s
        self.accepted: set[str] | None = None
        self.issued = 0

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            assert form["grant_type"] == "client_credentials" and form["client_secret"]
            if self.status != 200:
                return web.json_response({"error": "temporarily_unavailable"}, status=self.status)
            if self.accepted is not None and form["client_certificate_hash"] not in self.accepted:
                return web.json_response(
                    {
                        "error": "access_denied",
                        "error_description": "ESIA-007053: certificate not registered",
                    },
                    status=400,
                )
            self.issued += 1
            return web.json_response(
                {
                    "access_token": f"token-{self.issued}",
                    "expires_in": self.lifetime_s,
                    "token_type": "Bearer",
                }
            )
        finally:
            self.in_flight -= 1


def run(scenario: Callable[[AccessTokens, FakeEsia], Awaitable[None]], tmp_path: Path) -> None:
    """Start the fake ESIA on 127.0.0.1 and a token source pointed at it; run the scenario; clean up."""

    async def main() -> None:
        fake = FakeEsia()
        app = web.Application()
        app.router.add_post("/aas/oauth2/v3/te", fake.token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fake.base = f"http://127.0.0.1:{port}"
        cfg = AgentConfig()
        cfg.outbox.path = str(tmp_path / "outbox.sqlite3")
        cfg.esia.base_url = fake.base
        cfg.esia.client_id = "SCHOOLTEST"
        cfg.esia.redirect_uri = "http://127.0.0.1:9/esia/callback"
        cfg.esia.refresh_margin_s = 300  # > lifetime: refresh at half the lifetime
        cfg.esia.signer = _pair(tmp_path / "keys", "old")
        session = aiohttp.ClientSession()
        src = AccessTokens(cfg, lambda: session)
        try:
            await scenario(src, fake)
        finally:
            if src._timer is not None:
                src._timer.cancel()
            await session.close()
            await runner.cleanup()

    asyncio.run(main())


def test_refresh_time_margin_and_half_life() -> None:
    assert refresh_time(1000.0, 3600, 300) == 1000 + 3300  # margin before expiry
    assert refresh_time(1000.0, 60, 300) == 1000 + 30  # never earlier than half the lifetime
    assert refresh_time(1000.0, 60, 20) == 1000 + 40
    assert 1.0 <= retry_delay(0) <= retry_delay(100) <= retry_delay(10_000) == 30.0


def test_refresh_in_background_single_flight_old_token_meanwhile(tmp_path: Path) -> None:
    async def scenario(tokens: AccessTokens, esia: FakeEsia) -> None:
        first = await tokens.get()
        assert first == "token-1" and esia.requests == 1
        esia.delay_s = 1.0
        await asyncio.sleep(6.2)  # past half of the 12 s lifetime: a refresh is due
        t0 = time.monotonic()
        got = await asyncio.gather(*(tokens.get() for _ in range(50)))
        assert time.monotonic() - t0 < 0.5, "a due refresh delayed requests"
        assert set(got) <= {"token-1"}, got  # the old token until the new one is in hand
        await asyncio.sleep(1.3)
        assert await tokens.get() == "token-2"
        assert esia.max_in_flight == 1 and esia.requests == 2  # one refresh for 50 callers (+ the timer)
        assert tokens.refreshes == 2 and tokens.failures == 0
        status = json.loads(tokens.status_path.read_text())
        assert status["token"]["refreshes"] == 2 and status["signer"]["certificate_hash"]
        assert "token-" not in tokens.status_path.read_text()  # never the token itself

    run(scenario, tmp_path)


def test_failed_refresh_keeps_old_token_then_retries(tmp_path: Path) -> None:
    async def scenario(tokens: AccessTokens, esia: FakeEsia) -> None:
        esia.lifetime_s = 16
        assert await tokens.get() == "token-1"
        esia.status = 503
        await asyncio.sleep(8.3)  # refresh due at 8 s; the timer's attempt fails
        assert await tokens.get() == "token-1"  # still valid: used, nobody waits
        assert tokens.failures >= 1 and tokens.last_error and "503" in tokens.last_error
        esia.status = 200
        await asyncio.sleep(2.2)  # retry_delay(≈8 s left) = 1.6 s
        assert await tokens.get() == "token-2"
        assert tokens.last_error is None

    run(scenario, tmp_path)


def test_without_a_usable_token_callers_share_one_request(tmp_path: Path) -> None:
    async def scenario(tokens: AccessTokens, esia: FakeEsia) -> None:
        esia.delay_s = 0.3
        esia.status = 503
        results = await asyncio.gather(*(tokens.get() for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, DeliveryError) for r in results)
        assert esia.requests == 1
        esia.status = 200
        assert await tokens.get() == "token-1"

    run(scenario, tmp_path)


def test_invalidate_only_drops_the_rejected_token(tmp_path: Path) -> None:
    async def scenario(tokens: AccessTokens, esia: FakeEsia) -> None:
        assert await tokens.get() == "token-1"
        tokens.invalidate("token-0")  # a 401 for an older token must not throw away the current one
        assert await tokens.get() == "token-1" and esia.requests == 1
        tokens.invalidate("token-1")
        assert await tokens.get() == "token-2"

    run(scenario, tmp_path)


def test_signer_switch_only_after_the_provider_accepts_it(tmp_path: Path) -> None:
    async def scenario(tokens: AccessTokens, esia: FakeEsia) -> None:
        esia.lifetime_s = 60
        old_hash = client_certificate_hash(Path(tokens.cfg.esia.signer["cert"]).read_bytes())
        assert await tokens.get() == "token-1"
        new = _pair(tmp_path / "keys", "new")
        new_hash = client_certificate_hash(Path(new["cert"]).read_bytes())
        config = tmp_path / "agent.json"
        config.write_text(
            json.dumps(
                {
                    "auth": {"mode": "hmac", "hmac_secret_file": str(tmp_path / "hmac")},
                    "outbox": {"path": tokens.cfg.outbox.path},
                    "provider": {"base_url": "http://127.0.0.1:9"},
                    "esia": {
                        "base_url": esia.base,
                        "client_id": "SCHOOLTEST",
                        "redirect_uri": "http://127.0.0.1:9/esia/callback",
                        "signer": new,
                    },
                }
            )
        )
        (tmp_path / "hmac").write_bytes(b"x" * 32)
        tokens.cfg.source = str(config)
        # the provider still has the old certificate registered: the new signer is refused, the old one stays
        esia.accepted = {old_hash}
        assert await tokens.reload_signer() is False
        assert tokens.status()["signer"]["certificate_hash"] == old_hash
        assert tokens.last_reload["outcome"] == "failed" and "007053" in tokens.last_reload["error"]
        assert await tokens.get() == "token-1"
        # the registration now holds the new certificate: the switch happens, with a fresh token
        esia.accepted = {new_hash}
        assert await tokens.reload_signer() is True
        assert tokens.status()["signer"]["certificate_hash"] == new_hash
        assert await tokens.get() == "token-2"
        # key files replaced on disk do not change the signer in memory until the next reload
        Path(new["key"]).write_bytes(b"garbage")
        tokens.invalidate("token-2")
        assert await tokens.get() == "token-3"

    run(scenario, tmp_path)


def test_refused_refresh_with_a_new_certificate_on_disk_reloads_by_itself(tmp_path: Path) -> None:
    async def scenario(tokens: AccessTokens, esia: FakeEsia) -> None:
        esia.lifetime_s = 60
        signer = dict(tokens.cfg.esia.signer)
        config = tmp_path / "agent.json"
        config.write_text(
            json.dumps(
                {
                    "auth": {"mode": "hmac", "hmac_secret_file": str(tmp_path / "hmac")},
                    "outbox": {"path": tokens.cfg.outbox.path},
                    "provider": {"base_url": "http://127.0.0.1:9"},
                    "esia": {
                        "base_url": esia.base,
                        "client_id": "SCHOOLTEST",
                        "redirect_uri": "http://127.0.0.1:9/esia/callback",
                        "signer": signer,
                    },
                }
            )
        )
        (tmp_path / "hmac").write_bytes(b"x" * 32)
        tokens.cfg.source = str(config)
        assert await tokens.get() == "token-1"
        # a converge replaced key and certificate in place and registered the new one, without a SIGHUP
        new = _pair(tmp_path / "keys", "new")
        Path(signer["key"]).write_bytes(Path(new["key"]).read_bytes())
        Path(signer["cert"]).write_bytes(Path(new["cert"]).read_bytes())
        esia.accepted = {client_certificate_hash(Path(new["cert"]).read_bytes())}
        tokens.invalidate("token-1")
        with contextlib.suppress(DeliveryError):
            await tokens.get()  # refused: the agent still signs with the certificate it loaded
        for _ in range(50):
            if tokens.last_reload.get("outcome") == "ok":
                break
            await asyncio.sleep(0.1)
        assert tokens.last_reload.get("outcome") == "ok", tokens.last_reload
        assert await tokens.get() == "token-2"

    run(scenario, tmp_path)


def test_sighup_never_stops_an_agent_without_delivery(tmp_path: Path) -> None:
    """renew.yml may signal an agent whose delivery is off: it must keep running."""
    import os
    import signal as sig

    from schoolgate.agent.harness import AgentProcess

    agent = AgentProcess(tmp_path / "agent").start()
    try:
        assert agent.proc is not None
        os.kill(agent.proc.pid, sig.SIGHUP)
        time.sleep(1.0)
        assert agent.proc.poll() is None, agent.log_tail()
        assert agent.request("GET", "/healthz", signed=False)[0] == 200
        assert "signer.reload_skipped" in agent.log_tail()
    finally:
        agent.stop()
