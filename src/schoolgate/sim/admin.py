"""Admin API (fault injection, ESIA key rotation, intake statistics), /healthz, /metrics, /openapi.yaml."""

from __future__ import annotations

import hmac
import time
from importlib import resources

from aiohttp import web

from .common import SimError, ctx, ok, read_json
from .faults import FaultConfig, FaultConfigError
from .logs import log

STARTED_AT = time.time()


def _admin(request: web.Request) -> None:
    expected = ctx(request).config.admin_token
    if expected is None:
        return
    given = request.headers.get("X-Admin-Token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise SimError(401, "unauthorized", "SIM-401", "admin API needs a valid X-Admin-Token header")


async def get_faults(request: web.Request) -> web.Response:
    _admin(request)
    return ok(ctx(request).faults.state())


async def set_faults(request: web.Request) -> web.Response:
    _admin(request)
    try:
        config = FaultConfig.from_json(await read_json(request))
    except FaultConfigError as exc:
        raise SimError(400, "invalid_request", "SIM-400", f"faults: {exc}") from exc
    faults = ctx(request).faults
    faults.configure(config)
    log("faults.configured", **{k: v for k, v in faults.state().items() if k != "paths"})
    return ok(faults.state())


async def clear_faults(request: web.Request) -> web.Response:
    _admin(request)
    ctx(request).faults.reset()
    log("faults.cleared")
    return ok(ctx(request).faults.state())


async def rotate_esia(request: web.Request) -> web.Response:
    """ESIA-side certificate rotation: new tokens are signed with a new key; /aas/oauth2/certs lists all."""
    _admin(request)
    sim = ctx(request)
    result = sim.keys.rotate_esia()
    sim.token_cache.clear()
    log("esia.keys_rotated", current=result["current"])
    return ok(result)


async def intake_stats(request: web.Request) -> web.Response:
    _admin(request)
    return ok(ctx(request).store.intake_stats())


async def healthz(request: web.Request) -> web.Response:
    sim = ctx(request)
    sim.store.one("SELECT 1")
    return ok(
        {"status": "ok", "uptime_s": round(time.time() - STARTED_AT, 3), "esia_key": sim.keys.esia_current}
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=ctx(request).metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def openapi_text() -> str:
    return resources.files("schoolgate.sim").joinpath("openapi.yaml").read_text(encoding="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=openapi_text(), content_type="application/yaml", charset="utf-8")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/admin/v1/faults", get_faults),
        web.put("/admin/v1/faults", set_faults),
        web.delete("/admin/v1/faults", clear_faults),
        web.post("/admin/v1/esia/rotate", rotate_esia),
        web.get("/admin/v1/intake/stats", intake_stats),
        web.get("/healthz", healthz),
        web.get("/metrics", metrics),
        web.get("/openapi.yaml", openapi),
    ]
