"""Run the integration test against one school: functional cases, then load; write JSON, JUnit, HTML."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from . import report as rep
from .http import Portal, make_session
from .load import LoadRun
from .scenarios import CASES, Context, run_case
from .target import Target


def _read_secret(path: str) -> bytes:
    return Path(path).read_bytes().strip()


async def run(
    target: Target,
    out_dir: Path,
    *,
    cases: list[str] | None = None,
    load_clients: int = 200,
    load_seconds: float = 0.0,
    load_mix: dict[str, float] | None = None,
    p95_limit_s: float = 2.0,
    log: Any = print,
) -> rep.Report:
    target.check()
    started = time.monotonic()
    report = rep.Report(target=target.public())
    out_dir.mkdir(parents=True, exist_ok=True)
    secret = _read_secret(target.hmac_secret_file)
    token = _read_secret(target.provider_token_file).decode() if target.provider_token_file else None
    selected = [c for c in CASES if cases is None or c[0] in cases]
    async with contextlib.AsyncExitStack() as stack:
        portal_session = await stack.enter_async_context(make_session(target))
        provider_session = None
        if target.provider_url:
            provider_session = await stack.enter_async_context(
                make_session(target, ca_file=target.provider_ca_file or target.ca_file)
            )
        ctx = Context(
            target=target,
            portal=Portal(target, portal_session, secret),
            provider=provider_session,
            provider_token=token,
            secret=secret,
            out_dir=out_dir,
        )
        browser_error = ""
        if target.browser and any(c[0] in ("esia_login", "parent_signing") for c in selected):
            from .browser import BrowserUnavailable, chromium

            try:
                ctx.browser = stack.enter_context(
                    chromium(
                        ca_files=[c for c in (target.ca_file, target.provider_ca_file) if c],
                        resolve=target.resolve,
                    )
                )
            except BrowserUnavailable as exc:
                browser_error = str(exc)
            except Exception as exc:  # chromedriver failing to start must not cost the other cases
                browser_error = f"Chromium did not start: {type(exc).__name__}: {exc}"[:300]
        for case_id, title, body in selected:
            result = await run_case(case_id, title, lambda c, b=body: b(ctx, c))
            if result.status == rep.SKIP and browser_error:
                result.message = f"{result.message}: {browser_error}"
            report.cases.append(result)
            log(
                f"  {rep.STATUS_RU[result.status]:>18}  {title} ({result.duration_s:.1f} s)"
                + (f" — {result.message}" if result.message else "")
            )
    if load_seconds > 0:
        log(f"  нагрузка: {load_clients} клиентов, {load_seconds:.0f} с ...")
        try:
            report.load = await LoadRun(
                target,
                secret,
                clients=load_clients,
                seconds=load_seconds,
                mix=load_mix,
                p95_limit_s=p95_limit_s,
            ).run()
        except Exception as exc:  # the report must survive a load run that cannot even start
            report.load = rep.LoadResult(clients=load_clients, duration_s=0.0, p95_limit_s=p95_limit_s)
            report.load.passed = False
            report.load.reasons.append(f"нагрузочный тест не выполнен: {type(exc).__name__}: {exc}"[:500])
        ld = report.load
        log(
            f"  нагрузка: {ld.requests} запросов, {ld.rate_rps:.1f}/с, p50 {ld.p50_s:.3f} с, "
            f"p95 {ld.p95_s:.3f} с, p99 {ld.p99_s:.3f} с, 5xx {ld.errors_5xx}, "
            f"прочие ошибки {ld.errors_other}"
        )
    report.duration_s = time.monotonic() - started
    return report
