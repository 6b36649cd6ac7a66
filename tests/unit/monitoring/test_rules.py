"""Alert rules and server configs of roles/monitoring, checked with the real Prometheus tools."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import need_tool, render

# bcrypt-shaped value: rendering only checks the format; real hashes are checked by the exporters themselves
BCRYPT_SAMPLE = "$2y$10$zG7oXz8n4oRk3pJxk1k3P.3iGq0gqCwq5m3cKx2W9I7b9z7xg5Cm2"
PROMTOOL_TESTS = Path(__file__).with_name("promtool") / "schoolgate_rules_test.yml"
CYRILLIC = re.compile("[а-яА-ЯёЁ]")
REQUIRED_ALERTS = {
    "SchoolgatePortalDown",
    "SchoolgateLegacyTLSOffered",
    "SchoolgateCertExpiring30d",
    "SchoolgateCertExpiring14d",
    "SchoolgateCertExpiring7d",
    "SchoolgateTokenExpiring",
    "SchoolgateBackupTooOld",
    "SchoolgateBackupFailed",
    "SchoolgateRestoreDrillFailed",
    "SchoolgateAgentDown",
    "SchoolgateAgentQueueStale",
    "SchoolgateAgentErrorRate",
    "SchoolgateDiskSpaceLow",
}


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def rules_of(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_pass_promtool_check(rendered_default: Path) -> None:
    proc = run([need_tool("promtool"), "check", "rules", str(rendered_default / "schoolgate.rules.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_pass_promtool_unit_tests(rendered_default: Path) -> None:
    shutil.copy(PROMTOOL_TESTS, rendered_default / PROMTOOL_TESTS.name)
    proc = run([need_tool("promtool"), "test", "rules", PROMTOOL_TESTS.name], cwd=rendered_default)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_every_alert_has_a_firing_and_a_quiet_unit_test(rendered_default: Path) -> None:
    alerts = {rule["alert"] for rule in rules_of(rendered_default / "schoolgate.rules.yml")}
    assert alerts >= REQUIRED_ALERTS, f"missing alerts: {REQUIRED_ALERTS - alerts}"
    tests = yaml.safe_load(PROMTOOL_TESTS.read_text(encoding="utf-8"))["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - firing == set(), f"alerts without a firing test: {sorted(alerts - firing)}"
    assert alerts - quiet == set(), f"alerts without a not-firing test: {sorted(alerts - quiet)}"
    unknown = (firing | quiet) - alerts
    assert not unknown, f"tests name alerts that do not exist: {sorted(unknown)}"


def test_every_alert_speaks_russian_and_has_a_runbook(rendered_default: Path) -> None:
    for rule in rules_of(rendered_default / "schoolgate.rules.yml"):
        name = rule["alert"]
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert CYRILLIC.search(annotations.get(key, "")), f"{name}: {key} missing or not in Russian"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name


def test_rule_windows_and_thresholds_follow_variables(tmp_path: Path) -> None:
    out = render(
        tmp_path,
        {
            "monitoring_alert_for": {
                "portal_down": "15s",
                "target_down": "1m",
                "legacy_tls": "1m",
                "cert_expiry": "0s",
                "token_expiry": "0s",
                "expiry_check": "0s",
                "backup_missing": "1h",
                "agent_down": "30s",
                "agent_queue": "0s",
                "agent_error_rate": "1m",
                "log_errors": "0s",
                "disk": "1m",
            },
            "monitoring_alert_thresholds": {
                "backup_max_age_hours": 30,
                "token_days": 5,
                "disk_free_ratio": 0.2,
                "agent_queue_oldest_seconds": 600,
                "agent_error_ratio": 0.1,
                "log_errors_per_15m": 3,
                "expiry_collector_stale_hours": 2,
            },
        },
    )
    assert run([need_tool("promtool"), "check", "rules", str(out / "schoolgate.rules.yml")]).returncode == 0
    rules = {r["alert"]: r for r in rules_of(out / "schoolgate.rules.yml")}
    assert rules["SchoolgatePortalDown"]["for"] == "15s"
    assert "> 108000" in rules["SchoolgateBackupTooOld"]["expr"]
    assert "< 5" in rules["SchoolgateTokenExpiring"]["expr"]
    assert "< 0.2" in rules["SchoolgateDiskSpaceLow"]["expr"]
    assert "> 600" in rules["SchoolgateAgentQueueStale"]["expr"]


def test_prometheus_config_is_valid(rendered_default: Path, tmp_path: Path) -> None:
    proc = run([need_tool("promtool"), "check", "config", str(rendered_default / "prometheus.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = yaml.safe_load((rendered_default / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert jobs["schoolgate_portal"]["params"] == {"module": ["schoolgate_portal"]}
    assert jobs["schoolgate_tls_legacy"]["params"] == {"module": ["schoolgate_tls_legacy"]}
    assert "scheme" not in jobs["schoolgate_node"]


def test_prometheus_config_with_exporter_tls_and_basic_auth(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("placeholder, promtool only checks the path\n")
    out = render(
        tmp_path / "r",
        {
            "monitoring_exporter_tls_cert_file": "/etc/ssl/exporter.crt",
            "monitoring_exporter_tls_key_file": "/etc/ssl/exporter.key",
            "monitoring_exporter_ca_file": str(ca),
            "monitoring_exporter_basic_auth_username": "prometheus",
            "monitoring_exporter_basic_auth_password_hash": BCRYPT_SAMPLE,
        },
    )
    doc = yaml.safe_load((out / "prometheus.yml").read_text())
    node = next(job for job in doc["scrape_configs"] if job["job_name"] == "schoolgate_node")
    assert node["scheme"] == "https"
    assert node["tls_config"] == {"ca_file": str(ca)}
    assert node["basic_auth"]["password_file"] == "/etc/prometheus/schoolgate-exporter-password"
    web = yaml.safe_load((out / "web-config.yml").read_text())
    assert web["tls_server_config"]["min_version"] == "TLS12"
    assert list(web["basic_auth_users"]) == ["prometheus"]


@pytest.mark.parametrize(
    ("overrides", "expect"),
    [
        ({}, "webhook_configs"),
        (
            {
                "monitoring_alert_receiver": "email",
                "monitoring_alert_email_to": "admin@school.example",
                "monitoring_alert_email_from": "monitor@region.example",
                "monitoring_alert_email_smarthost": "smtp:587",
                "monitoring_alert_email_auth_username": "monitor",
                "monitoring_alert_email_auth_password": "s3cret",
            },
            "email_configs",
        ),
        ({"monitoring_alert_receiver": "none"}, None),
    ],
    ids=["webhook", "email", "none"],
)
def test_alertmanager_config_is_valid(tmp_path: Path, overrides: dict, expect: str | None) -> None:
    out = render(tmp_path, overrides)
    proc = run([need_tool("amtool"), "check-config", str(out / "alertmanager.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    receiver = yaml.safe_load((out / "alertmanager.yml").read_text())["receivers"][0]
    if expect is None:
        assert set(receiver) == {"name"}
    else:
        assert expect in receiver


def test_blackbox_modules_are_valid(rendered_default: Path) -> None:
    proc = run(
        [
            need_tool("prometheus-blackbox-exporter"),
            "--config.check",
            f"--config.file={rendered_default / 'blackbox.yml'}",
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modules = yaml.safe_load((rendered_default / "blackbox.yml").read_text())["modules"]
    assert modules["schoolgate_portal"]["http"]["fail_if_not_ssl"] is True
    legacy = modules["schoolgate_tls_legacy"]["tcp"]["tls_config"]
    assert (legacy["min_version"], legacy["max_version"]) == ("TLS10", "TLS11")


def test_file_sd_targets_come_from_the_inventory(rendered_default: Path) -> None:
    """tests/unit/monitoring/inventory.ini has three schools with different per-school overrides."""
    node = json.loads((rendered_default / "schoolgate_node.json").read_text())
    portal = json.loads((rendered_default / "schoolgate_portal.json").read_text())
    legacy = json.loads((rendered_default / "schoolgate_tls_legacy.json").read_text())
    assert [g["targets"] for g in node] == [
        ["portal.school001.example.ru:9100"],  # ansible_host
        ["school-002:9100"],
        ["school-003:9100"],
    ]
    assert [g["labels"]["school"] for g in node] == ["school-001", "school-002", "school-003"]
    assert [g["labels"]["region"] for g in node] == ["region", "north", "region"]
    assert [g["labels"]["__param_target"] for g in portal] == [
        "https://portal.school001.example.ru/",  # school_portal_fqdn
        "https://portal2.example.ru:8443/",  # monitoring_portal_url
        "https://school-003/",  # inventory name
    ]
    assert [g["labels"]["__param_target"] for g in legacy] == [
        "portal.school001.example.ru:443",
        "portal2.example.ru:8443",
        "school-003:443",
    ]
    assert all(g["targets"][0].endswith(":9115") for g in portal + legacy)
