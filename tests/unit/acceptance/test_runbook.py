"""The staff runbook: built from the monitoring role's real alert rules, every alert explained with an owner,
contacts required, Markdown and HTML; the HTML renders in headless Chromium without console errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jinja2
import pytest
import yaml

from schoolgate.acceptance.runbook import RunbookError, build, write_runbook

ROOT = Path(__file__).resolve().parents[3]
RULES_J2 = ROOT / "roles/monitoring/templates/schoolgate.rules.yml.j2"
VARS = {
    "school": "school-001",
    "school_name": "МБОУ СОШ № 1",
    "portal_url": "https://school-001.lab.schoolgate.test",
    "environment": "prod",
    "contacts": {
        "it_admin": {"name": "Иванов И. И.", "phone": "+7 900 000-00-01", "email": "it@school.example"},
        "regional_center": {"name": "РЦЦО", "phone": "+7 900 000-00-02"},
    },
}


def rendered_rules() -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: "# " + str(text)
    defaults = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text())
    return env.from_string(RULES_J2.read_text()).render(ansible_managed="test", **defaults)


def template_alert_names() -> set[str]:
    text = RULES_J2.read_text()
    names = set(re.findall(r"- alert: (\w+)\s*$", text, re.M))
    names |= {f"SchoolgateCertExpiring{n}" for n in ("30d", "14d", "7d")}
    return names


def test_every_alert_of_the_monitoring_role_is_explained(tmp_path: Path) -> None:
    paths = write_runbook(VARS, rendered_rules(), tmp_path)
    md = paths["markdown"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    for name in template_alert_names():
        assert f"`{name}`" in md and f"<code>{name}</code>" in html, name
    assert "{{" not in md and "$labels" not in md  # Prometheus templates turned into plain text
    assert "+7 900 000-00-01" in md and "Ученик запрашивает справку" in md
    assert "Родитель подписывает электронный документ" in md
    assert "промышленная среда" in md
    d = build(VARS, rendered_rules())
    owners = {a["name"]: a["owner"] for a in d["alerts"]}
    assert owners["SchoolgatePortalDown"] == "ИТ-администратор школы"
    assert owners["SchoolgateExporterDown"].startswith("Региональный центр")


def test_missing_contacts_and_bad_rules_fail_with_the_variable_named() -> None:
    with pytest.raises(RunbookError, match="regional_center"):
        build({**VARS, "contacts": {"it_admin": {"phone": "1"}}}, rendered_rules())
    with pytest.raises(RunbookError, match="school"):
        build({**VARS, "school": ""}, rendered_rules())
    with pytest.raises(RunbookError, match="groups"):
        build(VARS, "just: text")
    with pytest.raises(RunbookError, match="runbook_alert_owners"):
        build({**VARS, "alert_owners": {"portal": "janitor"}}, rendered_rules())


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian chromium + chromium-driver")
def test_runbook_and_report_render_in_headless_chromium(tmp_path: Path) -> None:
    from schoolgate.acceptance import report as rep
    from schoolgate.acceptance.browser import render_check

    paths = write_runbook(VARS, rendered_rules(), tmp_path)
    result = render_check(paths["html"], tmp_path / "runbook.png")
    assert result["errors"] == [] and result["title"].startswith("Инструкция для сотрудников")
    assert result["text_length"] > 2000
    assert (tmp_path / "runbook.png").stat().st_size > 10_000
    r = rep.Report(target={"school": "school-001"})
    r.cases.append(rep.CaseResult("push_json", "Передача оценок в формате JSON"))
    html = rep.write_reports(r, tmp_path)["html"]
    result = render_check(html, tmp_path / "report.png")
    assert result["errors"] == [] and "Приёмочные испытания" in result["title"]
