"""Shared pieces of the simulator's handlers: the error shape, JSON helpers, auth guards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..esia.errors import CATALOGUE, EsiaError
from .config import SimConfig
from .faults import FaultInjector
from .metrics import Metrics
from .store import Store

CTX_KEY: web.AppKey[SimContext] = web.AppKey("sim_ctx")


@dataclass
class SimContext:
    config: SimConfig
    store: Store
    faults: FaultInjector
    metrics: Metrics
    keys: Any = None  # sim.keys.KeyRing, set once the key material is loaded
    token_cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)


def ctx(request: web.Request) -> SimContext:
    return request.app[CTX_KEY]


class SimError(Exception):
    """Any failure a client sees. Rendered as ESIA-style JSON:
    {"error": "...", "error_description": "ESIA-0070xx: ...", ...extra}."""

    def __init__(
        self,
        status: int,
        error: str,
        code: str,
        description: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        self.headers = headers or {}
        self.extra = extra

    @classmethod
    def esia(cls, status: int, code: str, detail: str = "", **kwargs: Any) -> SimError:
        """An error from the ESIA core's catalogue: its oauth error name, English text and Russian text."""
        err = EsiaError.from_code(code, detail)
        entry = CATALOGUE.get(err.code)
        oauth_error = (entry.oauth_error if entry else "") or kwargs.pop("error", None) or "invalid_request"
        description = err.message_en + (f" ({detail})" if detail else "")
        return cls(
            status, oauth_error, err.code, description, message_ru=err.message_ru, hint=err.hint, **kwargs
        )

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": f"{self.code}: {self.description}",
            "code": self.code,
        }
        body.update(self.extra)
        return web.json_response(body, status=self.status, headers=self.headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


# Error codes. ESIA-0070xx and SG-ESIA-1xx come from the ESIA core's catalogue (schoolgate.esia.errors),
# which also gives the Russian text and the hint; SIM-xxx are the simulator's own (provider cabinet, intake,
# documents) and use the same JSON shape.
INVALID_REQUEST = "ESIA-007002"  # certificate does not match the registered one
ACCESS_DENIED = "ESIA-007004"
UNAUTHORIZED_CLIENT = "ESIA-007005"
INVALID_SCOPE = "ESIA-007006"
SERVER_ERROR = "ESIA-007007"
UNAVAILABLE = "ESIA-007008"
INVALID_GRANT = "ESIA-007011"
UNSUPPORTED_GRANT = "ESIA-007012"
MISSING_PARAMS = "ESIA-007014"
BAD_TIMESTAMP = "ESIA-007015"
BAD_REDIRECT = "ESIA-007023"
SECRET_WRONG = "ESIA-007053"  # noqa: S105 - an error code
TOKEN_INVALID = "SG-ESIA-110"  # noqa: S105 - an error code
BAD_PARAMS = "SG-ESIA-111"
NOT_FOUND_CODE = "SIM-404"
BAD_BODY = "SIM-400"
CONFLICT = "SIM-409"
TOO_LARGE = "SIM-413"
THROTTLED = "SIM-429"
MAINTENANCE = "SIM-503"
INJECTED = "SIM-500"


async def read_json(request: web.Request) -> Any:
    if request.content_type not in ("application/json", ""):
        raise SimError(
            415, "invalid_request", BAD_BODY, f"expected application/json, got {request.content_type}"
        )
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SimError(400, "invalid_request", BAD_BODY, f"body is not valid JSON: {exc}") from exc


async def read_form(request: web.Request) -> Any:
    """Form fields of an application/x-www-form-urlencoded (or well-formed multipart) body; anything else,
    or a body aiohttp cannot parse, is the client's error, never a 500."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise SimError.esia(
            415, BAD_PARAMS, "send the parameters form-encoded (application/x-www-form-urlencoded)"
        )
    try:
        return await request.post()
    except (ValueError, AssertionError, UnicodeDecodeError, KeyError) as exc:
        raise SimError.esia(400, BAD_PARAMS, f"form body could not be parsed: {exc}") from exc


def require_object(data: Any, *fields_: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SimError(400, "invalid_request", BAD_BODY, "body must be a JSON object")
    missing = [f for f in fields_ if f not in data]
    if missing:
        raise SimError.esia(400, MISSING_PARAMS, f"missing fields: {', '.join(missing)}", missing=missing)
    return data


def require_str(data: dict[str, Any], name: str, *, max_len: int = 4096, min_len: int = 1) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise SimError(
            400, "invalid_request", BAD_BODY, f"{name} must be a string of {min_len}..{max_len} characters"
        )
    return value


def not_found(what: str) -> SimError:
    return SimError(404, "not_found", NOT_FOUND_CODE, f"{what} not found")


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SimError.esia(
            401,
            TOKEN_INVALID,
            "missing 'Authorization: Bearer <token>' header",
            error="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return token.strip()
