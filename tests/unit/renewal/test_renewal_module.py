"""modules/renewal.py: events and textfile metrics agree; inspect reports expiry; check mode writes nothing.
The module runs for real through `ansible localhost` (connection local)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("renewal_module", ROOT / "modules" / "renewal.py")
assert spec and spec.loader
renewal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(renewal)


def ansible(module_args: dict[str, object], *extra: str) -> dict[str, object]:
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-m",
            "renewal",
            "-a",
            json.dumps(module_args),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    data = json.loads(proc.stdout)
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_metrics_follow_the_events() -> None:
    events = [
        {"kind": "signing_cert", "outcome": "success", "ts_unix": 100.0},
        {"kind": "signing_cert", "outcome": "failure", "ts_unix": 200.0},
        {"kind": "tls_cert", "outcome": "failure", "ts_unix": 150.0},
        {"kind": "tls_cert", "outcome": "success", "ts_unix": 300.0},
        {"kind": "provider_token", "outcome": "skipped", "ts_unix": 400.0},
        {"kind": "nonsense", "outcome": "failure", "ts_unix": 500.0},
    ]
    text = renewal.render_metrics(events)
    assert 'schoolgate_renewal_last_outcome_ok{kind="signing_cert"} 0' in text
    assert 'schoolgate_renewal_last_outcome_ok{kind="tls_cert"} 1' in text
    assert 'schoolgate_renewal_last_success_timestamp_seconds{kind="signing_cert"} 100' in text
    assert 'schoolgate_renewal_last_failure_timestamp_seconds{kind="signing_cert"} 200' in text
    assert 'schoolgate_renewal_last_check_timestamp_seconds{kind="provider_token"} 400' in text
    assert 'outcome_ok{kind="provider_token"}' not in text  # a check that found nothing due is no outcome
    assert "nonsense" not in text


def test_record_appends_and_rewrites_metrics_check_mode_writes_nothing(tmp_path: Path) -> None:
    events, prom = tmp_path / "ev" / "renewal-events.jsonl", tmp_path / "tf" / "schoolgate_renewal.prom"
    args = {
        "kind": "signing_cert",
        "outcome": "failure",
        "step": "register",
        "reason": "поставщик недоступен",
        "details": {"serial_in_use": "1f"},
        "events_file": str(events),
        "metrics_file": str(prom),
    }
    planned = ansible(args, "--check", "--diff")
    assert planned["changed"] and not events.exists() and not prom.exists()
    done = ansible(args)
    assert done["changed"], done
    events.write_text(events.read_text() + '{"torn line')  # a crash mid-write must not hide the rest
    done = ansible({**args, "outcome": "success", "step": "done"})
    assert done["changed"], done
    lines = events.read_text().splitlines()
    assert json.loads(lines[0])["reason"] == "поставщик недоступен"
    assert json.loads(lines[-1])["outcome"] == "success"
    text = prom.read_text()
    assert 'schoolgate_renewal_last_outcome_ok{kind="signing_cert"} 1' in text
    assert "schoolgate_renewal_last_failure_timestamp_seconds" in text
    assert oct(prom.stat().st_mode & 0o777) == "0o644" and oct(events.stat().st_mode & 0o777) == "0o640"


def test_inspect_reports_days_left_and_due(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1F3A)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=10, hours=1))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "portal.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    due = ansible({"action": "inspect", "certificate_path": str(path), "threshold_days": 30})
    assert due["due"] is True and due["changed"] is False
    assert due["certificate"]["days_left"] == 10 and due["certificate"]["serial"] == "1f3a"
    fine = ansible({"action": "inspect", "certificate_path": str(path), "threshold_days": 7})
    assert fine["due"] is False
    missing = ansible({"action": "inspect", "certificate_path": str(tmp_path / "nope.pem")})
    assert missing.get("failed") and "не читается" in missing["msg"]
