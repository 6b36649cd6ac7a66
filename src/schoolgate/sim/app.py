"""The simulator's aiohttp application: middlewares (faults, errors, logs, metrics) and the routes."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import admin, ca, cabinet, esia_oauth, intake, region, services
from .common import CTX_KEY, SimContext, SimError
from .config import SimConfig
from .faults import FaultInjector
from .keys import KeyRing
from .logs import log
from .metrics import Metrics
from .store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: time, count and log every request (method, route, status; never bodies)."""
    sim: SimContext = request.app[CTX_KEY]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        sim.metrics.inc(
            "schoolgate_sim_http_requests_total",
            help_text="HTTP requests by route and status.",
            route=route,
            method=request.method,
            status=str(status),
        )
        sim.metrics.observe(route, elapsed)
        if route not in ("/metrics", "/healthz"):
            log("http", method=request.method, route=route, status=status, ms=round(elapsed * 1000, 2))


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim: SimContext = request.app[CTX_KEY]
    decision = sim.faults.decide(request.path)
    if decision.latency_s > 0:
        await asyncio.sleep(decision.latency_s)
    if decision.kind is not None:
        sim.metrics.inc(
            "schoolgate_sim_faults_injected_total", help_text="Injected faults.", fault=decision.kind
        )
    if decision.kind == "maintenance":
        raise SimError.esia(
            503,
            "ESIA-007008",
            "maintenance window",
            headers={"Retry-After": str(decision.retry_after_s)},
            maintenance=True,
        )
    if decision.kind == "429":
        raise SimError(
            429,
            "too_many_requests",
            "SIM-429",
            "rate limit exceeded (fault injection)",
            headers={"Retry-After": str(decision.retry_after_s)},
        )
    if decision.kind == "5xx":
        raise SimError(sim.faults.config.status_5xx, "server_error", "SIM-500", "injected server error")
    if decision.kind == "drop":
        # Drop the connection without an answer, as a crashed upstream or a proxy timeout would.
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    return await handler(request)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an ESIA-style JSON body: SimError as is, aiohttp's own 4xx mapped, and
    anything unexpected a logged 500 without internals in the answer."""
    try:
        return await handler(request)
    except SimError as exc:
        return exc.response()
    except web.HTTPRedirection:
        raise
    except web.HTTPException as exc:
        if exc.status == 413:
            return SimError(413, "invalid_request", "SIM-413", "request body too large").response()
        if exc.status < 400:
            raise
        code = "SIM-404" if exc.status == 404 else ("SIM-405" if exc.status == 405 else f"SIM-{exc.status}")
        err = SimError(exc.status, "invalid_request" if exc.status != 404 else "not_found", code, exc.reason)
        resp = err.response()
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except asyncio.CancelledError:
        raise
    except Exception:
        logging.getLogger("schoolgate.sim").exception("unhandled error on %s", _route_name(request))
        return SimError.esia(500, "ESIA-007007", "internal error; see the simulator log").response()


def create_app(config: SimConfig, *, store: Store | None = None) -> web.Application:
    # The state (dossiers, tokens' hashes, records, keys) is private to the simulator's user.
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o700)
    store = store or Store(config.db_path)
    store.set_kv("issuer", config.issuer)
    sim = SimContext(config=config, store=store, faults=FaultInjector(), metrics=Metrics())
    sim.keys = KeyRing(config.state_dir, store, esia_key_type=config.esia_key_type)
    app = web.Application(middlewares=[observe, errors, inject_faults], client_max_size=config.max_body_bytes)
    app[CTX_KEY] = sim
    services.setup(app)
    intake.setup(app)
    for module in (region, cabinet, intake, admin, esia_oauth, services, ca):
        app.add_routes(module.routes())

    async def _close(_app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(_close)
    return app
