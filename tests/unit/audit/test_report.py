"""Reports and the CLI: JSON/JUnit/HTML files, trend against the previous run, exit status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import defusedxml.ElementTree as DET
from audit_fixtures import clean_evidence, with_violation

from schoolgate.cli import main


def put(dir_: Path, ev: dict, stamp: str | None = None) -> Path:
    """Store evidence like the playbook does; it is evaluated as of its own collected_at."""
    dir_.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in ev["host"])
    p = dir_ / f"{safe}-{stamp or ev['collected_at'].replace(':', '').replace('-', '')}.json"
    p.write_text(json.dumps(ev), encoding="utf-8")
    return p


def run_report(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "out"
    rc = main(["audit", "report", "--evidence", str(tmp_path / "ev"), "--out", str(out), *extra])
    reports = sorted(out.glob("audit-report-*.json"))
    return rc, json.loads(reports[-1].read_text(encoding="utf-8")) if reports else {}


def test_clean_fleet_exits_zero_and_writes_three_reports(tmp_path: Path) -> None:
    put(tmp_path / "ev", clean_evidence("school-001"))
    put(tmp_path / "ev", clean_evidence("school-002"))
    rc, data = run_report(tmp_path)
    assert rc == 0, data.get("results")
    assert data["totals"]["pass"] == 2 * len(data["checks"]) and not data["failed"]
    out = tmp_path / "out"
    assert len(list(out.glob("*.junit.xml"))) == 1 and len(list(out.glob("*.html"))) == 1
    assert "Примените" not in next(out.glob("*.html")).read_text(encoding="utf-8")  # no hints: no failures


def test_violation_exits_nonzero_and_shows_in_every_format(tmp_path: Path, capsys) -> None:
    put(tmp_path / "ev", clean_evidence("school-001"))
    put(tmp_path / "ev", with_violation("SECRET-PERMS", host="school-002"))
    rc, data = run_report(tmp_path)
    assert rc == 1
    assert "school-002 SECRET-PERMS" in capsys.readouterr().out
    failing = [r for r in data["results"] if r["status"] == "fail"]
    assert [(r["host"], r["check"]) for r in failing] == [("school-002", "SECRET-PERMS")]
    assert data["measures"]["УПД.5"]["failing_hosts"] == ["school-002"]
    assert data["measures"]["ЗИС.3"]["failing_hosts"] == []

    junit = DET.parse(next((tmp_path / "out").glob("*.junit.xml")))
    suites = {s.get("name"): s for s in junit.getroot()}
    assert suites["school-002"].get("failures") == "1" and suites["school-001"].get("failures") == "0"
    html = next((tmp_path / "out").glob("*.html")).read_text(encoding="utf-8")
    assert "SECRET-PERMS" in html and "нарушение" in html
    assert "Примените site.yml" in html  # remediation hint naming the playbook, shown for the failure


def test_newest_evidence_per_host_wins(tmp_path: Path) -> None:
    old = with_violation("TLS-HSTS")
    put(tmp_path / "ev", old, stamp="20200101T000000Z")
    old_path = tmp_path / "ev" / "school-001-20200101T000000Z.json"
    data = json.loads(old_path.read_text(encoding="utf-8"))
    data["collected_at"] = "2020-01-01T00:00:00Z"
    old_path.write_text(json.dumps(data), encoding="utf-8")
    put(tmp_path / "ev", clean_evidence("school-001"))
    rc, report = run_report(tmp_path)
    assert rc == 0, [r for r in report["results"] if r["status"] != "pass"]


def test_trend_lists_new_failures_and_fixes(tmp_path: Path) -> None:
    put(tmp_path / "ev", with_violation("LOG-ROTATE"))
    rc1, first = run_report(tmp_path)
    assert rc1 == 1 and first["trend"]["previous"] is None
    time.sleep(1.1)  # report names carry the second; the second run must not overwrite the first
    for f in (tmp_path / "ev").glob("*.json"):
        f.unlink()
    put(tmp_path / "ev", with_violation("TLS-HSTS"))
    rc2, second = run_report(tmp_path)
    assert rc2 == 1
    assert second["trend"]["previous"] == first["generated_at"]
    assert second["trend"]["new_failures"] == [{"host": "school-001", "check": "TLS-HSTS", "was": "pass"}]
    assert second["trend"]["fixed"] == [{"host": "school-001", "check": "LOG-ROTATE", "now": "pass"}]


def test_html_escapes_evidence(tmp_path: Path) -> None:
    ev = clean_evidence("school-<b>x</b>")
    put(tmp_path / "ev", ev, stamp="1")
    run_report(tmp_path)
    html = next((tmp_path / "out").glob("*.html")).read_text(encoding="utf-8")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_malformed_waivers_fail_before_evaluation(tmp_path: Path, capsys) -> None:
    put(tmp_path / "ev", clean_evidence())
    bad = tmp_path / "waivers.yml"
    bad.write_text("waivers: [{check: SEC-UPDATES}]\n", encoding="utf-8")
    rc, data = run_report(tmp_path, "--waivers", str(bad))
    assert rc == 2 and data == {}
    assert "'owner' is required" in capsys.readouterr().err


def test_waivers_check_command(tmp_path: Path, capsys) -> None:
    good = tmp_path / "w.yml"
    good.write_text(
        "waivers:\n  - {check: INTEGRITY, hosts: '*', owner: a, justification: b, expires: 2020-01-01}\n",
        encoding="utf-8",
    )
    assert main(["audit", "waivers-check", str(good)]) == 0
    assert "1 expired" in capsys.readouterr().out
    good.write_text("waivers: 3\n", encoding="utf-8")
    assert main(["audit", "waivers-check", str(good)]) == 2


def test_no_evidence_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "ev").mkdir()
    rc, _ = run_report(tmp_path)
    assert rc == 2 and "playbooks/audit.yml" in capsys.readouterr().err
