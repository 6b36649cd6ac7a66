"""The acceptance runner end to end against a real agent and the real simulator on 127.0.0.1: every case
passes (with real headless Chromium for ESIA login and the parent's signature), the load phase reports
figures, and with the simulator injecting 5xx the failures land in the report instead of crashing it."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from schoolgate.acceptance import report as rep
from schoolgate.acceptance.runner import run

from .conftest import LocalSchool

pytestmark = pytest.mark.slow


def test_green_run_all_cases_and_load(local_school: LocalSchool, tmp_path: Path) -> None:
    result = asyncio.run(run(local_school.target, tmp_path, load_clients=20, load_seconds=3))
    paths = rep.write_reports(result, tmp_path)
    summary = {c.case_id: (c.status, c.message) for c in result.cases}
    assert all(s == rep.PASS for s, _ in summary.values()), summary
    assert set(summary) == {"esia_login", "spravka", "parent_signing", "push_json", "push_xml", "negative"}
    assert result.load is not None and result.load.passed, result.load
    assert result.load.requests > 20 and result.load.errors_5xx == 0
    assert set(result.load.by_operation) == {"record", "services", "document"}
    assert result.passed
    data = json.loads(paths["json"].read_text())
    assert data["passed"] is True and data["totals"]["passed"] == 6
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "7" and suite.get("failures") == "0"
    assert (tmp_path / "screenshots" / "parent_signing.png").stat().st_size > 1000
    secret = local_school.agent.secret_path.read_bytes().strip().decode()
    token = Path(local_school.target.provider_token_file or "").read_text().strip()
    for p in paths.values():
        text = p.read_text(encoding="utf-8")
        assert secret not in text and token not in text


def test_provider_5xx_are_reported_not_crashing(local_school: LocalSchool, tmp_path: Path) -> None:
    # Every provider call fails: the cases that need the provider fail with a reason, the local ones still
    # pass, the load counts the 5xx of the document requests, and all three reports are written.
    local_school.faults(rate_5xx=1.0, seed=7, paths=["/services/", "/aas/"])
    try:
        result = asyncio.run(
            run(
                local_school.target,
                tmp_path,
                cases=["spravka", "negative"],
                load_clients=10,
                load_seconds=2,
                load_mix={"document": 1.0},
            )
        )
    finally:
        local_school.clear_faults()
    paths = rep.write_reports(result, tmp_path)
    by_id = {c.case_id: c for c in result.cases}
    assert by_id["negative"].status == rep.PASS
    assert by_id["spravka"].status == rep.FAIL and "HTTP" in by_id["spravka"].message
    assert result.load is not None and result.load.errors_5xx == result.load.requests > 0
    assert not result.passed and any("5xx" in r for r in result.load.reasons)
    html = paths["html"].read_text(encoding="utf-8")
    assert "НЕ пройдены" in html and "ответов 5xx" in html
    assert ET.parse(paths["junit"]).getroot().find("testsuite").get("failures") == "2"
