"""The staff runbook of one school (Russian, Markdown + HTML), generated from its inventory variables and the
deployed alert rules, so it never drifts from what monitoring actually sends.

Inputs: `vars` (school, name, portal URL, environment, support contacts, optional per-area owners) and the
rendered Prometheus rules (roles/monitoring/templates/schoolgate.rules.yml.j2 rendered with the school's
variables by playbooks/runbook.yml).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RunbookError(ValueError):
    """Missing or wrong runbook variable; the message names it and the fix."""


# Who acts on an alert, by the rule's `area` label. Schools override per area with `alert_owners`.
DEFAULT_OWNERS: dict[str, str] = {
    "portal": "it_admin",
    "tls": "it_admin",
    "certificates": "it_admin",
    "token": "it_admin",
    "agent": "it_admin",
    "backup": "it_admin",
    "host": "it_admin",
    "logs": "it_admin",
    "monitoring": "regional_center",
}
CONTACT_ROLES = {
    "it_admin": "ИТ-администратор школы",
    "regional_center": "Региональный центр цифрового образования",
    "provider_support": "Служба поддержки поставщика услуг (Госуслуги, «Моя школа»)",
    "data_officer": "Ответственный за обработку персональных данных",
}
SEVERITY_RU = {"critical": "критично", "warning": "предупреждение", "info": "к сведению"}
ENV_RU = {"test": "тестовая среда (тестовый стенд поставщика)", "prod": "промышленная среда"}


@dataclass
class Alert:
    name: str
    severity: str
    area: str
    summary: str
    description: str
    action: str


def _humanize(text: str, school: str) -> str:
    """Prometheus template text → plain Russian for a printed page."""
    text = re.sub(r"\{\{\s*if [^}]*\}\}(.*?)\{\{\s*else\s*\}\}(.*?)\{\{\s*end\s*\}\}", r"\1/\2", text)
    text = re.sub(r"\{\{\s*\$labels\.school\s*\}\}", school, text)
    text = re.sub(r"\{\{\s*\$value[^}]*\}\}", "N", text)
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", r"<\1>", text)
    return re.sub(r"\{\{[^}]*\}\}", "…", text).strip()


def alerts_from_rules(rules_yaml: str, school: str) -> list[Alert]:
    import yaml

    try:
        doc = yaml.safe_load(rules_yaml)
    except yaml.YAMLError as exc:
        raise RunbookError(f"alert rules are not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise RunbookError("alert rules: expected a Prometheus rules file with `groups:`")
    out = []
    for group in doc["groups"]:
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            labels, ann = rule.get("labels", {}), rule.get("annotations", {})
            out.append(
                Alert(
                    name=str(rule["alert"]),
                    severity=str(labels.get("severity", "warning")),
                    area=str(labels.get("area", "")),
                    summary=_humanize(str(ann.get("summary", "")), school),
                    description=_humanize(str(ann.get("description", "")), school),
                    action=_humanize(str(ann.get("runbook", "")), school),
                )
            )
    if not out:
        raise RunbookError("alert rules: no alerts found (is this the schoolgate rules file?)")
    return out


def _contact_line(c: dict[str, Any]) -> str:
    parts = [str(c.get(k, "")).strip() for k in ("name", "phone", "email", "hours")]
    return ", ".join(p for p in parts if p) or "не указано — заполните переменную runbook_contacts"


def build(vars_: dict[str, Any], rules_yaml: str) -> dict[str, Any]:
    school = str(vars_.get("school") or "")
    if not school:
        raise RunbookError("runbook variable `school` is required (the inventory host name)")
    contacts = vars_.get("contacts") or {}
    if not isinstance(contacts, dict):
        raise RunbookError("runbook_contacts must be a mapping like {it_admin: {name:, phone:, email:}}")
    missing = [r for r in ("it_admin", "regional_center") if not (contacts.get(r) or {}).get("phone")]
    if missing:
        raise RunbookError(
            f"runbook_contacts: set a phone for {', '.join(missing)} "
            "(staff must know whom to call; see docs/acceptance.md)"
        )
    owners = {**DEFAULT_OWNERS, **(vars_.get("alert_owners") or {})}
    unknown = sorted({o for o in owners.values() if o not in CONTACT_ROLES})
    if unknown:
        raise RunbookError(f"runbook_alert_owners: unknown roles {unknown}; known: {sorted(CONTACT_ROLES)}")
    alerts = alerts_from_rules(rules_yaml, school)
    env = str(vars_.get("environment") or "test")
    return {
        "school": school,
        "school_name": str(vars_.get("school_name") or school),
        "portal_url": str(vars_.get("portal_url") or f"https://{school}"),
        "environment": ENV_RU.get(env, env),
        "contacts": {r: _contact_line(contacts.get(r) or {}) for r in CONTACT_ROLES},
        "alerts": [{**a.__dict__, "owner": CONTACT_ROLES[owners.get(a.area, "it_admin")]} for a in alerts],
        "generated_at": str(vars_.get("generated_at") or dt.date.today().isoformat()),
    }


def _sections(d: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs/bullets) shared by both renderings; bullets start with '- '."""
    portal = d["portal_url"]
    return [
        (
            "Что изменилось для сотрудников",
            [
                f"Портал школы работает только по защищённому соединению: {portal} (HTTPS, TLS 1.2 и выше). "
                "Адреса с http:// автоматически перенаправляются.",
                "Оценки, посещаемость и итоговая успеваемость передаются в государственные системы "
                "автоматически, через модуль интеграции (агент). Выгружать файлы вручную больше не нужно.",
                "- Если поставщик временно недоступен, данные не теряются: агент хранит их и отправит позже.",
                "- Ошибочные записи (например, оценка вне 1–5) не принимаются: портал сразу показывает, "
                "какое поле исправить.",
                "- Электронные справки и подписание документов родителями проходят через Госуслуги (ЕСИА).",
                f"Подключение: {d['environment']}.",
            ],
        ),
        (
            "Как ученики и родители пользуются новыми функциями",
            [
                f"- Вход: кнопка «Войти через Госуслуги» на {portal}. Пароль от портала школы не нужен.",
                "- Ученик запрашивает справку (например, «Справка об обучении») в личном кабинете портала. "
                "Когда справка готова, она появляется в кабинете с электронной подписью поставщика.",
                "- Родитель подписывает электронный документ: портал открывает страницу подписания на "
                "Госуслугах, родитель проверяет документ и нажимает «Подписать». Подпись проверяется "
                "автоматически, результат виден в кабинете.",
                "- Если вход или подписание не работают, сотрудник школы сообщает ИТ-администратору: "
                "время, действие и текст ошибки (без паролей и персональных данных).",
            ],
        ),
        (
            "Контакты поддержки",
            [f"- {CONTACT_ROLES[r]}: {line}" for r, line in d["contacts"].items()],
        ),
    ]


def to_markdown(d: dict[str, Any]) -> str:
    out = [
        f"# Инструкция для сотрудников: {d['school_name']}",
        "",
        f"Школа `{d['school']}`, портал {d['portal_url']}. Сформировано {d['generated_at']} "
        "автоматически из настроек развёртывания (schoolgate).",
        "",
    ]
    for heading, items in _sections(d):
        out += [f"## {heading}", ""]
        previous_bullet = False
        for item in items:
            bullet = item.startswith("- ")
            if previous_bullet and not bullet:
                out.append("")
            out.append(item if bullet else item + "\n")
            previous_bullet = bullet
        out.append("")
    out += [
        "## Оповещения мониторинга: что означают и кто действует",
        "",
        "| Оповещение | Важность | Что случилось | Кто действует | Что сделать |",
        "|---|---|---|---|---|",
    ]
    for a in d["alerts"]:
        cells = [
            f"`{a['name']}`",
            SEVERITY_RU.get(a["severity"], a["severity"]),
            f"{a['summary']}. {a['description']}",
            a["owner"],
            a["action"],
        ]
        out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:2em;color:#1b1b1b;max-width:70em;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.35em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left}code{background:#f3f3f3;padding:0 .2em}
.critical{color:#8a1c12;font-weight:bold}.warning{color:#8a5a00}.info{color:#555}
@media print{body{margin:0}}
"""


def to_html(d: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ru"><head><meta charset="utf-8">',
        f"<title>Инструкция для сотрудников: {e(d['school_name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Инструкция для сотрудников: {e(d['school_name'])}</h1>",
        f"<p>Школа <code>{e(d['school'])}</code>, портал {e(d['portal_url'])}. Сформировано "
        f"{e(d['generated_at'])} автоматически из настроек развёртывания (schoolgate).</p>",
    ]
    for heading, items in _sections(d):
        parts.append(f"<h2>{e(heading)}</h2>")
        bullets: list[str] = []
        for item in [*items, "<end>"]:
            if item.startswith("- "):
                bullets.append(f"<li>{e(item[2:])}</li>")
                continue
            if bullets:
                parts.append("<ul>" + "".join(bullets) + "</ul>")
                bullets = []
            if item != "<end>":
                parts.append(f"<p>{e(item)}</p>")
    parts += [
        "<h2>Оповещения мониторинга: что означают и кто действует</h2>",
        '<table id="alerts"><tr><th>Оповещение</th><th>Важность</th><th>Что случилось</th>'
        "<th>Кто действует</th><th>Что сделать</th></tr>",
    ]
    for a in d["alerts"]:
        parts.append(
            f"<tr><td><code>{e(a['name'])}</code></td>"
            f'<td class="{e(a["severity"])}">{e(SEVERITY_RU.get(a["severity"], a["severity"]))}</td>'
            f"<td>{e(a['summary'])}. {e(a['description'])}</td><td>{e(a['owner'])}</td>"
            f"<td>{e(a['action'])}</td></tr>"
        )
    parts += ["</table>", "</body></html>", ""]
    return "\n".join(parts)


def write_runbook(vars_: dict[str, Any], rules_yaml: str, out_dir: Path) -> dict[str, Path]:
    d = build(vars_, rules_yaml)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / f"runbook-{d['school']}.md",
        "html": out_dir / f"runbook-{d['school']}.html",
    }
    paths["markdown"].write_text(to_markdown(d), encoding="utf-8")
    paths["html"].write_text(to_html(d), encoding="utf-8")
    return paths
