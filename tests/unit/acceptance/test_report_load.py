"""Report renderings and load statistics, without a network."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from schoolgate.acceptance import report as rep
from schoolgate.acceptance.load import Sample, percentile, summarize


def _report() -> rep.Report:
    r = rep.Report(target={"school": "school-001", "portal": "https://school-001.example"})
    ok = rep.CaseResult("push_json", "Передача оценок в формате JSON", duration_s=1.5)
    ok.step("POST /v1/batches/grade → 202")
    bad = rep.CaseResult(
        "spravka", "Ученик запрашивает справку", status=rep.FAIL, message="HTTP 502 <b>x</b>"
    )
    bad.step("POST /v1/documents → 502", ok=False)
    r.cases += [ok, bad]
    r.load = summarize([Sample("record", "202", 0.1), Sample("document", "503", 0.2)], 2, 1.0)
    return r


def test_percentiles_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 95) == 0.0
    assert percentile([3.0], 99) == 3.0


def test_load_fails_on_slow_p95_and_on_any_5xx() -> None:
    fast = [Sample("record", "202", 0.05) for _ in range(100)]
    assert summarize(fast, 200, 10.0).passed
    slow = fast[:90] + [Sample("record", "202", 2.5) for _ in range(10)]
    result = summarize(slow, 200, 10.0)
    assert not result.passed and result.p95_s == 2.5 and "p95" in result.reasons[0]
    one_5xx = [*fast[:99], Sample("document", "503", 0.05)]
    result = summarize(one_5xx, 200, 10.0)
    assert not result.passed and result.errors_5xx == 1
    assert result.by_operation["document"]["errors_5xx"] == 1
    conn = [*fast[:99], Sample("record", "connection", 0.01)]
    assert summarize(conn, 200, 10.0).errors_other == 1
    assert summarize(fast, 200, 10.0).rate_rps == 10.0


def test_renderings_agree_and_escape() -> None:
    r = _report()
    assert not r.passed
    data = json.loads(rep.to_json(r))
    assert data["totals"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 0}
    assert data["load"]["errors_5xx"] == 1
    suite = ET.fromstring(rep.to_junit(r)).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "0")
    html = rep.to_html(r)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert 'lang="ru"' in html and "НЕ пройдены" in html
    assert "http://" not in html.split("<body>")[0] and "<script" not in html  # no external assets


def test_skipped_case_is_not_a_pass() -> None:
    r = rep.Report(target={"school": "s"})
    r.cases.append(rep.CaseResult("esia_login", "Вход", status=rep.SKIP, message="браузер недоступен"))
    assert not r.passed
    assert not rep.Report(target={}).passed  # nothing run is not a pass either
