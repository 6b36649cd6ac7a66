"""Fleet reports from evaluated evidence: JSON (machine-readable, trend baseline), JUnit XML, HTML."""

from __future__ import annotations

import datetime as dt
import html
import json
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schoolgate.audit.catalogue import Check
from schoolgate.audit.evaluate import FAILING, Result

STATUSES = ("pass", "fail", "error", "waived", "skipped")
STATUS_RU = {
    "pass": "соответствует",
    "fail": "нарушение",
    "error": "нет данных",
    "waived": "исключение",
    "skipped": "пропущено",
}


class EvidenceError(ValueError):
    """An evidence file is unusable; the message names the file."""


def _security_keys(data: dict[str, Any]) -> list[str]:
    updates = (data.get("facts") or {}).get("updates") or {}
    details = updates.get("security_details") or [{"package": n} for n in updates.get("security") or []]
    return [f"{d.get('package')}={d.get('candidate', '')}" for d in details]


def load_evidence(paths: list[Path]) -> list[dict[str, Any]]:
    """Evidence files from files/directories; per host only the newest collection is kept.

    The older files of a host are its history: `update_first_seen` records, per pending security update
    (package=candidate version), the earliest collection that listed it - the age SEC-UPDATES judges.
    """
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    newest: dict[str, dict[str, Any]] = {}
    first_seen: dict[str, dict[str, str]] = defaultdict(dict)
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"{f}: cannot read evidence: {exc}") from exc
        if not isinstance(data, dict) or data.get("kind") != "schoolgate-audit-evidence":
            continue  # report files and other JSON living in the same directory
        if not data.get("host") or not data.get("collected_at"):
            raise EvidenceError(f"{f}: evidence without 'host' or 'collected_at'")
        data["_file"] = str(f)
        host, collected = str(data["host"]), str(data["collected_at"])
        seen = first_seen[host]
        for key in _security_keys(data):
            if key not in seen or collected < seen[key]:
                seen[key] = collected
        if host not in newest or collected > str(newest[host]["collected_at"]):
            newest[host] = data
    for host, data in newest.items():
        current = set(_security_keys(data))
        data["update_first_seen"] = {k: v for k, v in first_seen[host].items() if k in current}
    return [newest[h] for h in sorted(newest)]


@dataclass
class FleetReport:
    generated_at: str
    checks: list[Check]
    results: list[Result]
    evidence: list[dict[str, Any]]
    previous: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return any(r.failing for r in self.results)

    def by_host(self) -> dict[str, list[Result]]:
        out: dict[str, list[Result]] = defaultdict(list)
        for r in self.results:
            out[r.host].append(r)
        return dict(sorted(out.items()))

    def totals(self) -> dict[str, int]:
        c = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in STATUSES}

    def trend(self) -> dict[str, Any]:
        if not self.previous:
            return {"previous": None, "new_failures": [], "fixed": []}
        before = {(r["host"], r["check"]): r["status"] for r in self.previous.get("results", [])}
        new_failures, fixed = [], []
        for r in self.results:
            prev = before.get((r.host, r.check.id))
            if r.failing and prev is not None and prev not in FAILING:
                new_failures.append({"host": r.host, "check": r.check.id, "was": prev})
            if not r.failing and prev in FAILING:
                fixed.append({"host": r.host, "check": r.check.id, "now": r.status})
        return {
            "previous": self.previous.get("generated_at"),
            "previous_totals": self.previous.get("totals"),
            "new_failures": new_failures,
            "fixed": fixed,
        }

    def by_measure(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in self.results:
            for m in r.check.measures:
                entry = out.setdefault(m, {"checks": set(), "failing_hosts": set(), "counts": Counter()})
                entry["checks"].add(r.check.id)
                entry["counts"][r.status] += 1
                if r.failing:
                    entry["failing_hosts"].add(r.host)
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        measures = {
            m: {
                "checks": sorted(e["checks"]),
                "failing_hosts": sorted(e["failing_hosts"]),
                "counts": dict(e["counts"]),
            }
            for m, e in self.by_measure().items()
        }
        return {
            "kind": "schoolgate-audit-report",
            "schema": 1,
            "generated_at": self.generated_at,
            "failed": self.failed,
            "totals": self.totals(),
            "hosts": {
                h: {
                    "collected_at": ev.get("collected_at"),
                    "evidence_file": ev.get("_file"),
                    "school_id": ev.get("school_id"),
                    "totals": dict(Counter(r.status for r in self.by_host().get(h, []))),
                }
                for h, ev in ((str(e["host"]), e) for e in self.evidence)
            },
            "checks": [c.as_dict() for c in self.checks],
            "measures": measures,
            "trend": self.trend(),
            "results": [r.as_dict() for r in self.results],
        }


def find_previous(out_dir: Path) -> dict[str, Any] | None:
    reports = sorted(out_dir.glob("audit-report-*.json"))
    if not reports:
        return None
    try:
        data = json.loads(reports[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == "schoolgate-audit-report" else None


def to_junit(report: FleetReport) -> bytes:
    suites = ET.Element("testsuites", name="schoolgate-audit", time="0")
    for host, results in report.by_host().items():
        fails = sum(1 for r in results if r.status == "fail")
        errors = sum(1 for r in results if r.status == "error")
        skipped = sum(1 for r in results if r.status in ("waived", "skipped"))
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=host,
            tests=str(len(results)),
            failures=str(fails),
            errors=str(errors),
            skipped=str(skipped),
            timestamp=report.generated_at,
        )
        for r in results:
            case = ET.SubElement(
                suite, "testcase", classname=f"audit.{host}", name=f"{r.check.id} {r.check.title_en}"
            )
            measures = ", ".join(r.check.measures)
            if r.status == "fail":
                el = ET.SubElement(case, "failure", message=r.detail, type="violation")
                el.text = f"measures: {measures}\nremediation: {r.check.remediation.get('playbook')}"
            elif r.status == "error":
                el = ET.SubElement(case, "error", message=r.detail, type="no-evidence")
                el.text = f"measures: {measures}"
            elif r.status == "waived" and r.waiver is not None:
                ET.SubElement(
                    case,
                    "skipped",
                    message=(
                        f"waived until {r.waiver.expires.isoformat()} by {r.waiver.owner}: "
                        f"{r.waiver.justification}"
                    ),
                )
            elif r.status == "skipped":
                ET.SubElement(case, "skipped", message=r.detail)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


_CSS = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.25em .5em;vertical-align:top;text-align:left}
.pass{background:#dfd}.fail{background:#fcc}.error{background:#fdb}.waived{background:#eef}.skipped{background:#eee}"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def to_html(report: FleetReport) -> str:
    d = report.as_dict()
    t = d["totals"]
    parts = [
        f"<!DOCTYPE html><html lang='ru'><head><meta charset='utf-8'><title>Аудит schoolgate "
        f"{_e(report.generated_at)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Аудит соответствия schoolgate / compliance audit</h1><p>Сформирован {_e(report.generated_at)}. "
        f"Итог: <b>{'есть нарушения' if report.failed else 'нарушений нет'}</b></p>",
        "<h2>Сводка по школам / fleet summary</h2><table><tr><th>Школа / host</th><th>Данные собраны</th>"
        + "".join(f"<th class='{s}'>{_e(STATUS_RU[s])}</th>" for s in STATUSES)
        + "</tr>",
    ]
    for host, results in report.by_host().items():
        c = Counter(r.status for r in results)
        parts.append(
            f"<tr><td><a href='#host-{_e(host)}'>{_e(host)}</a></td>"
            f"<td>{_e(d['hosts'].get(host, {}).get('collected_at', ''))}</td>"
            + "".join(f"<td class='{s if c.get(s) else ''}'>{c.get(s, 0)}</td>" for s in STATUSES)
            + "</tr>"
        )
    parts.append(
        "<tr><th>Всего</th><td></td>" + "".join(f"<th>{t[s]}</th>" for s in STATUSES) + "</tr></table>"
    )

    tr = d["trend"]
    parts.append("<h2>Динамика / trend</h2>")
    if tr["previous"] is None:
        parts.append("<p>Предыдущего отчёта нет (первый запуск).</p>")
    else:
        parts.append(
            f"<p>По сравнению с отчётом {_e(tr['previous'])}: новых нарушений {len(tr['new_failures'])}, "
            f"устранено {len(tr['fixed'])}.</p><ul>"
        )
        parts += [
            f"<li class='fail'>новое: {_e(x['host'])} {_e(x['check'])}</li>" for x in tr["new_failures"]
        ]
        parts += [f"<li class='pass'>устранено: {_e(x['host'])} {_e(x['check'])}</li>" for x in tr["fixed"]]
        parts.append("</ul>")

    parts.append(
        "<h2>По мерам защиты / per measure</h2><table><tr><th>Мера</th><th>Проверки</th>"
        "<th>Школы с нарушением</th></tr>"
    )
    for m, e in d["measures"].items():
        cls = "fail" if e["failing_hosts"] else "pass"
        parts.append(
            f"<tr class='{cls}'><td>{_e(m)}</td><td>{_e(', '.join(e['checks']))}</td>"
            f"<td>{_e(', '.join(e['failing_hosts']) or '—')}</td></tr>"
        )
    parts.append("</table><h2>По школам / per school</h2>")
    for host, results in report.by_host().items():
        parts.append(
            f"<h3 id='host-{_e(host)}'>{_e(host)}</h3><table><tr><th>Проверка</th><th>Статус</th>"
            "<th>Меры</th><th>Подробности</th><th>Как исправить</th></tr>"
        )
        for r in results:
            fix = r.check.remediation.get("ru", "") if r.failing or r.status == "waived" else ""
            if fix:
                fix += f" ({r.check.remediation.get('playbook')})"
            waiver = ""
            if r.waiver is not None:
                waiver = (
                    f"<br><i>Исключение: {_e(r.waiver.justification)}; ответственный {_e(r.waiver.owner)}; "
                    f"до {_e(r.waiver.expires.isoformat())}</i>"
                )
            parts.append(
                f"<tr class='{r.status}'><td><b>{_e(r.check.id)}</b><br>{_e(r.check.title_ru)}</td>"
                f"<td>{_e(STATUS_RU[r.status])}</td><td>{_e(', '.join(r.check.measures))}</td>"
                f"<td>{_e(r.detail)}{waiver}</td><td>{_e(fix)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(report: FleetReport, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report.generated_at.replace(":", "").replace("-", "")
    paths = {
        "json": out_dir / f"audit-report-{stamp}.json",
        "junit": out_dir / f"audit-report-{stamp}.junit.xml",
        "html": out_dir / f"audit-report-{stamp}.html",
    }
    contents = {
        "json": json.dumps(report.as_dict(), ensure_ascii=False, indent=2).encode("utf-8"),
        "junit": to_junit(report),
        "html": to_html(report).encode("utf-8"),
    }
    for kind, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(contents[kind])
        tmp.replace(path)  # never a half-written report next to the evidence
    return paths


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
