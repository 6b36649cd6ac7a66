"""Delivery of queued records to the provider's intake.

One worker per outbox partition (a pupil always lives in one partition), so
a pupil's records leave in acceptance order while partitions run in
parallel. A worker takes the head of its partition, builds one batch of the
head's kind from records whose pupil has nothing older of another kind still
waiting in the window, and sends it with an Idempotency-Key derived from the
exact record set — so resending after a crash is a replay, never a second
copy. Only after the provider answered 200 are records marked delivered;
rejected ones go to the dead-letter table with the provider's reason.

Transient trouble (network, TLS, 5xx, 429) holds the partition: exponential
backoff with full jitter, Retry-After honoured, and a circuit breaker shared
by all workers so an outage costs one probe per cool-down, not a storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import aiohttp

from . import logs
from .config import AgentConfig
from .credentials import AccessTokens
from .metrics import Registry
from .records import PROVIDER_PATH
from .store import Outbox, QueuedRecord


class DeliveryError(Exception):
    """A transient failure: the batch stays queued."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, counts_for_breaker: bool = True
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.counts_for_breaker = counts_for_breaker


class PermanentReject(Exception):
    """The provider refused the whole batch as malformed (4xx other than 401/403/408/409/429)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def make_ssl_context(cfg: AgentConfig, cafile: str | None = None) -> ssl.SSLContext:
    """TLS to the provider/ESIA: verification always on; the trust store is configurable."""
    cafile = cafile or cfg.provider.ca_file
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.provider.client_cert:
        ctx.load_cert_chain(cfg.provider.client_cert, cfg.provider.client_key)
    return ctx


def explain_tls(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectorCertificateError):
            cause = cause.certificate_error
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = getattr(cause, "verify_message", None) or str(cause)
            return (
                f"provider TLS certificate is not trusted (certificate verify failed: {reason}); refusing to "
                "send. Add the provider's CA to provider.ca_file — verification is never switched off"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with the provider failed: {cause}"
        cause = cause.__cause__ or cause.__context__
    return str(exc)


def batch_key(kind: str, records: Sequence[QueuedRecord]) -> str:
    h = hashlib.sha256(kind.encode())
    for r in records:
        h.update(b"\n" + r.record_id.encode())
    return "sg-" + h.hexdigest()[:48]


def select_batch(window: Sequence[QueuedRecord], limit: int) -> list[QueuedRecord]:
    """Records of the head's kind that may go now without overtaking an older record of the same pupil."""
    if not window:
        return []
    kind = window[0].kind
    blocked: set[str] = set()
    batch: list[QueuedRecord] = []
    for rec in window:
        if rec.kind == kind and rec.pupil_id not in blocked:
            batch.append(rec)
            if len(batch) >= limit:
                break
        else:
            blocked.add(rec.pupil_id)
    return batch


class CircuitBreaker:
    """closed → (N consecutive failures) → open → (reset_s) → half-open: one probe → closed or open."""

    def __init__(self, failures: int, reset_s: float) -> None:
        self.threshold, self.reset_s = failures, reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self._probe = asyncio.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset_s else "open"

    def wait_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_s - (time.monotonic() - self.opened_at))

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()


def _esia_reason(text: str) -> str:
    try:
        data = json.loads(text)
        return f"{data.get('error', '')}: {data.get('error_description', '')}"[:300]
    except ValueError:
        return text[:200]


def retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class Delivery:
    def __init__(
        self,
        cfg: AgentConfig,
        outbox: Outbox,
        registry: Registry,
        token_source: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.breaker = CircuitBreaker(cfg.delivery.breaker_failures, cfg.delivery.breaker_reset_s)
        self._session: aiohttp.ClientSession | None = None
        self.tokens = AccessTokens(cfg, self.session, registry)  # background single-flight refresh
        self._token_source = token_source or self.tokens.get
        self._wake = [asyncio.Event() for _ in range(outbox.partitions)]
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error: str | None = None
        outbox.listeners.append(self.notify)
        m = registry
        self.m_delivered = m.counter(
            "schoolgate_agent_records_delivered_total",
            "Records accepted by the provider (incl. duplicates).",
            ["kind"],
        )
        self.m_failed = m.counter(
            "schoolgate_agent_records_failed_total",
            "Delivery attempts that failed (4xx rejected, 5xx, network), in records.",
            ["kind"],
        )
        self.m_dead = m.counter(
            "schoolgate_agent_records_dead_total", "Records moved to the dead-letter table.", ["kind"]
        )
        self.m_batches = m.counter(
            "schoolgate_agent_delivery_batches_total", "Batches sent, by outcome.", ["outcome"]
        )
        self.m_latency = m.histogram("schoolgate_agent_delivery_seconds", "Provider round trip per batch.")
        m.gauge(
            "schoolgate_agent_circuit_open",
            "1 while the circuit breaker holds delivery.",
            lambda: 0.0 if self.breaker.state == "closed" else 1.0,
        )
        m.gauge(
            "schoolgate_agent_signing_certificate_days_left",
            "Days until the school's signing certificate (esia.signer.cert) expires.",
            self._cert_days_left,
        )
        m.gauge(
            "schoolgate_agent_token_seconds_left",
            "Seconds until the ESIA access token expires.",
            self.tokens.seconds_left,
        )

    def _cert_days_left(self) -> float:
        path = self.cfg.esia.signer.get("cert")
        if not path:
            return -1.0
        expiry = self._cert_expiry(path)
        return -1.0 if expiry is None else (expiry - time.time()) / 86400

    def _cert_expiry(self, path: str) -> float | None:
        """Expiry (epoch s) of the certificate at path; parsed again only when the file changes (a renewal
        replaces it), so a scrape right after the renewal already shows the new certificate."""
        try:
            st = os.stat(path)
        except OSError:
            return None  # unreadable: shows as an alert (-1) rather than as "fine"
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = getattr(self, "_cert_cache", None)
        if cached is None or cached[0] != key:
            from schoolgate.esia.certhash import certificate_info
            from schoolgate.esia.errors import EsiaError

            try:
                with open(path, "rb") as fh:
                    not_after = datetime.fromisoformat(certificate_info(fh.read())["not_after"])
                expiry: float | None = not_after.timestamp()
            except (OSError, ValueError, KeyError, EsiaError):  # a broken file must not break /metrics
                expiry = None
            self._cert_cache = (key, expiry)
            cached = self._cert_cache
        return cached[1]

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=make_ssl_context(self.cfg), limit=self.outbox.partitions + 2)
            timeout = aiohttp.ClientTimeout(total=self.cfg.provider.timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    def notify(self, part: int) -> None:
        self._wake[part].set()

    def start(self) -> None:
        for part in range(self.outbox.partitions):
            self._tasks.append(asyncio.create_task(self._run(part), name=f"delivery-{part}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._session is not None:
            await self._session.close()

    async def _run(self, part: int) -> None:
        attempt = 0
        window_size = self.cfg.delivery.batch_size * 2
        batch: list[QueuedRecord] = []
        while True:
            try:
                wait = self.breaker.wait_s()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                window = await self.outbox.fetch_queue(part, window_size)
                if not window:
                    self._wake[part].clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake[part].wait(), self.cfg.delivery.idle_poll_s)
                    continue
                batch = select_batch(window, self.cfg.delivery.batch_size)
                if self.breaker.state == "half-open":
                    async with self.breaker._probe:
                        await self._deliver(batch)
                else:
                    await self._deliver(batch)
                self.breaker.success()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except DeliveryError as exc:
                self.last_error = str(exc)
                self.m_failed.inc(len(batch), batch[0].kind)
                if exc.counts_for_breaker:
                    self.breaker.failure()
                attempt += 1
                delay = self._backoff(attempt)
                if exc.retry_after is not None:  # the provider's word, within our own ceiling
                    delay = min(max(exc.retry_after, 0.05), self.cfg.delivery.backoff_max_s)
                logs.warning(
                    "delivery.retry",
                    partition=part,
                    first_seq=batch[0].seq,
                    size=len(batch),
                    reason=str(exc)[:300],
                    retry_in_s=round(delay, 3),
                    breaker=self.breaker.state,
                )
                with contextlib.suppress(Exception):
                    await self.outbox.bump_attempts([r.seq for r in batch])
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug or the store failing: never kill the worker, never lose records
                self.last_error = f"{type(exc).__name__}: {exc}"
                logs.error("delivery.internal_error", partition=part, error=str(exc)[:300])
                attempt += 1
                await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        d = self.cfg.delivery
        cap = min(d.backoff_max_s, d.backoff_base_s * (2 ** min(attempt, 30)))
        return random.uniform(d.backoff_base_s / 2, cap)  # noqa: S311 - jitter, not crypto

    async def _deliver(self, batch: list[QueuedRecord]) -> None:
        """Send one batch; on a whole-batch 4xx split it to isolate the culprit(s)."""
        try:
            await self._send(batch)
        except PermanentReject as exc:
            if len(batch) == 1:
                rec = batch[0]
                await self.outbox.dead_letter(
                    [(rec.seq, rec.record_id, rec.kind, exc.status, exc.code, exc.message)]
                )
                self.m_dead.inc(1, rec.kind)
                logs.warning(
                    "delivery.dead_letter",
                    record_id=rec.record_id,
                    seq=rec.seq,
                    http_status=exc.status,
                    code=exc.code,
                    reason=exc.message[:300],
                )
                return
            mid = len(batch) // 2
            # Halves keep per-pupil order: the first half goes (or dies) before the second is tried.
            await self._deliver(batch[:mid])
            await self._deliver(batch[mid:])

    async def _send(self, batch: list[QueuedRecord], *, retried_auth: bool = False) -> None:
        kind = batch[0].kind
        body = b'{"records":[' + b",".join(r.payload for r in batch) + b"]}"
        url = f"{self.cfg.provider.base_url.rstrip('/')}/edu/v1/batches/{PROVIDER_PATH[kind]}"
        token = await self._token_source()
        headers = {
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": batch_key(kind, batch),
            "Content-Type": "application/json",
        }
        t0 = time.perf_counter()
        try:
            async with self.session().post(url, data=body, headers=headers) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
                retry_after = retry_after_s(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.m_batches.inc(1, "network")
            raise DeliveryError(
                explain_tls(exc)
                if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError)
                else f"provider unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self.m_latency.observe(time.perf_counter() - t0)
        if status == 200:
            self.m_batches.inc(1, "ok")
            await self._accepted(batch, text)
            return
        code, message = _provider_reason(text)
        if status == 401 and not retried_auth:
            self.tokens.invalidate(token)
            self.m_batches.inc(1, "unauthorized")
            await self._send(batch, retried_auth=True)
            return
        if status == 429:
            self.m_batches.inc(1, "throttled")
            raise DeliveryError(
                f"provider throttled: {code} {message}",
                retry_after=retry_after or 1.0,
                counts_for_breaker=False,
            )
        if status >= 500 or status in (401, 403, 408, 409):
            self.m_batches.inc(1, "error")
            raise DeliveryError(f"provider answered HTTP {status} {code}: {message}", retry_after=retry_after)
        self.m_batches.inc(1, "rejected")
        raise PermanentReject(status, code, message)

    async def _accepted(self, batch: list[QueuedRecord], text: str) -> None:
        try:
            data = json.loads(text)
            # Our record_ids are lower-case; a provider may echo them in another case (UUIDs are case-blind).
            rejected = {str(r["record_id"]).lower(): r for r in data.get("rejected", [])}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DeliveryError(f"provider answered 200 with an unreadable body: {exc}") from exc
        kind = batch[0].kind
        dead = [
            (
                r.seq,
                r.record_id,
                r.kind,
                200,
                str(rejected[r.record_id].get("code", "rejected")),
                str(rejected[r.record_id].get("message", ""))[:1000],
            )
            for r in batch
            if r.record_id in rejected
        ]
        ok = [r.seq for r in batch if r.record_id not in rejected]
        if dead:
            await self.outbox.dead_letter(dead)
            self.m_dead.inc(len(dead), kind)
            for d in dead[:100]:
                logs.warning("delivery.dead_letter", record_id=d[1], seq=d[0], code=d[4], reason=d[5][:300])
        if ok:
            await self.outbox.mark_delivered(ok)
            self.m_delivered.inc(len(ok), kind)
        logs.debug(
            "delivery.batch",
            kind=kind,
            first_seq=batch[0].seq,
            size=len(batch),
            rejected=len(dead),
            replayed=bool(data.get("replayed")),
        )


def _provider_reason(text: str) -> tuple[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        return "", text[:300]
    if not isinstance(data, dict):
        return "", text[:300]
    code = str(data.get("code") or data.get("error") or "")
    message = str(data.get("error_description") or data.get("message") or data.get("detail") or "")
    return code, message[:1000]
