"""Verify the monitoring role on real services: exporters, collectors, Prometheus, Alertmanager, webhook sink.

Each host is both a school and a monitor host (see ../molecule.yml). Values checked here come from the
files prepare.yml put on the host, recomputed independently with openssl/date on the host.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.parse

import pytest

USER, PASSWORD = "prometheus", "molecule-scrape-pass"
CA = "/etc/schoolgate/tls/lab-ca.crt"
SCHOOLS = ("monitoring-bookworm", "monitoring-trixie")

FETCH = r"""
import base64, json, ssl, sys, urllib.error, urllib.request
url, user, password, ca = sys.argv[1:5]
req = urllib.request.Request(url)
if user:
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
ctx = ssl.create_default_context(cafile=ca) if ca else None
try:
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": ""}))
"""


def fetch(host, url: str, user: str = "", password: str = "", ca: str = "") -> dict:
    cmd = " ".join(shlex.quote(a) for a in ["python3", "-c", FETCH, url, user, password, ca])
    return json.loads(host.check_output(cmd))


def node_metrics(host) -> dict[str, float]:
    name = host.backend.get_hostname()
    res = fetch(host, f"https://{name}:9100/metrics", USER, PASSWORD, CA)
    assert res["status"] == 200
    samples: dict[str, float] = {}
    for line in res["body"].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def prom_query(host, expr: str) -> list[dict]:
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    res = fetch(host, url)
    assert res["status"] == 200, res
    return json.loads(res["body"])["data"]["result"]


def sink_alerts(host) -> list[dict]:
    res = fetch(host, "http://127.0.0.1:9099/alerts")
    assert res["status"] == 200
    return json.loads(res["body"])


def wait_for(predicate, timeout: float, step: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def days_left(host, path: str) -> float:
    not_after = host.check_output(f'date -d "$(openssl x509 -noout -enddate -in {path} | cut -d= -f2)" +%s')
    return (int(not_after) - int(host.check_output("date +%s"))) / 86400


@pytest.mark.parametrize(
    "unit",
    [
        "prometheus-node-exporter.service",
        "prometheus-blackbox-exporter.service",
        "prometheus.service",
        "prometheus-alertmanager.service",
        "schoolgate-alert-sink.service",
        "schoolgate-monitoring-expiry.timer",
        "schoolgate-monitoring-logerrors.timer",
        "schoolgate-monitoring-agent.timer",
    ],
)
def test_units_running_and_enabled(host, unit):
    svc = host.service(unit)
    assert svc.is_running, unit
    assert svc.is_enabled, unit


def test_exporters_bound_to_the_configured_address_only(host):
    name = host.backend.get_hostname()
    address = host.check_output(f"getent ahostsv4 {name}").split()[0]
    for port in (9100, 9115):
        assert host.socket(f"tcp://{address}:{port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert host.socket("tcp://127.0.0.1:9090").is_listening
    assert host.socket("tcp://127.0.0.1:9093").is_listening
    assert not host.socket("tcp://0.0.0.0:9094").is_listening  # no Alertmanager cluster gossip


def test_exporters_require_tls_and_basic_auth(host):
    name = host.backend.get_hostname()
    assert fetch(host, f"https://{name}:9100/metrics", "", "", CA)["status"] == 401
    assert fetch(host, f"https://{name}:9100/metrics", USER, "wrong", CA)["status"] == 401
    assert fetch(host, f"https://{name}:9115/metrics", USER, PASSWORD, CA)["status"] == 200
    plain = host.run(f"python3 -c {shlex.quote(FETCH)} http://{name}:9100/metrics '' '' ''")
    assert plain.rc != 0 or '"status": 400' in plain.stdout  # plain HTTP is refused


def test_secrets_and_keys_have_tight_modes(host):
    assert host.file("/etc/prometheus/schoolgate-exporter-password").mode == 0o640
    assert host.file("/etc/prometheus/schoolgate-exporter-password").group == "prometheus"
    assert host.file("/etc/prometheus/schoolgate-web.yml").mode == 0o640
    key = host.file("/etc/schoolgate/tls/exporter.key")
    assert (key.user, key.group, key.mode) == ("root", "prometheus", 0o640)
    assert host.file("/var/lib/schoolgate-monitoring").mode == 0o700


def test_expiry_metrics_match_the_certificates(host):
    samples = node_metrics(host)
    signing = samples['schoolgate_cert_days_left{kind="signing"}']
    tls = samples['schoolgate_cert_days_left{kind="tls"}']
    # the collector ran at most one timer interval ago: allow a small difference
    assert abs(signing - days_left(host, "/etc/schoolgate/signing/signing.crt")) < 0.05
    assert abs(tls - days_left(host, "/etc/schoolgate/tls/portal.crt")) < 0.05
    assert 9 < signing <= 10
    assert 59 < tls <= 60
    assert 1.9 < samples["schoolgate_token_days_left"] <= 2.0
    for kind in ("tls", "signing", "token"):
        assert samples[f'schoolgate_expiry_check_ok{{kind="{kind}"}}'] == 1
    assert samples["node_textfile_scrape_error"] == 0


def test_agent_metrics_are_relayed(host):
    host.run_test("systemctl start schoolgate-monitoring-agent.service")
    samples = node_metrics(host)
    assert samples["schoolgate_agent_up"] == 1
    assert samples["schoolgate_agent_queue_depth"] == 7
    assert samples["schoolgate_agent_queue_oldest_age_seconds"] == 42.5
    assert samples['schoolgate_agent_records_delivered_total{kind="grade"}'] == 120
    relayed = host.file("/var/lib/prometheus/node-exporter/schoolgate_agent.prom").content_string
    assert "process_open_fds" not in relayed
    assert "1733300000000" not in relayed  # timestamps are stripped (the textfile collector rejects them)


def test_agent_down_is_reported(host):
    host.run_test("systemctl stop molecule-fake-agent.service")
    try:
        host.run_test("systemctl start schoolgate-monitoring-agent.service")
        assert node_metrics(host)["schoolgate_agent_up"] == 0
    finally:
        host.run_test("systemctl start molecule-fake-agent.service")
        # `start` returns once Python is forked, not listening: a relay run before that saw it down (CI).
        host.run_test(
            "timeout 30 bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/8700) 2>/dev/null; do sleep 0.2; done'"
        )
        host.run_test("systemctl start schoolgate-monitoring-agent.service")
    assert node_metrics(host)["schoolgate_agent_up"] == 1


def test_error_log_collector_counts_journald_and_nginx_errors(host):
    host.run_test("systemctl start schoolgate-monitoring-logerrors.service")
    before = node_metrics(host)
    nginx_key = 'schoolgate_log_errors_total{source="/var/log/nginx/error.log"}'
    agent_key = 'schoolgate_log_errors_total{source="schoolgate-agent.service"}'
    for level in ("error", "crit", "warn", "error"):
        host.run_test(
            f"echo '2026/12/04 10:00:00 [{level}] 1#1: molecule test line' >> /var/log/nginx/error.log"
        )
    # a transient unit under the agent's name writes two err-level and one info-level entry to journald
    host.run_test(
        "systemd-run --quiet --wait --unit=schoolgate-agent.service "
        'sh -c \'echo "<3>molecule error one"; echo "<6>molecule info"; echo "<3>molecule error two"\''
    )
    time.sleep(1)
    host.run_test("systemctl start schoolgate-monitoring-logerrors.service")
    after = node_metrics(host)
    assert after[nginx_key] - before[nginx_key] == 3
    assert after[agent_key] - before[agent_key] == 2


def test_prometheus_scrapes_every_school(host):
    def all_up():
        res = fetch(host, "http://127.0.0.1:9090/api/v1/targets")
        targets = json.loads(res["body"])["data"]["activeTargets"]
        ours = [t for t in targets if t["labels"]["job"].startswith("schoolgate_")]
        return len(ours) == 6 and all(t["health"] == "up" for t in ours) and ours

    targets = wait_for(all_up, 60)
    assert targets, "not every schoolgate target is up"
    assert {t["labels"]["school"] for t in targets} == set(SCHOOLS)


def test_probes_report_portal_up_and_no_legacy_tls(host):
    def probes():
        portal = prom_query(host, 'probe_success{job="schoolgate_portal"}')
        legacy = prom_query(host, 'probe_success{job="schoolgate_tls_legacy"}')
        return len(portal) == 2 and len(legacy) == 2 and (portal, legacy)

    portal, legacy = wait_for(probes, 60)
    assert {r["metric"]["school"]: r["value"][1] for r in portal} == dict.fromkeys(SCHOOLS, "1")
    assert {r["metric"]["school"]: r["value"][1] for r in legacy} == dict.fromkeys(SCHOOLS, "0")
    tls = prom_query(host, 'probe_tls_version_info{job="schoolgate_portal"}')
    assert {r["metric"]["version"] for r in tls} <= {"TLS 1.2", "TLS 1.3"}


def firing(
    alerts: list[dict], name: str, school: str, since: float = 0.0, status: str = "firing"
) -> list[dict]:
    found = []
    for note in alerts:
        if note["received_at"] < since:
            continue
        for alert in note["payload"]["alerts"]:
            labels = alert["labels"]
            if labels["alertname"] == name and labels.get("school") == school and alert["status"] == status:
                found.append(alert)
    return found


def test_expiring_token_and_signing_certificate_alert(host):
    name = host.backend.get_hostname()

    def arrived():
        alerts = sink_alerts(host)
        token = firing(alerts, "SchoolgateTokenExpiring", name)
        cert = [
            a for a in firing(alerts, "SchoolgateCertExpiring14d", name) if a["labels"]["kind"] == "signing"
        ]
        return token and cert and (token, cert)

    result = wait_for(arrived, 90)
    assert result, "token / signing certificate alerts did not reach the webhook sink"
    token, cert = result
    assert "Токен доступа школы" in token[0]["annotations"]["summary"]
    assert "Сертификат подписи" in cert[0]["annotations"]["summary"]
    alerts = sink_alerts(host)
    assert not firing(alerts, "SchoolgateCertExpiring30d", name)  # TLS has 60 days
    assert not firing(alerts, "SchoolgatePortalDown", name)


def test_stopping_nginx_fires_portal_down_within_the_window(host):
    """Rule window: for 10s + scrape 5s + evaluation 5s + group_wait 2s; allow 60s in total."""
    name = host.backend.get_hostname()
    now = float(host.check_output("date +%s.%N"))
    host.run_test("systemctl stop nginx")
    start = time.monotonic()
    try:
        fired = wait_for(lambda: firing(sink_alerts(host), "SchoolgatePortalDown", name, since=now), 90, 1)
        elapsed = time.monotonic() - start
        print(f"SchoolgatePortalDown for {name} reached the sink after {elapsed:.1f}s")
        assert fired, "SchoolgatePortalDown did not reach the webhook sink within 90s"
        assert elapsed < 60
        assert fired[0]["annotations"]["summary"] == f"Портал школы {name} недоступен по HTTPS"
        assert "systemctl status nginx" in fired[0]["annotations"]["runbook"]
    finally:
        host.run_test("systemctl start nginx")
    resolved = wait_for(
        lambda: firing(sink_alerts(host), "SchoolgatePortalDown", name, since=now, status="resolved"), 90, 1
    )
    assert resolved, "the resolved notification did not arrive after nginx came back"
