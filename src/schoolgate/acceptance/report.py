"""The integration test's result model and its three renderings: JSON, JUnit XML and an HTML page.

The HTML is for school and regional staff (Russian text), self-contained: inline CSS, no scripts, no external
assets, so it opens from a file share and renders the same offline.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import platform
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PASS, FAIL, ERROR, SKIP = "passed", "failed", "error", "skipped"
STATUS_RU = {PASS: "успешно", FAIL: "не пройдено", ERROR: "ошибка выполнения", SKIP: "пропущено"}


@dataclass
class Step:
    """One observable fact inside a case ("POST /api/v1/documents → 202")."""

    text: str
    ok: bool = True


@dataclass
class CaseResult:
    case_id: str
    title: str  # Russian, for staff
    status: str = PASS
    duration_s: float = 0.0
    steps: list[Step] = field(default_factory=list)
    message: str = ""  # why it failed; never carries secrets or pupils' data
    artifacts: dict[str, str] = field(default_factory=dict)  # name → relative path (screenshots)

    def step(self, text: str, ok: bool = True) -> None:
        self.steps.append(Step(text, ok))


@dataclass
class LoadResult:
    clients: int
    duration_s: float
    requests: int = 0
    rate_rps: float = 0.0
    p50_s: float = 0.0
    p95_s: float = 0.0
    p99_s: float = 0.0
    max_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # "202" → n, "connection" → n
    by_operation: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors_5xx: int = 0
    errors_other: int = 0  # 4xx, connection and timeout failures
    p95_limit_s: float = 2.0
    passed: bool = True
    reasons: list[str] = field(default_factory=list)


@dataclass
class Report:
    target: dict[str, str]
    cases: list[CaseResult] = field(default_factory=list)
    load: LoadResult | None = None
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    duration_s: float = 0.0
    machine: dict[str, str] = field(
        default_factory=lambda: {"host": platform.node(), "python": platform.python_version()}
    )

    @property
    def passed(self) -> bool:
        return (
            bool(self.cases or self.load)
            and all(c.status == PASS for c in self.cases)
            and (self.load is None or self.load.passed)
        )

    def totals(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, ERROR: 0, SKIP: 0}
        for c in self.cases:
            out[c.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "schoolgate-acceptance/1",
            "passed": self.passed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "target": self.target,
            "machine": self.machine,
            "totals": self.totals(),
            "cases": [asdict(c) for c in self.cases],
            "load": asdict(self.load) if self.load else None,
        }


def to_json(report: Report) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)


def to_junit(report: Report) -> bytes:
    suites = ET.Element("testsuites", name="schoolgate acceptance")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"acceptance {report.target.get('school', '')}".strip(),
        timestamp=report.started_at,
        time=f"{report.duration_s:.3f}",
    )
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def add(name: str, title: str, status: str, seconds: float, message: str, out: str) -> None:
        counts["tests"] += 1
        tc = ET.SubElement(suite, "testcase", classname="acceptance", name=name, time=f"{seconds:.3f}")
        if status == FAIL:
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=message[:500]).text = message
        elif status == ERROR:
            counts["errors"] += 1
            ET.SubElement(tc, "error", message=message[:500]).text = message
        elif status == SKIP:
            counts["skipped"] += 1
            ET.SubElement(tc, "skipped", message=message[:500])
        ET.SubElement(tc, "system-out").text = f"{title}\n{out}"

    for c in report.cases:
        add(
            c.case_id,
            c.title,
            c.status,
            c.duration_s,
            c.message,
            "\n".join(("OK  " if s.ok else "FAIL ") + s.text for s in c.steps),
        )
    if report.load is not None:
        ld = report.load
        add(
            "load",
            f"Нагрузка: {ld.clients} одновременных клиентов",
            PASS if ld.passed else FAIL,
            ld.duration_s,
            "; ".join(ld.reasons),
            f"requests={ld.requests} rate={ld.rate_rps:.1f}/s p50={ld.p50_s:.3f}s p95={ld.p95_s:.3f}s "
            f"p99={ld.p99_s:.3f}s 5xx={ld.errors_5xx} other_errors={ld.errors_other}",
        )
    for k, v in counts.items():
        suite.set(k, str(v))
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:2em;color:#1b1b1b;max-width:70em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.verdict{padding:.8em 1em;border-radius:4px;font-weight:bold}
.ok{background:#e3f4e1;color:#1d5e17}.bad{background:#fbe3e1;color:#8a1c12}.skip{background:#eee;color:#555}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
ul.steps{margin:.2em 0;padding-left:1.2em}ul.steps li.fail{color:#8a1c12;font-weight:bold}
.small{color:#555;font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cls(status: str) -> str:
    return {PASS: "ok", SKIP: "skip"}.get(status, "bad")


def to_html(report: Report) -> str:
    t = report.totals()
    verdict = "Приёмочные испытания пройдены" if report.passed else "Приёмочные испытания НЕ пройдены"
    rows = []
    for c in report.cases:
        steps = "".join(f'<li class="{"ok" if s.ok else "fail"}">{_e(s.text)}</li>' for s in c.steps)
        shots = "".join(
            f'<div class="small">Снимок экрана: <a href="{_e(p)}">{_e(n)}</a></div>'
            for n, p in c.artifacts.items()
        )
        msg = f"<div><b>Причина:</b> {_e(c.message)}</div>" if c.message else ""
        rows.append(
            f'<tr><td>{_e(c.title)}<div class="small">{_e(c.case_id)}</div></td>'
            f'<td class="{_cls(c.status)}">{_e(STATUS_RU[c.status])}</td>'
            f'<td class="num">{c.duration_s:.2f}&nbsp;с</td>'
            f'<td>{msg}<ul class="steps">{steps}</ul>{shots}</td></tr>'
        )
    load_html = "<p>Нагрузочный тест не запускался.</p>"
    if report.load is not None:
        ld = report.load
        ops = "".join(
            f"<tr><td>{_e(op)}</td><td class='num'>{d.get('requests', 0)}</td>"
            f"<td class='num'>{d.get('p95_s', 0):.3f}&nbsp;с</td>"
            f"<td class='num'>{d.get('errors_5xx', 0)}</td>"
            f"<td class='num'>{d.get('errors_other', 0)}</td></tr>"
            for op, d in sorted(ld.by_operation.items())
        )
        statuses = ", ".join(f"{_e(k)}: {v}" for k, v in sorted(ld.statuses.items()))
        reasons = "".join(f"<li>{_e(r)}</li>" for r in ld.reasons)
        load_verdict = "Нагрузка выдержана" if ld.passed else "Нагрузка НЕ выдержана"
        load_html = f"""
<div class="verdict {"ok" if ld.passed else "bad"}">{load_verdict}</div>
{f"<ul>{reasons}</ul>" if reasons else ""}
<table>
<tr><th>Одновременных клиентов</th><td class="num">{ld.clients}</td></tr>
<tr><th>Длительность</th><td class="num">{ld.duration_s:.1f}&nbsp;с</td></tr>
<tr><th>Запросов</th><td class="num">{ld.requests}</td></tr>
<tr><th>Скорость</th><td class="num">{ld.rate_rps:.1f} запросов/с</td></tr>
<tr><th>Время ответа p50 / p95 / p99</th>
<td class="num">{ld.p50_s:.3f} / {ld.p95_s:.3f} / {ld.p99_s:.3f}&nbsp;с</td></tr>
<tr><th>Максимум</th><td class="num">{ld.max_s:.3f}&nbsp;с</td></tr>
<tr><th>Допустимое p95</th><td class="num">{ld.p95_limit_s:.1f}&nbsp;с</td></tr>
<tr><th>Ошибки 5xx</th><td class="num">{ld.errors_5xx}</td></tr>
<tr><th>Прочие ошибки (4xx, соединение, таймаут)</th><td class="num">{ld.errors_other}</td></tr>
<tr><th>Коды ответов</th><td>{statuses}</td></tr>
</table>
<table><tr><th>Операция</th><th>Запросов</th><th>p95</th><th>5xx</th><th>Прочие ошибки</th></tr>
{ops}</table>"""
    target = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in report.target.items())
    return f"""<!DOCTYPE html>
<html lang="ru"><head><meta charset="utf-8">
<title>Приёмочные испытания: {_e(report.target.get("school", ""))}</title>
<style>{_CSS}</style></head>
<body>
<h1>Приёмочные испытания школы {_e(report.target.get("school", ""))}</h1>
<div class="verdict {"ok" if report.passed else "bad"}" id="verdict">{verdict}</div>
<p>Начало: {_e(report.started_at)}; длительность {report.duration_s:.1f}&nbsp;с.
Сценариев: успешно {t[PASS]}, не пройдено {t[FAIL]}, ошибок выполнения {t[ERROR]}, пропущено {t[SKIP]}.</p>
<h2>Объект испытаний</h2><table>{target}</table>
<h2>Сценарии</h2>
<table id="cases"><tr><th>Сценарий</th><th>Результат</th><th>Время</th><th>Подробности</th></tr>
{"".join(rows)}
</table>
<h2>Нагрузочный тест</h2>
<div id="load">{load_html}</div>
<p class="small">Отчёт сформирован schoolgate на {_e(report.machine.get("host", ""))}.
Отчёт не содержит персональных данных, токенов и ключей.</p>
</body></html>
"""


def write_reports(report: Report, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "acceptance.json",
        "junit": out_dir / "acceptance.junit.xml",
        "html": out_dir / "acceptance.html",
    }
    paths["json"].write_text(to_json(report) + "\n", encoding="utf-8")
    paths["junit"].write_bytes(to_junit(report))
    paths["html"].write_text(to_html(report), encoding="utf-8")
    return paths
