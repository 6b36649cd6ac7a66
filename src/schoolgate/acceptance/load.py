"""Load: N concurrent clients against the portal's public HTTPS endpoint for a fixed time.

Each client is a loop that sends one request, waits for the answer, and sends the next (closed model: N
requests are always in flight). Operations are drawn from a weighted mix of what a portal does: push a
record, read the service catalogue, request a справка (this one goes through to the provider). Latency is
measured per request from send to full body; percentiles are exact (all samples kept).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from schoolgate.agent.auth import sign

from .http import make_session
from .report import LoadResult
from .scenarios import grade_record
from .target import Target

DEFAULT_MIX = {"record": 0.6, "services": 0.3, "document": 0.1}


@dataclass
class Sample:
    op: str
    status: str  # HTTP status or "connection" / "timeout"
    seconds: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def summarize(samples: list[Sample], clients: int, seconds: float, p95_limit_s: float = 2.0) -> LoadResult:
    lat = sorted(s.seconds for s in samples)
    statuses = Counter(s.status for s in samples)
    result = LoadResult(clients=clients, duration_s=seconds, p95_limit_s=p95_limit_s)
    result.requests = len(samples)
    result.rate_rps = len(samples) / seconds if seconds > 0 else 0.0
    result.p50_s, result.p95_s, result.p99_s = (percentile(lat, q) for q in (50, 95, 99))
    result.max_s = lat[-1] if lat else 0.0
    result.statuses = dict(sorted(statuses.items()))

    def is5xx(s: Sample) -> bool:
        return s.status.isdigit() and int(s.status) >= 500

    def is_other(s: Sample) -> bool:
        return not s.status.isdigit() or 400 <= int(s.status) < 500

    result.errors_5xx = sum(1 for s in samples if is5xx(s))
    result.errors_other = sum(1 for s in samples if is_other(s))
    for op in sorted({s.op for s in samples}):
        mine = [s for s in samples if s.op == op]
        ol = sorted(s.seconds for s in mine)
        result.by_operation[op] = {
            "requests": len(mine),
            "p50_s": round(percentile(ol, 50), 4),
            "p95_s": round(percentile(ol, 95), 4),
            "errors_5xx": sum(1 for s in mine if is5xx(s)),
            "errors_other": sum(1 for s in mine if is_other(s)),
        }
    if not samples:
        result.reasons.append("ни одного запроса не выполнено")
    if result.p95_s > p95_limit_s:
        result.reasons.append(f"p95 {result.p95_s:.3f} с больше допустимых {p95_limit_s:.1f} с")
    if result.errors_5xx:
        result.reasons.append(f"ответов 5xx: {result.errors_5xx}")
    if result.errors_other:
        result.reasons.append(f"прочих ошибок (4xx, соединение, таймаут): {result.errors_other}")
    result.passed = not result.reasons
    return result


class LoadRun:
    def __init__(
        self,
        target: Target,
        secret: bytes,
        *,
        clients: int = 200,
        seconds: float = 30.0,
        mix: dict[str, float] | None = None,
        request_timeout_s: float = 30.0,
        p95_limit_s: float = 2.0,
        seed: int = 0,
    ) -> None:
        if clients < 1 or seconds <= 0:
            raise ValueError("load: clients must be ≥ 1 and seconds > 0")
        self.target, self.secret = target, secret
        self.clients, self.seconds = clients, seconds
        self.mix = dict(mix or DEFAULT_MIX)
        unknown = sorted(set(self.mix) - set(DEFAULT_MIX))
        if unknown or not any(w > 0 for w in self.mix.values()):
            raise ValueError(f"load mix: operations are {sorted(DEFAULT_MIX)} with positive weights")
        self.request_timeout_s = request_timeout_s
        self.p95_limit_s = p95_limit_s
        self.rng = random.Random(seed)  # noqa: S311 - workload shape, not security
        self.samples: list[Sample] = []

    def _request(self, op: str) -> tuple[str, str, bytes, str | None]:
        t = self.target
        if op == "record":
            body = json.dumps(grade_record(t.school_id)).encode()
            return "POST", "/v1/records/grade", body, "application/json"
        if op == "document":
            body = json.dumps({"service": t.document_service, "oid": t.pupil_oid}).encode()
            return "POST", "/v1/documents", body, "application/json"
        return "GET", "/v1/services", b"", None

    async def _client(self, session: aiohttp.ClientSession, stop_at: float) -> None:
        ops, weights = list(self.mix), list(self.mix.values())
        while time.monotonic() < stop_at:
            op = self.rng.choices(ops, weights)[0]
            method, path, body, ctype = self._request(op)
            headers = sign(self.secret, method, path, body)
            if ctype:
                headers["Content-Type"] = ctype
            started = time.monotonic()
            try:
                async with session.request(
                    method, self.target.api + path, data=body or None, headers=headers
                ) as resp:
                    await resp.read()
                    status = str(resp.status)
            except TimeoutError:
                status = "timeout"
            except aiohttp.ClientError:
                status = "connection"
            self.samples.append(Sample(op, status, time.monotonic() - started))

    async def run(self) -> LoadResult:
        session = make_session(self.target, limit=self.clients, timeout_s=self.request_timeout_s)
        async with session:
            started = time.monotonic()
            stop_at = started + self.seconds
            await asyncio.gather(*(self._client(session, stop_at) for _ in range(self.clients)))
            elapsed = time.monotonic() - started
        return summarize(self.samples, self.clients, elapsed, self.p95_limit_s)
