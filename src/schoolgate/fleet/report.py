"""Fleet reports: a console table, JSON for machines, HTML for people at the regional center (Russian)."""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from schoolgate.fleet.state import STATUS_RU, STATUSES, RolloutState, SchoolRow, _atomic_write, now_iso

STAGE_RU = {
    "connect": "подключение",
    "base": "базовая настройка",
    "provider": "стенд поставщика",
    "tls": "TLS",
    "signing_cert": "сертификат ЭП",
    "registration": "регистрация сервиса",
    "agent": "агент интеграции",
    "monitoring": "мониторинг",
    "backup": "резервное копирование",
}
WAVE_RU = {
    "passed": "пройдена",
    "stopped": "остановлена",
    "not_started": "не начата",
    "pending": "ожидает",
    "running": "идёт",
}


def totals(rows: list[SchoolRow]) -> dict[str, int]:
    c = Counter(r.status for r in rows)
    return {s: c.get(s, 0) for s in STATUSES}


def report_dict(state: RolloutState, rows: list[SchoolRow]) -> dict[str, Any]:
    return {
        "kind": "schoolgate-fleet-report",
        "generated": now_iso(),
        "inventory": state.inventory,
        "mode": state.mode,
        "stages": state.stages or ["all"],
        "started": state.started,
        "stopped_at": state.stopped_at,
        "waves": [
            {
                "name": w.name,
                "schools": len(w.hosts),
                "max_fail_percentage": w.max_fail_percentage,
                "status": w.status,
                "failed": w.failed,
            }
            for w in state.waves
        ],
        "totals": totals(rows),
        "schools": [asdict(r) for r in rows],
    }


def table(rows: list[SchoolRow], width: int = 70) -> str:
    """Plain-text table, failed schools first, then by name."""
    order = {s: i for i, s in enumerate(("failed", "unreachable", "not_finished", "not_reached", "ok"))}
    lines = [f"{'school':<14} {'wave':<8} {'status':<13} {'stage':<13} {'chg':>4}  message"]
    for r in sorted(rows, key=lambda r: (order.get(r.status, 9), r.school)):
        msg = (f"{r.failed_task}: {r.message}" if r.failed_task else r.message).replace("\n", " ")
        if len(msg) > width:
            msg = msg[: width - 1] + "…"
        lines.append(f"{r.school:<14} {r.wave:<8} {r.status:<13} {r.stage_reached:<13} {r.changed:>4}  {msg}")
    t = totals(rows)
    lines.append(" | ".join(f"{k} {v}" for k, v in t.items()))
    return "\n".join(lines)


_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%;margin-top:.8em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.st{font-weight:600;white-space:nowrap}
tr.ok .st{color:#17692e}tr.failed .st,tr.unreachable .st{color:#b00020}
tr.not_finished .st{color:#a65b00}tr.not_reached .st{color:#666}
.filters label{display:inline-block;margin:.2em .4em .2em 0;padding:.25em .7em;border:1px solid #999;
border-radius:1em;cursor:pointer}input[name=f]{position:absolute;opacity:0}
table.schools td:first-child{white-space:nowrap}
.msg{font-family:ui-monospace,monospace;font-size:.9em;white-space:pre-wrap;max-width:48em}
.sum span{margin-right:1.2em}.waves td,.waves th{font-size:.95em}
"""


def _filter_css() -> str:
    rules = [
        f"#f-{s}:checked~.filters label[for=f-{s}]{{background:#222;color:#fff}}"
        f"#f-{s}:checked~table.schools tbody tr:not(.{s}){{display:none}}"
        for s in STATUSES
    ]
    rules.append("#f-all:checked~.filters label[for=f-all]{background:#222;color:#fff}")
    return "\n".join(rules)


def render_html(report: dict[str, Any]) -> str:
    e = html.escape
    t = report["totals"]
    n = sum(t.values())
    mode = "проверка (без изменений)" if report["mode"] == "check" else "выкатка"
    stages = ", ".join(STAGE_RU.get(s, s) for s in report["stages"]) if report["stages"] != ["all"] else "все"
    out = [
        "<!DOCTYPE html><html lang='ru'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>Школы региона: {e(mode)}</title><style>{_CSS}{_filter_css()}</style></head><body>",
        f"<h1>Подключение школ: {e(mode)}</h1>",
        f"<p>Инвентарь: {e(report['inventory'])}. Этапы: {e(stages)}. Начато: {e(report['started'])}, "
        f"отчёт: {e(report['generated'])}.</p>",
        "<p class='sum'>"
        + f"<span>Всего школ: <b>{n}</b></span>"
        + "".join(f"<span>{e(STATUS_RU[s])}: <b>{t[s]}</b></span>" for s in STATUSES)
        + "</p>",
    ]
    if report.get("stopped_at"):
        out.append(
            f"<p><b>Выкатка остановлена на волне «{e(report['stopped_at'])}»</b>: "
            "слишком много школ с ошибкой. "
            "Исправьте причину и запустите <code>schoolgate fleet resume</code>.</p>"
        )
    if report["waves"]:
        out.append(
            "<table class='waves'><thead><tr><th>Волна</th><th>Школ</th><th>Допустимо ошибок</th>"
            "<th>Итог</th><th>С ошибкой</th></tr></thead><tbody>"
        )
        for w in report["waves"]:
            out.append(
                f"<tr><td>{e(w['name'])}</td><td>{w['schools']}</td><td>{w['max_fail_percentage']}%</td>"
                f"<td>{e(WAVE_RU.get(w['status'], w['status']))}</td>"
                f"<td>{e(', '.join(w['failed']))}</td></tr>"
            )
        out.append("</tbody></table>")
    out.append("<h2>Школы</h2>")
    out.append("<input type='radio' name='f' id='f-all' checked>")
    out += [f"<input type='radio' name='f' id='f-{s}'>" for s in STATUSES]
    out.append("<div class='filters'>Показать: <label for='f-all'>все</label>")
    out += [f"<label for='f-{s}'>{e(STATUS_RU[s])} ({t[s]})</label>" for s in STATUSES]
    out.append("</div>")
    out.append(
        "<table class='schools'><thead><tr><th>Школа</th><th>Муниципалитет</th><th>Волна</th>"
        "<th>Состояние</th><th>Этап</th><th>Изменений</th><th>Что случилось</th></tr></thead><tbody>"
    )
    for r in report["schools"]:
        stage = STAGE_RU.get(r["stage_reached"], r["stage_reached"]) or "—"
        what = ""
        if r["failed_task"]:
            what = f"Шаг «{r['failed_task']}»: {r['message']}"
        elif r["status"] == "not_reached":
            what = "Школа ещё не обрабатывалась (волна не начата или остановлена)."
        elif r["status"] == "not_finished":
            what = "Обработка прервана до завершения (остановка волны)."
        out.append(
            f"<tr class='{e(r['status'])}'><td>{e(r['school'])}"
            + (f"<br><small>{e(r['school_id'])}</small>" if r["school_id"] != r["school"] else "")
            + f"</td><td>{e(r['municipality'])}</td><td>{e(r['wave'])}</td>"
            f"<td class='st'>{e(STATUS_RU.get(r['status'], r['status']))}</td><td>{e(stage)}</td>"
            f"<td>{r['changed']}</td><td class='msg'>{e(what)}</td></tr>"
        )
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def write_reports(out_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    base = "fleet-plan" if report["mode"] == "check" else "fleet-report"
    jpath, hpath = out_dir / f"{base}.json", out_dir / f"{base}.html"
    _atomic_write(jpath, json.dumps(report, ensure_ascii=False, indent=1))
    _atomic_write(hpath, render_html(report))
    return jpath, hpath
