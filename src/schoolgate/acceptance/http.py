"""HTTP client side of the integration test: aiohttp with a name→address map and verified TLS, and the
portal's HMAC request signing (the agent's own reference implementation)."""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from schoolgate.agent.auth import sign

from .target import Target


class StaticResolver(AbstractResolver):
    """Names in `mapping` resolve to the given address; everything else through the system resolver."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = dict(mapping)
        self.fallback = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addr = self.mapping.get(host)
        if addr is None:
            return await self.fallback.resolve(host, port, family)
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        return [{"hostname": host, "host": addr, "port": port, "family": fam, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        await self.fallback.close()


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification always on; the trust store is the given bundle or the system's."""
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def make_session(
    target: Target, *, ca_file: str | None = None, limit: int = 100, timeout_s: float | None = None
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=StaticResolver(target.resolve),
        ssl=ssl_context(ca_file if ca_file is not None else target.ca_file),
        limit=limit,
        limit_per_host=limit,
        ttl_dns_cache=None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s or target.timeout_s),
    )


class Portal:
    """Signed calls to the agent's API through the portal (nginx strips the api prefix, so the signature
    covers the agent-side path)."""

    def __init__(self, target: Target, session: aiohttp.ClientSession, secret: bytes) -> None:
        self.target = target
        self.session = session
        self.secret = secret

    def _headers(self, method: str, path: str, body: bytes, content_type: str | None) -> dict[str, str]:
        headers = sign(self.secret, method, path, body)
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        *,
        content_type: str | None = "application/json",
        signed: bool = True,
    ) -> tuple[int, Any, bytes]:
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        headers = (
            self._headers(method, path, data, content_type)
            if signed
            else ({"Content-Type": content_type} if content_type else {})
        )
        async with self.session.request(
            method, self.target.api + path, data=data if method != "GET" else None, headers=headers
        ) as resp:
            raw = await resp.read()
            try:
                parsed: Any = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return resp.status, parsed, raw
