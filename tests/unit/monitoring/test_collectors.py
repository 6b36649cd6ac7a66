"""The school-side collector program and the lab webhook sink, run for real (openssl, sockets, processes)."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import need_tool

FILES = Path(__file__).resolve().parents[3] / "roles" / "monitoring" / "files"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, FILES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


collect = load("schoolgate_monitoring_collect")


def make_cert(path: Path, not_after: dt.datetime, der: bool = False) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "school-001.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - dt.timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    path.write_bytes(cert.public_bytes(encoding))


def parse(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# ----------------------------------------------------------------------------- expiry


def test_expiry_days_left_for_pem_der_and_token(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    make_cert(tmp_path / "tls.crt", now + dt.timedelta(days=45, hours=12))
    make_cert(tmp_path / "signing.der", now + dt.timedelta(days=6), der=True)
    (tmp_path / "token.json").write_text(json.dumps({"expires_at": (now + dt.timedelta(days=2)).isoformat()}))
    config = {
        "certificates": {"tls": str(tmp_path / "tls.crt"), "signing": str(tmp_path / "signing.der")},
        "token_file": str(tmp_path / "token.json"),
    }
    text, problems = collect.collect_expiry(config, now.timestamp())
    assert problems == []
    values = parse(text)
    assert values['schoolgate_cert_days_left{kind="tls"}'] == 45.5
    assert values['schoolgate_cert_days_left{kind="signing"}'] == 6
    assert values["schoolgate_token_days_left"] == 2
    assert values['schoolgate_expiry_check_ok{kind="token"}'] == 1
    assert values["schoolgate_expiry_collector_last_run_timestamp_seconds"] == now.timestamp()


def test_expired_certificate_gives_negative_days(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    make_cert(tmp_path / "old.crt", now - dt.timedelta(days=3))
    text, _ = collect.collect_expiry({"certificates": {"tls": str(tmp_path / "old.crt")}}, now.timestamp())
    assert parse(text)['schoolgate_cert_days_left{kind="tls"}'] == -3


def test_missing_or_broken_sources_are_reported_not_guessed(tmp_path: Path) -> None:
    (tmp_path / "garbage.crt").write_text("not a certificate")
    (tmp_path / "token.json").write_text('{"something": 1}')
    config = {
        "certificates": {"tls": str(tmp_path / "absent.crt"), "signing": str(tmp_path / "garbage.crt")},
        "token_file": str(tmp_path / "token.json"),
    }
    text, problems = collect.collect_expiry(config, time.time())
    values = parse(text)
    for kind in ("tls", "signing", "token"):
        assert values[f'schoolgate_expiry_check_ok{{kind="{kind}"}}'] == 0
    assert not any(key.startswith("schoolgate_cert_days_left") for key in values)
    assert "schoolgate_token_days_left" not in values
    assert any("absent.crt does not exist" in p for p in problems)
    assert any("garbage.crt" in p for p in problems)
    assert any("expires_at" in p for p in problems)


def test_token_as_jwt_and_secret_never_in_output(tmp_path: Path) -> None:
    exp = 1_900_000_000

    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'RS256'})}.{b64({'exp': exp, 'sub': 'svc'})}.c2lnbmF0dXJlLXNlY3JldA"
    (tmp_path / "raw.jwt").write_text(token + "\n")
    (tmp_path / "wrapped.json").write_text(json.dumps({"access_token": token}))
    for name in ("raw.jwt", "wrapped.json"):
        text, problems = collect.collect_expiry({"token_file": str(tmp_path / name)}, exp - 86400)
        assert problems == []
        assert parse(text)["schoolgate_token_days_left"] == 1
        assert "c2lnbmF0dXJl" not in text and "svc" not in text
    (tmp_path / "bad.jwt").write_text("abc.def")
    _, problems = collect.collect_expiry({"token_file": str(tmp_path / "bad.jwt")}, exp)
    assert problems and "abc" not in problems[0]


def test_main_writes_the_textfile_atomically(tmp_path: Path) -> None:
    make_cert(tmp_path / "tls.crt", dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    config = {"textfile_dir": str(tmp_path), "certificates": {"tls": str(tmp_path / "tls.crt")}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [
            sys.executable,
            str(FILES / "schoolgate_monitoring_collect.py"),
            "expiry",
            "--config",
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "schoolgate_expiry.prom"
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert 9.9 < parse(out.read_text())['schoolgate_cert_days_left{kind="tls"}'] <= 10
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_main_reports_a_missing_config(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(FILES / "schoolgate_monitoring_collect.py"),
            "expiry",
            "--config",
            str(tmp_path / "no"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot read config" in proc.stderr


# ----------------------------------------------------------------------------- log errors


def test_nginx_error_log_counting_with_baseline_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("2026/12/04 [error] old history, not counted\n")
    state: dict = {}
    config = {"log_files": [str(log)]}
    key = f'schoolgate_log_errors_total{{source="{log}"}}'
    text, _ = collect.collect_logerrors(config, state, time.time())
    assert parse(text)[key] == 0
    with log.open("a") as fh:
        fh.write("x [error] a\nx [warn] b\nx [crit] c\nx [emerg] d\nx [error] partial-no-newline")
    text, _ = collect.collect_logerrors(config, state, time.time())
    assert parse(text)[key] == 3
    with log.open("a") as fh:
        fh.write("\n")  # the partial line completes and is counted once
    text, _ = collect.collect_logerrors(config, state, time.time())
    assert parse(text)[key] == 4
    log.rename(tmp_path / "error.log.1")  # logrotate: new file, new inode
    log.write_text("x [alert] after rotation\n")
    text, _ = collect.collect_logerrors(config, state, time.time())
    assert parse(text)[key] == 5


def test_journal_counting_uses_cursor(tmp_path: Path) -> None:
    # A stand-in journalctl that records its arguments and prints entries (the real journald is exercised in
    # molecule/monitoring; here the cursor bookkeeping is checked).
    calls = tmp_path / "calls"
    fake = tmp_path / "journalctl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'case "$*" in *after-cursor=c2*) exit 0;; esac\n'
        'echo \'{"__CURSOR": "c1", "MESSAGE": "x"}\'\n'
        'echo \'{"__CURSOR": "c2", "MESSAGE": "y"}\'\n'
    )
    fake.chmod(0o755)
    state: dict = {}
    config = {"log_units": ["schoolgate-agent.service"]}
    collect.collect_logerrors(config, state, 1000.0, journalctl=str(fake))
    text, _ = collect.collect_logerrors(config, state, 2000.0, journalctl=str(fake))
    assert parse(text)['schoolgate_log_errors_total{source="schoolgate-agent.service"}'] == 2
    first, second = calls.read_text().splitlines()
    assert "--since=@1000" in first and "-p err" in first and "-u schoolgate-agent.service" in first
    assert "--after-cursor=c2" in second


# ----------------------------------------------------------------------------- agent relay

AGENT_METRICS = """# HELP schoolgate_agent_queue_depth Records waiting.
# TYPE schoolgate_agent_queue_depth gauge
schoolgate_agent_queue_depth 7
# HELP schoolgate_agent_records_failed_total Failed.
# TYPE schoolgate_agent_records_failed_total counter
schoolgate_agent_records_failed_total{kind="grade",note="a } b \\" c"} 3 1733300000000
# TYPE schoolgate_agent_delivery_seconds histogram
schoolgate_agent_delivery_seconds_bucket{le="0.1"} 4
schoolgate_agent_delivery_seconds_sum 0.25
schoolgate_agent_delivery_seconds_count 4
# HELP schoolgate_agent_up must not be relayed twice
schoolgate_agent_up 1
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 5
garbage line without value
"""


class _Handler(BaseHTTPRequestHandler):
    body = AGENT_METRICS.encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def agent_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_agent_relay_keeps_only_agent_families_without_timestamps(agent_url: str) -> None:
    text, problems = collect.collect_agent({"agent_metrics_url": agent_url})
    assert problems == []
    assert "process_cpu_seconds_total" not in text
    assert "1733300000000" not in text
    assert text.count("schoolgate_agent_up") == 3  # HELP, TYPE, sample — only ours
    assert 'schoolgate_agent_records_failed_total{kind="grade",note="a } b \\" c"} 3\n' in text
    values = parse(text)
    assert values["schoolgate_agent_up"] == 1
    assert values["schoolgate_agent_queue_depth"] == 7
    assert values["schoolgate_agent_delivery_seconds_count"] == 4


def test_agent_relay_reports_down_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text, problems = collect.collect_agent({"agent_metrics_url": f"http://127.0.0.1:{port}/metrics"})
    assert parse(text) == {"schoolgate_agent_up": 0}
    assert problems and str(port) in problems[0]


def test_agent_relay_rejects_non_http_urls() -> None:
    text, problems = collect.collect_agent({"agent_metrics_url": "file:///etc/shadow"})
    assert parse(text) == {"schoolgate_agent_up": 0}
    assert "must be http" in problems[0]


# ----------------------------------------------------------------------------- webhook sink


def test_alert_sink_stores_and_returns_notifications(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FILES / "schoolgate_alert_sink.py"),
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            str(store),
        ],
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        payload = {"status": "firing", "alerts": [{"labels": {"alertname": "SchoolgatePortalDown"}}]}
        req = urllib.request.Request(
            base + "/alerts", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        assert urllib.request.urlopen(req, timeout=5).status == 200
        bad = urllib.request.Request(base + "/alerts", data=b"{not json")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 400
        stored = json.loads(urllib.request.urlopen(base + "/alerts", timeout=5).read())
        assert [n["payload"] for n in stored] == [payload]
        assert len(store.read_text().splitlines()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------- Zabbix agent 2


def test_zabbix_user_parameters_read_the_textfile_metrics(rendered_default: Path, tmp_path: Path) -> None:
    """The role's UserParameter lines, run by the real zabbix_agent2 (-t tests one item without a server)."""
    agent = need_tool("zabbix_agent2")
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    (textfiles / "schoolgate_expiry.prom").write_text(
        "# TYPE schoolgate_cert_days_left gauge\n"
        'schoolgate_cert_days_left{kind="tls"} 45.5\n'
        'schoolgate_cert_days_left{kind="signing"} 6.25\n'
    )
    (textfiles / "schoolgate_backup.prom").write_text(
        f"schoolgate_backup_last_success_timestamp_seconds {time.time() - 7200}\n"
    )
    params = []
    for line in (rendered_default / "zabbix_agent2.conf").read_text().splitlines():
        if line.startswith("UserParameter="):
            params.append(
                line.replace(
                    "/usr/bin/python3 /usr/local/lib/schoolgate/schoolgate_zabbix.py",
                    f"SCHOOLGATE_TEXTFILE_DIR={textfiles} {sys.executable} {FILES / 'schoolgate_zabbix.py'}",
                )
            )
    assert len(params) == 2
    conf = tmp_path / "agent.conf"
    conf.write_text(
        f"Server=127.0.0.1\nHostname=unit\nLogType=console\nControlSocket={tmp_path}/agent.sock\n"
        + "\n".join(params)
        + "\n"
    )

    def item(key: str) -> str:
        proc = subprocess.run(
            [agent, "-c", str(conf), "-t", key], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().rsplit("[s|", 1)[1].rstrip("]")

    assert item("schoolgate.metric[schoolgate_cert_days_left,kind,signing]") == "6.25"
    assert item("schoolgate.metric[schoolgate_cert_days_left,kind,tls]") == "45.5"
    assert 7190 <= int(item("schoolgate.age[schoolgate_backup_last_success_timestamp_seconds]")) <= 7300
    assert "not found" in item("schoolgate.metric[schoolgate_token_days_left]")
