"""JSON-over-HTTPS client for schoolgate's Ansible modules (runs on target hosts: standard library only).

* TLS verification is always on; the trust store is a configurable CA bundle (``ca_file``) or the system one.
* Retries with exponential backoff on 5xx, 429, timeouts and connection errors; ``Retry-After`` (seconds)
  is honoured, capped by ``backoff_max``. Other 4xx are returned at once: retrying cannot fix them.
* Nothing here logs request headers or bodies, so secrets (access codes, tokens) never reach output.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpError(Exception):
    """A request that failed for good: ``status`` 0 = network error; ``body`` = parsed JSON or {}."""

    def __init__(
        self, method: str, url: str, status: int, body: dict[str, Any], reason: str, attempts: int
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.reason = reason
        self.attempts = attempts
        super().__init__(
            f"{method} {url}: {reason if status == 0 else f'HTTP {status}'} after {attempts} attempt(s)"
        )

    @property
    def code(self) -> str:
        """The error code the server gave (``ESIA-0070xx``, ``SG-ESIA-1xx``, ``SIM-4xx``), or ''."""
        code = self.body.get("code")
        if isinstance(code, str):
            return code
        description = str(self.body.get("error_description", ""))
        return description.split(":", 1)[0] if ":" in description else ""

    @property
    def description(self) -> str:
        return str(self.body.get("error_description") or self.body.get("error") or self.reason)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


def _json(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {"data": data}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could carry the X-Access-Code header to another host: refuse them.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class JsonClient:
    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.headers = dict(headers or {})
        self.sleep = sleep
        self.retries: list[
            dict[str, Any]
        ] = []  # what was retried and why (no secrets), for the module's result
        context = ssl.create_default_context(cafile=ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff * (2 ** (attempt - 1)), self.backoff_max)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Send one JSON request (with retries); return the parsed JSON answer ({} for 204)."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        all_headers = {"Accept": "application/json", "User-Agent": "schoolgate-ansible"}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(self.headers)
        all_headers.update(headers or {})
        last: HttpError | None = None
        for attempt in range(1, self.attempts + 1):
            retry_after: float | None = None
            # The scheme is fixed by the module's base_url (http/https), never taken from a response.
            req = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    return _json(resp.read())
            except urllib.error.HTTPError as exc:
                raw = exc.read() if exc.fp is not None else b""
                last = HttpError(method, url, exc.code, _json(raw), f"HTTP {exc.code}", attempt)
                if exc.code not in RETRY_STATUSES:
                    raise last from None
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    # Verification failures are configuration errors, not transient: fail at once.
                    raise HttpError(
                        method, url, 0, {}, f"TLS verification failed: {reason}", attempt
                    ) from None
                last = HttpError(method, url, 0, {}, f"network error: {reason}", attempt)
            if attempt < self.attempts:
                delay = self._delay(attempt, retry_after)
                self.retries.append(
                    {
                        "method": method,
                        "path": path,
                        "attempt": attempt,
                        "status": last.status,
                        "delay_s": delay,
                    }
                )
                self.sleep(delay)
        assert last is not None
        raise last
