"""The functional cases of the integration test. Each case records what it saw as steps and never raises:
a failure (wrong answer) or an error (exception, timeout) becomes the case's status and message, so one
broken case never hides the others and the report is always written."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from schoolgate.esia import contracts

from .http import Portal
from .report import ERROR, FAIL, SKIP, CaseResult
from .target import Target


class CaseFailed(AssertionError):
    """The system answered, but not as the acceptance criteria require."""


class CaseSkipped(Exception):
    """The case cannot run here (e.g. no browser); reported as skipped with the reason."""


def expect(cond: bool, case: CaseResult, text: str, why: str = "") -> None:
    case.step(text, bool(cond))
    if not cond:
        raise CaseFailed(why or text)


@dataclass
class Context:
    target: Target
    portal: Portal
    provider: aiohttp.ClientSession | None
    provider_token: str | None
    secret: bytes
    out_dir: Path
    browser: Any = None  # a selenium driver when the browser cases run
    shared: dict[str, Any] = field(default_factory=dict)


async def poll(
    fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout_s: float, what: str
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await fetch()
        if done(last):
            return last
        await asyncio.sleep(0.5)
    raise CaseFailed(f"{what}: not reached in {timeout_s:.0f} s (last: {str(last)[:200]})")


async def run_case(case_id: str, title: str, body: Callable[[CaseResult], Awaitable[None]]) -> CaseResult:
    case = CaseResult(case_id, title)
    started = time.monotonic()
    try:
        await body(case)
    except CaseSkipped as exc:
        case.status, case.message = SKIP, str(exc)
    except CaseFailed as exc:
        case.status, case.message = FAIL, str(exc)
    except TimeoutError as exc:
        case.status, case.message = FAIL, f"time-out: {exc}"
    except Exception as exc:  # the report must survive any failure of the system under test
        case.status, case.message = ERROR, f"{type(exc).__name__}: {exc}"[:500]
    case.duration_s = time.monotonic() - started
    return case


# ------------------------------------------------------------------------------------------ records
def grade_record(school_id: str, **override: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "record_id": str(uuid.uuid4()),
        "school_id": school_id,
        "pupil_id": "acc-" + uuid.uuid4().hex[:10],
        "subject": "Математика",
        "grade": 5,
        "date": dt.date.today().isoformat(),
        "teacher_id": "acc-teacher-1",
    }
    rec.update(override)
    return rec


def attendance_record(school_id: str, **override: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "record_id": str(uuid.uuid4()),
        "school_id": school_id,
        "pupil_id": "acc-" + uuid.uuid4().hex[:10],
        "date": dt.date.today().isoformat(),
        "lesson": 2,
        "status": "present",
    }
    rec.update(override)
    return rec


async def _provider_records(ctx: Context, ids: list[str]) -> list[dict[str, Any]]:
    assert ctx.provider is not None
    headers = {"Authorization": f"Bearer {ctx.provider_token}"}
    params = [("record_id", i) for i in ids] + [("limit", "10000")]
    url = ctx.target.provider_url.rstrip("/") + "/edu/v1/records"
    async with ctx.provider.get(url, params=params, headers=headers) as r:
        if r.status != 200:
            return []  # 5xx under fault injection: the poll tries again
        return list((await r.json())["records"])


async def _push(ctx: Context, case: CaseResult, kind: str, fmt: str, records: list[dict[str, Any]]) -> None:
    errors = contracts.validate(kind, {"records": records})
    expect(not errors, case, f"{len(records)} записей ({kind}) соответствуют контракту", str(errors[:3]))
    if fmt == "xml":
        body = contracts.records_to_xml(kind, records)
        expect(
            not contracts.validate(kind, body, "xml"), case, "XML-пакет соответствует контракту (XSD-поля)"
        )
        status, data, _ = await ctx.portal.call(
            "POST", f"/v1/batches/{kind}", body, content_type="application/xml"
        )
    else:
        status, data, _ = await ctx.portal.call("POST", f"/v1/batches/{kind}", {"records": records})
    expect(
        status == 202 and data.get("accepted") == len(records),
        case,
        f"POST /v1/batches/{kind} ({fmt.upper()}) → {status}, принято {data and data.get('accepted')}",
        f"the agent answered {status}: {str(data)[:300]}",
    )
    ids = [r["record_id"] for r in records]

    async def statuses() -> list[str]:
        out = []
        for rid in ids:
            s, d, _ = await ctx.portal.call("GET", f"/v1/records/status/{rid}")
            out.append(d.get("status") if s == 200 and isinstance(d, dict) else f"HTTP {s}")
        return out

    final = await poll(
        statuses,
        lambda st: all(x == "delivered" for x in st) or any(x == "dead" for x in st),
        ctx.target.timeout_s,
        "delivery to the provider",
    )
    expect(
        all(x == "delivered" for x in final),
        case,
        f"агент доставил все {len(ids)} записей поставщику",
        f"statuses: {sorted(set(final))}",
    )
    if ctx.provider is None or not ctx.provider_token:
        case.step("проверка на стороне поставщика пропущена: не задан адрес или токен поставщика")
        return
    stored = await poll(
        lambda: _provider_records(ctx, ids), lambda rows: len(rows) >= len(ids), 30, "records at the provider"
    )
    by_id = {row["record_id"]: row["record"] for row in stored}
    expect(
        len(by_id) == len(ids) == len(stored), case, f"поставщик хранит ровно {len(ids)} записей (без дублей)"
    )
    same = all(all(str(by_id[r["record_id"]].get(k)) == str(v) for k, v in r.items()) for r in records)
    expect(same, case, "содержимое у поставщика совпадает с отправленным")
    expect(
        not contracts.validate(kind, {"records": list(by_id.values())}),
        case,
        "записи у поставщика соответствуют контракту",
    )


async def case_push_json(ctx: Context, case: CaseResult) -> None:
    await _push(ctx, case, "grade", "json", [grade_record(ctx.target.school_id) for _ in range(10)])


async def case_push_xml(ctx: Context, case: CaseResult) -> None:
    await _push(ctx, case, "attendance", "xml", [attendance_record(ctx.target.school_id) for _ in range(10)])


async def case_negative(ctx: Context, case: CaseResult) -> None:
    good = grade_record(ctx.target.school_id)
    bad = grade_record(ctx.target.school_id, grade=7)
    status, data, _ = await ctx.portal.call("POST", "/v1/batches/grade", {"records": [good, bad]})
    fields_ = [e.get("field") for e in (data or {}).get("errors", [])] if isinstance(data, dict) else []
    expect(
        status == 422 and "records[1].grade" in fields_,
        case,
        f"оценка 7 → {status}, поле {fields_[:3]}",
        f"expected 422 naming records[1].grade, got {status} {fields_}",
    )
    s, _d, _ = await ctx.portal.call("GET", f"/v1/records/status/{good['record_id']}")
    expect(s == 404, case, f"пакет с ошибкой не сохранён ни частично (соседняя запись → {s})")
    xml = b"<records kind='grade'><record><record_id>x</record></records>"
    status, data, _ = await ctx.portal.call("POST", "/v1/batches/grade", xml, content_type="application/xml")
    expect(400 <= status < 500, case, f"испорченный XML → {status}", f"got {status}")
    status, data, _ = await ctx.portal.call(
        "POST", "/v1/records/attendance", attendance_record(ctx.target.school_id, status="sick")
    )
    fields_ = [e.get("field") for e in (data or {}).get("errors", [])] if isinstance(data, dict) else []
    expect(
        status == 422 and "status" in fields_,
        case,
        f"неизвестный статус посещения → {status}, поле {fields_}",
    )
    status, _, _ = await ctx.portal.call("POST", "/v1/batches/grade", {"records": [good]}, signed=False)
    expect(status == 401, case, f"запрос без подписи портала → {status}", f"got {status}")
    status, _, _ = await ctx.portal.call("POST", "/v1/batches/marks", {"records": [good]})
    expect(status == 404, case, f"неизвестный вид данных → {status}", f"got {status}")


# ------------------------------------------------------------------------------- справка, подпись
async def case_spravka(ctx: Context, case: CaseResult) -> None:
    t = ctx.target
    status, data, _ = await ctx.portal.call("GET", "/v1/services")
    codes = [s.get("code") for s in (data or {}).get("services", [])] if isinstance(data, dict) else []
    expect(
        status == 200 and t.document_service in codes,
        case,
        f"каталог услуг получен ({len(codes)} услуг), есть «{t.document_service}»",
        f"catalogue: HTTP {status}, codes {codes[:10]}",
    )
    status, data, _ = await ctx.portal.call(
        "POST", "/v1/documents", {"service": t.document_service, "oid": t.pupil_oid}
    )
    expect(status == 202, case, f"POST /v1/documents → {status}", f"HTTP {status}: {str(data)[:300]}")
    rid = data["request_id"]

    async def state() -> dict[str, Any]:
        s, d, _ = await ctx.portal.call("GET", f"/v1/documents/{rid}")
        return d if s == 200 and isinstance(d, dict) else {"status": f"HTTP {s}"}

    final = await poll(state, lambda d: d.get("status") in ("ready", "failed"), t.timeout_s, "справка ready")
    expect(final["status"] == "ready", case, f"справка готова (статус {final['status']})", str(final)[:300])
    expect(final.get("signature_verified") is True, case, "подпись поставщика под справкой проверена агентом")
    status, _, raw = await ctx.portal.call("GET", f"/v1/documents/{rid}/content")
    expect(status == 200 and len(raw) > 0, case, f"документ получен ({len(raw)} байт)")
    from schoolgate.esia.contracts import parse_xml

    parse_xml(raw)  # the document is well-formed XML (the safe parser raises otherwise)
    case.step("документ — корректный XML")
    ctx.shared["document"] = raw


async def case_parent_signing(ctx: Context, case: CaseResult) -> None:
    from selenium.webdriver.common.by import By

    from schoolgate.esia.verify import verify_cms_detached

    from .browser import wait_for

    if ctx.browser is None:
        raise CaseSkipped("браузер недоступен")
    document = ctx.shared.get("document") or (
        "<?xml version='1.0' encoding='utf-8'?><document><title>Согласие</title></document>".encode()
    )
    status, data, _ = await ctx.portal.call(
        "POST",
        "/v1/signing-sessions",
        {
            "document": base64.b64encode(document).decode(),
            "document_name": "spravka.xml",
            "signer_oid": ctx.target.parent_oid,
        },
    )
    expect(status == 201, case, f"POST /v1/signing-sessions → {status}", f"HTTP {status}: {str(data)[:300]}")
    sid, sign_url = data["session_id"], data["sign_url"]
    driver = ctx.browser

    def browse() -> None:
        driver.get(sign_url)
        wait_for(lambda: driver.find_element(By.ID, "sign"), 30, "signing page")

    await asyncio.to_thread(browse)
    expect("spravka.xml" in driver.page_source, case, "страница подписания у поставщика показывает документ")
    await asyncio.to_thread(lambda: driver.find_element(By.ID, "sign").click())
    await asyncio.to_thread(
        wait_for, lambda: driver.find_element(By.ID, "status").text == "signed", 30, "signed in the browser"
    )
    case.step("родитель нажал «Подписать» в браузере, статус — signed")
    shot = _screenshot(ctx, driver, "parent_signing")
    case.artifacts["страница подписания"] = shot

    async def state() -> dict[str, Any]:
        s, d, _ = await ctx.portal.call("GET", f"/v1/signing-sessions/{sid}")
        return d if s == 200 and isinstance(d, dict) else {"status": f"HTTP {s}"}

    final = await poll(
        state, lambda d: d.get("status") in ("signed", "failed", "rejected"), ctx.target.timeout_s, "signed"
    )
    expect(
        final["status"] == "signed" and final.get("signature_verified") is True,
        case,
        f"агент получил подпись и проверил её (статус {final['status']})",
        str(final)[:300],
    )
    status, _, cms = await ctx.portal.call("GET", f"/v1/signing-sessions/{sid}/signature")
    expect(status == 200 and len(cms) > 0, case, f"подпись CMS получена ({len(cms)} байт)")
    verify_cms_detached(cms, document)
    case.step("подпись CMS проверена независимо (ядро ЕСИА) по исходному документу")


def _screenshot(ctx: Context, driver: Any, name: str) -> str:
    shots = ctx.out_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shots / f"{name}.png"))
    return f"screenshots/{name}.png"


async def case_esia_login(ctx: Context, case: CaseResult) -> None:
    from selenium.webdriver.common.by import By

    from schoolgate.agent.esia_login import verify_assertion

    from .browser import wait_for

    if ctx.browser is None:
        raise CaseSkipped("браузер недоступен")
    t, driver = ctx.target, ctx.browser
    start = t.api + "/esia/login?return_to=/acceptance"

    def login() -> str:
        driver.get(start)
        wait_for(lambda: driver.find_element(By.ID, t.login_user_element), 30, "ESIA login page")
        return str(driver.current_url)

    try:
        login_url = await asyncio.to_thread(login)
    except TimeoutError:
        body = driver.find_element(By.TAG_NAME, "body").text[:300]
        raise CaseFailed(f"no ESIA login page after {start}: the portal answered {body!r}") from None
    expect(
        "/aas/oauth2/v2/ac" in login_url and "Госуслуги" in driver.page_source,
        case,
        f"портал перенаправил на страницу входа ЕСИА ({urlsplit(login_url).hostname})",
    )
    case.artifacts["страница входа ЕСИА"] = _screenshot(ctx, driver, "esia_login_page")
    await asyncio.to_thread(lambda: driver.find_element(By.ID, t.login_user_element).click())

    def landed() -> str | None:
        url = str(driver.current_url)
        if "assertion=" in url:
            return url
        if "/esia/callback" in url and '"assertion"' in driver.page_source:
            return url
        return None

    try:
        back = await asyncio.to_thread(wait_for, landed, 60, "return to the portal with the assertion")
    except TimeoutError:
        url = str(driver.current_url)
        _screenshot(ctx, driver, "esia_login_return")
        raise CaseFailed(
            f"after the ESIA login the browser is at {urlsplit(url).scheme}://{urlsplit(url).netloc}"
            f"{urlsplit(url).path} without an identity assertion: the agent's esia.redirect_uri must be "
            f"routed to the agent (under {t.api_prefix or '/'}), and the agent must answer the callback "
            f"(page: {driver.title or 'no title'})"
        ) from None
    case.step(f"после входа браузер вернулся на портал ({urlsplit(back).hostname})")
    if "#assertion=" in back:
        token = parse_qs(urlsplit(back).fragment)["assertion"][0]
    else:
        import json

        body = driver.find_element(By.TAG_NAME, "body").text
        token = json.loads(body)["assertion"]
    claims = verify_assertion(ctx.secret, token)
    expect(
        claims.get("sub") == t.pupil_oid and claims.get("return_to") == "/acceptance",
        case,
        "подтверждение личности подписано агентом, пользователь — тестовый ученик",
        f"claims sub={claims.get('sub')} return_to={claims.get('return_to')}",
    )


CASES: tuple[tuple[str, str, Callable[[Context, CaseResult], Awaitable[None]]], ...] = (
    ("esia_login", "Вход на портал через ЕСИА (Госуслуги) в браузере", case_esia_login),
    ("spravka", "Ученик запрашивает справку", case_spravka),
    ("parent_signing", "Родитель подписывает электронный документ", case_parent_signing),
    ("push_json", "Передача оценок в формате JSON", case_push_json),
    ("push_xml", "Передача посещаемости в формате XML", case_push_xml),
    ("negative", "Ошибочные данные отклоняются с указанием поля", case_negative),
)
