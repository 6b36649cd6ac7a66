"""Generate the Grafana dashboards in this directory (run: python dashboards/build.py).

The JSON files are checked in; tests/unit/monitoring/test_dashboards.py checks they match this generator,
that every query is valid PromQL (via promtool) and that no panel names a concrete datasource.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def query_var(name: str, label: str, query: str, multi: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
    }


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_h = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["datasource"] = DS
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def target(
    expr: str, legend: str = "", instant: bool = False, fmt: str = "time_series", ref: str = "A"
) -> dict:
    return {
        "datasource": DS,
        "expr": expr,
        "legendFormat": legend,
        "instant": instant,
        "range": not instant,
        "format": fmt,
        "refId": ref,
    }


def stat(
    title: str,
    expr: str,
    unit: str = "none",
    steps: list[tuple[str, float | None]] | None = None,
    mappings: list[dict] | None = None,
    legend: str = "",
    decimals: int | None = None,
) -> dict:
    steps = steps or [("green", None)]
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]},
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
        },
    }


def timeseries(title: str, targets: list[dict], unit: str = "none") -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def bargauge(title: str, expr: str, legend: str, unit: str, steps: list[tuple[str, float | None]]) -> dict:
    return {
        "type": "bargauge",
        "title": title,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]},
            },
            "overrides": [],
        },
        "options": {
            "orientation": "horizontal",
            "displayMode": "basic",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def alerts_table(title: str, selector: str) -> dict:
    return {
        "type": "table",
        "title": title,
        "targets": [target(f'ALERTS{{alertstate="firing",{selector}}}', instant=True, fmt="table")],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True,
                        "Value": True,
                        "__name__": True,
                        "alertstate": True,
                        "job": True,
                    },
                    "indexByName": {"school": 0, "alertname": 1, "severity": 2},
                },
            }
        ],
        "options": {"showHeader": True},
    }


UPDOWN = [
    {
        "type": "value",
        "options": {"0": {"text": "НЕТ", "color": "red"}, "1": {"text": "ДА", "color": "green"}},
    }
]
OKFAIL = [
    {
        "type": "value",
        "options": {"0": {"text": "ОШИБКА", "color": "red"}, "1": {"text": "OK", "color": "green"}},
    }
]
DAYS = [("red", None), ("orange", 7), ("yellow", 14), ("green", 30)]


def dashboard(uid: str, title: str, variables: list[dict], layout: Layout) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["schoolgate"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [datasource_var(), *variables]},
        "annotations": {"list": []},
        "panels": layout.panels,
    }


def school() -> dict:
    s = 'school="$school"'
    lay = Layout()
    lay.add(
        stat("Портал доступен (HTTPS)", f'probe_success{{job="schoolgate_portal",{s}}}', mappings=UPDOWN),
        4,
        4,
    )
    lay.add(
        stat(
            "TLS ниже 1.2 принимается",
            f'probe_success{{job="schoolgate_tls_legacy",{s}}}',
            mappings=[
                {
                    "type": "value",
                    "options": {"0": {"text": "нет", "color": "green"}, "1": {"text": "ДА", "color": "red"}},
                }
            ],
        ),
        4,
        4,
    )
    lay.add(
        stat("Сертификат TLS, дн.", f'schoolgate_cert_days_left{{kind="tls",{s}}}', steps=DAYS, decimals=0),
        4,
        4,
    )
    lay.add(
        stat(
            "Сертификат подписи, дн.",
            f'schoolgate_cert_days_left{{kind="signing",{s}}}',
            steps=DAYS,
            decimals=0,
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Токен доступа, дн.",
            f"schoolgate_token_days_left{{{s}}}",
            steps=[("red", None), ("orange", 3), ("green", 7)],
            decimals=1,
        ),
        4,
        4,
    )
    lay.add(stat("Агент работает", f"schoolgate_agent_up{{{s}}}", mappings=UPDOWN), 4, 4)
    lay.add(
        stat(
            "Последняя копия, ч назад",
            f"(time() - schoolgate_backup_last_success_timestamp_seconds{{{s}}}) / 3600",
            steps=[("green", None), ("red", 26)],
            decimals=1,
        ),
        4,
        4,
    )
    lay.add(stat("Последняя копия", f"schoolgate_backup_last_status{{{s}}}", mappings=OKFAIL), 4, 4)
    lay.add(
        stat("Учение по восстановлению", f"schoolgate_restore_drill_last_status{{{s}}}", mappings=OKFAIL),
        4,
        4,
    )
    lay.add(stat("Очередь агента, записей", f"schoolgate_agent_queue_depth{{{s}}}"), 4, 4)
    lay.add(
        stat(
            "Старейшая запись в очереди",
            f"schoolgate_agent_queue_oldest_age_seconds{{{s}}}",
            unit="s",
            steps=[("green", None), ("red", 900)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Свободно на /",
            f'node_filesystem_avail_bytes{{mountpoint="/",{s}}} / '
            f'node_filesystem_size_bytes{{mountpoint="/",{s}}}',
            unit="percentunit",
            steps=[("red", None), ("green", 0.1)],
        ),
        4,
        4,
    )
    lay.add(alerts_table("Активные предупреждения", s), 24, 6)
    lay.add(
        timeseries(
            "Время ответа портала",
            [target(f'probe_duration_seconds{{job="schoolgate_portal",{s}}}', "портал")],
            "s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Доставка данных агентом (записей/с)",
            [
                target(
                    f"sum by (kind) (rate(schoolgate_agent_records_delivered_total{{{s}}}[5m]))",
                    "доставлено {{kind}}",
                ),
                target(
                    f"sum by (kind) (rate(schoolgate_agent_records_failed_total{{{s}}}[5m]))",
                    "ошибки {{kind}}",
                    ref="B",
                ),
            ],
            "ops",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Очередь агента",
            [
                target(f"schoolgate_agent_queue_depth{{{s}}}", "записей"),
                target(f"schoolgate_agent_queue_oldest_age_seconds{{{s}}}", "возраст старейшей, с", ref="B"),
            ],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Ошибки в журналах (за 15 мин)",
            [target(f"increase(schoolgate_log_errors_total{{{s}}}[15m])", "{{source}}")],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Свободное место",
            [
                target(
                    f'node_filesystem_avail_bytes{{fstype!~"tmpfs|devtmpfs",{s}}}'
                    f" / node_filesystem_size_bytes{{{s}}}",
                    "{{mountpoint}}",
                )
            ],
            "percentunit",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Нагрузка и память",
            [
                target(f"node_load1{{{s}}}", "load1"),
                target(
                    f"1 - node_memory_MemAvailable_bytes{{{s}}} / node_memory_MemTotal_bytes{{{s}}}",
                    "память занята",
                    ref="B",
                ),
            ],
        ),
        12,
        8,
    )
    return dashboard(
        "schoolgate-school",
        "schoolgate — школа",
        [
            query_var("region", "Регион", 'label_values(up{job="schoolgate_node"}, region)'),
            query_var("school", "Школа", 'label_values(up{job="schoolgate_node",region="$region"}, school)'),
        ],
        lay,
    )


def region() -> dict:
    r = 'region="$region"'
    lay = Layout()
    lay.add(stat("Школ под наблюдением", f'count(up{{job="schoolgate_node",{r}}})'), 4, 4)
    lay.add(
        stat(
            "Недоступно серверов",
            f'count(up{{job="schoolgate_node",{r}}} == 0) or vector(0)',
            steps=[("green", None), ("red", 1)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Порталов недоступно",
            f'count(probe_success{{job="schoolgate_portal",{r}}} == 0) or vector(0)',
            steps=[("green", None), ("red", 1)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Сертификатов < 30 дн.",
            f"count(schoolgate_cert_days_left{{{r}}} < 30) or vector(0)",
            steps=[("green", None), ("orange", 1)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Копий старше 26 ч",
            f"count(time() - schoolgate_backup_last_success_timestamp_seconds{{{r}}} > 93600) or vector(0)",
            steps=[("green", None), ("red", 1)],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Агентов не работает",
            f"count(schoolgate_agent_up{{{r}}} == 0) or vector(0)",
            steps=[("green", None), ("red", 1)],
        ),
        4,
        4,
    )
    lay.add(alerts_table("Активные предупреждения по школам", r), 24, 8)
    lay.add(
        bargauge(
            "Меньше всего дней до истечения сертификата",
            f"bottomk(15, min by (school, kind) (schoolgate_cert_days_left{{{r}}}))",
            "{{school}} ({{kind}})",
            "d",
            DAYS,
        ),
        12,
        10,
    )
    lay.add(
        bargauge(
            "Давность последней успешной копии, ч",
            f"topk(15, (time() - schoolgate_backup_last_success_timestamp_seconds{{{r}}}) / 3600)",
            "{{school}}",
            "h",
            [("green", None), ("red", 26)],
        ),
        12,
        10,
    )
    lay.add(
        bargauge(
            "Старейшая запись в очереди агента",
            f"topk(15, schoolgate_agent_queue_oldest_age_seconds{{{r}}})",
            "{{school}}",
            "s",
            [("green", None), ("red", 900)],
        ),
        12,
        10,
    )
    lay.add(
        bargauge(
            "Дней до истечения токена",
            f"bottomk(15, schoolgate_token_days_left{{{r}}})",
            "{{school}}",
            "d",
            [("red", None), ("orange", 3), ("green", 7)],
        ),
        12,
        10,
    )
    lay.add(
        timeseries(
            "Доступность порталов региона",
            [target(f'avg(probe_success{{job="schoolgate_portal",{r}}})', "доля доступных")],
            "percentunit",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Доставка данных по региону (записей/с)",
            [
                target(f"sum(rate(schoolgate_agent_records_delivered_total{{{r}}}[5m]))", "доставлено"),
                target(f"sum(rate(schoolgate_agent_records_failed_total{{{r}}}[5m]))", "ошибки", ref="B"),
            ],
            "ops",
        ),
        12,
        8,
    )
    return dashboard(
        "schoolgate-region",
        "schoolgate — регион",
        [
            query_var("region", "Регион", 'label_values(up{job="schoolgate_node"}, region)'),
        ],
        lay,
    )


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), ensure_ascii=False, indent=2) + "\n"
        for name, build in (("schoolgate-school.json", school), ("schoolgate-region.json", region))
    }


if __name__ == "__main__":
    for file_name, text in render().items():
        (HERE / file_name).write_text(text, encoding="utf-8")
        print(f"wrote dashboards/{file_name}")
