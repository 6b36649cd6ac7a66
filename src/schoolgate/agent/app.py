"""The agent's local HTTP API (aiohttp) for the school portal.

A push answers 202 only after the outbox commit that holds the record(s)
returned (fsynced). Bad input answers 4xx naming the field, and nothing is
stored. Unexpected failures answer 503/500 without details, and never 2xx.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from . import auth, logs
from .config import AgentConfig
from .credentials import install_reload_handler
from .delivery import Delivery, make_ssl_context
from .esia_login import EsiaLogin
from .metrics import Registry
from .parsing import BatchParser
from .records import FieldError, InputError, kind_of, orjson, parse_batch, parse_single
from .services import Services
from .store import Outbox, RecordConflict, Row, StoreClosed

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.yaml"})
OPENAPI_FILE = os.path.join(os.path.dirname(__file__), "openapi.yaml")

CFG: web.AppKey[AgentConfig] = web.AppKey("cfg", AgentConfig)
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox", Outbox)
REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
STATE: web.AppKey[dict[str, Any]] = web.AppKey("state", dict)


def _json(status: int, data: Any) -> web.Response:
    body = orjson.dumps(data) if orjson is not None else json.dumps(data, ensure_ascii=False).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def _error(status: int, code: str, errors: list[FieldError]) -> web.Response:
    return _json(
        status,
        {
            "error": code,
            "message": "; ".join(f"{e.field}: {e.message}" for e in errors),
            "errors": [e.as_dict() for e in errors],
        },
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise InputError(
            413, [FieldError("body", f"{request.content_length} bytes; at most {limit} allowed")], "too_large"
        )
    if request.content_length is not None:
        return await request.read()  # length known and within the limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise InputError(
                413, [FieldError("body", f"more than {limit} bytes; at most {limit} allowed")], "too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    cfg: AgentConfig,
    outbox: Outbox,
    registry: Registry,
    *,
    hmac_secret: bytes | None,
    delivery: Delivery | None,
    esia_login: EsiaLogin | None = None,
    services: Services | None = None,
    parser: BatchParser | None = None,
) -> web.Application:
    m_requests = registry.counter(
        "schoolgate_agent_http_requests_total", "API requests by route and status.", ["route", "status"]
    )
    m_latency = registry.histogram(
        "schoolgate_agent_http_request_seconds", "API latency by route.", ["route"]
    )
    m_ingested = registry.counter(
        "schoolgate_agent_records_accepted_total", "Records durably accepted from the portal.", ["kind"]
    )
    m_dups = registry.counter(
        "schoolgate_agent_records_duplicate_total",
        "Pushed records already accepted before (acknowledged, not stored again).",
        ["kind"],
    )
    registry.gauge(
        "schoolgate_agent_queue_depth", "Records waiting for delivery.", lambda: outbox.queue_depth
    )
    oldest = registry.gauge(
        "schoolgate_agent_queue_oldest_age_seconds", "Age of the oldest undelivered record (0 when empty)."
    )
    registry.gauge(
        "schoolgate_agent_outbox_commits_total",
        "Group commits done by the outbox writer.",
        lambda: outbox.commits,
    )
    registry.gauge(
        "schoolgate_agent_outbox_last_commit_seconds",
        "Duration of the last outbox commit (fsync).",
        lambda: outbox.last_commit_s,
    )
    use_hmac = "hmac" in cfg.auth.mode
    window = cfg.auth.window_s
    max_body = cfg.limits.max_body_bytes
    max_record = cfg.limits.max_record_bytes

    def authenticate(request: web.Request, body: bytes) -> None:
        if not use_hmac:
            return  # mTLS: the TLS layer already refused clients without a certificate from listen.client_ca
        assert hmac_secret is not None
        try:
            auth.verify(
                hmac_secret,
                request.method,
                request.path_qs,
                body,
                request.headers.get(auth.TS_HEADER),
                request.headers.get(auth.SIG_HEADER),
                window_s=window,
            )
        except auth.AuthError as exc:
            raise InputError(401, [FieldError(auth.SIG_HEADER, str(exc))], "unauthenticated") from None

    @web.middleware
    async def errors_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        t0 = time.perf_counter()
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        )
        try:
            resp = await handler(request)
        except InputError as exc:
            resp = _error(exc.status, exc.code, exc.errors)
        except RecordConflict as exc:
            resp = _error(
                409,
                "record_id_conflict",
                [
                    FieldError(
                        f"records[{exc.index}].record_id" if "batches" in route else "record_id",
                        f"{exc.record_id} was already accepted with different content; "
                        "a record_id identifies one "
                        "record forever",
                    )
                ],
            )
        except web.HTTPException as exc:
            if exc.status >= 500 or exc.status < 400:  # redirects keep their Location header
                raise
            resp = _json(exc.status, {"error": exc.reason, "message": exc.text or exc.reason, "errors": []})
        except StoreClosed:
            resp = _json(
                503, {"error": "unavailable", "message": "outbox is shutting down; retry", "errors": []}
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # Nothing was acknowledged; the portal retries. Details go to our log only (no payloads there).
            logs.LOGGER.exception("api.internal_error", extra={"fields": {"route": route}})
            resp = _json(
                500, {"error": "internal", "message": "internal error; nothing was accepted", "errors": []}
            )
        m_requests.inc(1, route, str(resp.status))
        m_latency.observe(time.perf_counter() - t0, route)
        return resp

    async def post_record(request: web.Request) -> web.Response:
        kind = kind_of(request.match_info["kind"])
        body = await _read_body(request, max_record)
        authenticate(request, body)
        prepared = parse_single(kind, body)
        result = await outbox.ingest(prepared)
        m_ingested.inc(result.accepted, kind)
        m_dups.inc(result.duplicates, kind)
        rec = prepared[0]
        return _json(
            202,
            {
                "record_id": rec.record_id,
                "status": "accepted" if result.accepted else "duplicate",
                "seq": result.first_seq,
            },
        )

    async def post_batch(request: web.Request) -> web.Response:
        kind = kind_of(request.match_info["kind"])
        body = await _read_body(request, max_body)
        authenticate(request, body)
        parse = parser.parse if parser is not None else _parse_inline
        prepared = await parse(
            kind,
            body,
            request.headers.get("Content-Type", "application/json"),
            cfg.limits.max_batch_records,
            max_body,
        )
        result = await outbox.ingest(prepared)
        m_ingested.inc(result.accepted, kind)
        m_dups.inc(result.duplicates, kind)
        logs.debug(
            "api.batch_accepted",
            kind=kind,
            accepted=result.accepted,
            duplicates=result.duplicates,
            first_seq=result.first_seq,
            last_seq=result.last_seq,
        )
        return _json(
            202,
            {
                "kind": kind,
                "received": len(prepared),
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "first_seq": result.first_seq,
                "last_seq": result.last_seq,
            },
        )

    async def get_record(request: web.Request) -> web.Response:
        authenticate(request, b"")
        record_id = request.match_info["record_id"]
        status = await outbox.record_status(record_id)
        if status is None:
            raise InputError(
                404, [FieldError("record_id", f"{record_id} is not known to this agent")], "not_found"
            )
        return _json(200, status)

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok", "writer": outbox.writer_alive})

    async def readyz(request: web.Request) -> web.Response:
        problems = []
        if not outbox.writer_alive:
            problems.append("outbox writer thread is not running")
        else:
            try:
                await asyncio.wait_for(outbox.ping(), 5)
            except Exception as exc:
                problems.append(f"outbox commit failed: {exc}")
        info: dict[str, Any] = {"queue_depth": outbox.queue_depth}
        if delivery is not None:
            info.update(breaker=delivery.breaker.state, last_delivery_error=delivery.last_error)
        if problems:
            return _json(503, {"status": "not ready", "problems": problems, **info})
        return _json(200, {"status": "ready", **info})

    async def metrics(request: web.Request) -> web.Response:
        oldest.set(await outbox.oldest_queued_age())
        return web.Response(
            text=registry.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(OPENAPI_FILE, headers={"Content-Type": "application/yaml"})

    # client_max_size is a backstop; _read_body enforces the per-route limits before buffering.
    app = web.Application(middlewares=[errors_mw], client_max_size=max_body + 1)
    app[CFG], app[OUTBOX], app[REGISTRY] = cfg, outbox, registry
    app.add_routes(
        [
            web.post("/v1/records/{kind}", post_record),
            web.post("/v1/batches/{kind}", post_batch),
            web.get("/v1/records/status/{record_id}", get_record),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/openapi.yaml", openapi),
        ]
    )
    if esia_login is not None:
        app.add_routes(esia_login.routes())
    if services is not None:

        async def read_small(request: web.Request) -> bytes:
            return await _read_body(request, max_record)

        app.add_routes(services.routes(authenticate, read_small))
    return app


async def _parse_inline(
    kind: str, body: bytes, content_type: str, max_records: int, max_bytes: int
) -> list[Row]:
    return list(parse_batch(kind, body, content_type, max_records, max_bytes))


def server_ssl_context(cfg: AgentConfig) -> ssl.SSLContext | None:
    """TLS on the listener (needed for mTLS): client certificates verified against listen.client_ca."""
    if not cfg.listen.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.listen.tls_cert, cfg.listen.tls_key)
    if "mtls" in cfg.auth.mode:
        ctx.load_verify_locations(cafile=cfg.listen.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def run(cfg: AgentConfig, *, ready_file: str | None = None) -> None:
    """Start the outbox, delivery workers and the HTTP server; run until cancelled/SIGTERM."""
    hmac_secret = auth.load_secret(cfg.auth.hmac_secret_file) if "hmac" in cfg.auth.mode else None
    loop = asyncio.get_running_loop()
    outbox = Outbox(
        cfg.outbox.path,
        partitions=cfg.outbox.partitions,
        group_max_rows=cfg.outbox.group_max_rows,
        group_linger_s=cfg.outbox.group_linger_ms / 1000,
    )
    if outbox.partitions != cfg.outbox.partitions:
        logs.warning("outbox.partitions_fixed", configured=cfg.outbox.partitions, used=outbox.partitions)
    outbox.start(loop)
    registry = Registry()
    delivery = Delivery(cfg, outbox, registry) if cfg.delivery.enabled else None
    esia_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=make_ssl_context(cfg, cfg.esia.ca_file)),
        timeout=aiohttp.ClientTimeout(total=cfg.provider.timeout_s),
    )
    esia_login = EsiaLogin(cfg, hmac_secret, esia_session) if cfg.esia.client_id else None
    if esia_login is not None and delivery is not None:
        esia_login.signer = delivery.tokens.current_signer  # type: ignore[method-assign] # one signer, renewed on SIGHUP
    services_session: aiohttp.ClientSession | None = None
    services: Services | None = None
    if delivery is not None and cfg.services.enabled:
        # Not the delivery workers' session: its pool is sized for them and a portal request queued behind
        # bulk deliveries (p95 of POST /v1/documents 1.5-2 s at 200 clients in the lab).
        services_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=make_ssl_context(cfg), limit=cfg.services.max_connections),
            timeout=aiohttp.ClientTimeout(total=cfg.provider.timeout_s),
        )
        services = Services(cfg, outbox, services_session, delivery.tokens.get, hmac_secret)
    parser = BatchParser(cfg.limits.parse_workers)
    await parser.start()
    app = build_app(
        cfg,
        outbox,
        registry,
        hmac_secret=hmac_secret,
        delivery=delivery,
        esia_login=esia_login,
        services=services,
        parser=parser,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner,
        cfg.listen.host,
        cfg.listen.port,
        ssl_context=server_ssl_context(cfg),
        backlog=1024,
        reuse_address=True,
    )
    await site.start()
    if delivery is not None:
        delivery.start()
    if services is not None:
        await services.start()

    async def recount() -> None:
        while True:
            await asyncio.sleep(15)
            await outbox.recount()

    recounter = asyncio.create_task(recount())
    logs.info(
        "agent.started",
        listen=f"{cfg.listen.host}:{cfg.listen.port}",
        outbox=cfg.outbox.path,
        queue_depth=outbox.queue_depth,
        partitions=outbox.partitions,
        auth=cfg.auth.mode,
        delivery=cfg.delivery.enabled,
    )
    if ready_file:
        with open(ready_file, "w") as fh:
            fh.write(str(os.getpid()))
    stop = asyncio.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    install_reload_handler(loop, delivery.tokens if delivery is not None else None)  # SIGHUP: new signer
    try:
        await stop.wait()
    finally:
        logs.info("agent.stopping", queue_depth=outbox.queue_depth)
        recounter.cancel()
        await runner.cleanup()  # stop taking requests first; in-flight ones finish their commits
        if services is not None:
            await services.stop()
        if services_session is not None:
            await services_session.close()
        if delivery is not None:
            await delivery.stop()
        await outbox.close()
        parser.close()
        await esia_session.close()
