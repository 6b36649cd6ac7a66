"""Evidence builders for the audit unit tests: a clean school, and helpers to inject one violation."""

from __future__ import annotations

import calendar
import copy
import time
from typing import Any

import pytest

NOW = float(calendar.timegm(time.strptime("2026-12-04T12:00:00Z", "%Y-%m-%dT%H:%M:%SZ")))
HOUR = 3600.0


def clean_evidence(host: str = "school-001", now: float = NOW) -> dict[str, Any]:
    """Evidence shaped like playbooks/audit.yml writes it (tls_probe + audit_facts) for a compliant school."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "kind": "schoolgate-audit-evidence",
        "schema": 1,
        "host": host,
        "school_id": host,
        "collected_at": iso,
        "mode": "full",
        "skipped_checks": [],
        "tls": [
            {
                "host": "127.0.0.1",
                "port": 443,
                "accepted_versions": ["TLSv1.2", "TLSv1.3"],
                "refused_versions": ["TLSv1", "TLSv1.1"],
                "unsupported_by_probe": ["SSLv3"],
                "lowest_version": "TLSv1.2",
                "tls12_ciphers": ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"],
                "certificate": {"days_left": 300, "not_after": "2027-09-30T00:00:00+00:00"},
                "chain_trusted": True,
                "hostname_match": True,
                "server_name": "school-001.lab.schoolgate.test",
                "verify_error": None,
                "hsts": {"present": True, "max_age": 63072000},
            }
        ],
        "facts": {
            "collected_at": iso,
            "files": [
                {
                    "path": "/etc/nginx/schoolgate-tls/privkey.pem",
                    "exists": True,
                    "mode": "0640",
                    "owner": "root",
                    "group": "www-data",
                },
                {
                    "path": "/etc/schoolgate/provider-token",
                    "exists": True,
                    "mode": "0600",
                    "owner": "schoolgate",
                    "group": "schoolgate",
                },
                {"path": "/etc/schoolgate/backup/id_ed25519", "exists": False},
            ],
            "backup_status": {
                "schema": 1,
                "backup": {"ok": True, "started": now - 3 * HOUR - 60, "finished": now - 3 * HOUR},
                "check": {"ok": True, "subset": "1/7", "finished": now - 3 * HOUR},
                "drill": {"ok": True, "finished": now - 50 * HOUR, "last_success": now - 50 * HOUR},
            },
            "metrics": {
                "files": {"schoolgate_expiry.prom": {"mtime": now - 600}},
                "samples": {
                    "schoolgate_expiry_collector_last_run_timestamp_seconds": [
                        {"labels": {}, "value": now - 600}
                    ],
                    "schoolgate_agent_queue_oldest_age_seconds": [{"labels": {}, "value": 12.0}],
                    "schoolgate_renewal_last_outcome_ok": [
                        {"labels": {"kind": "provider_token"}, "value": 1.0},
                        {"labels": {"kind": "signing_cert"}, "value": 1.0},
                    ],
                },
            },
            "units": {
                "prometheus-node-exporter.service": {
                    "active": "active",
                    "sub": "running",
                    "enabled": "enabled",
                },
                "chrony.service": {"active": "active", "sub": "running", "enabled": "enabled"},
            },
            "time": {
                "ntp_synchronized": True,
                "chrony_tracking": {
                    "reference": "provider",
                    "stratum": 3,
                    "system_offset_s": 0.0004,
                    "leap_status": "Normal",
                },
                "virtualization": "podman",
            },
            "journald": {"storage": "persistent", "persistent_dir": True},
            "logrotate": {"/etc/logrotate.d/nginx": True},
            "updates": {"pending": ["tzdata"], "security": [], "lists_age_seconds": 5 * HOUR, "error": None},
            "agent": {
                "url": "http://127.0.0.1:8700/healthz",
                "status": 200,
                "body": {"status": "ok", "writer": True},
            },
            "signing_cert": {
                "path": "/etc/schoolgate/signing/cert.pem",
                "exists": True,
                "not_after": "2027-06-01T00:00:00Z",
                "days_left": 179.0,
            },
            "token": {
                "path": "/etc/schoolgate/provider-token.json",
                "exists": True,
                "expires_at": "2027-01-03T16:40:00Z",
                "days_left": 30.2,
            },
            "integrity": {"tool": "debsums", "packages": ["openssl"], "changed_files": [], "rc": 0},
            "openscap": {
                "scanner_version": "1.3.7",
                "content_package": "ssg-debian 0.1.76-1",
                "datastream": "/usr/share/xml/scap/ssg/content/ssg-debian12-ds.xml",
                "profile": "xccdf_org.ssgproject.content_profile_standard",
                "benchmark_version": "0.1.76",
                "counts": {"pass": 40, "notapplicable": 12},
                "rules": [],
            },
        },
    }


def _tls0(ev: dict[str, Any]) -> dict[str, Any]:
    return ev["tls"][0]


# One injected violation per check id: (check id, mutation). The lab's violation matrix (issue 13) does the
# same on real containers; this is its fast, deterministic twin for the evaluation logic.
def _set(path: list[Any], value: Any):
    def apply(ev: dict[str, Any]) -> None:
        node = ev
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


VIOLATIONS: dict[str, Any] = {
    "TLS-PROTO": lambda ev: _tls0(ev).update(accepted_versions=["TLSv1", "TLSv1.2", "TLSv1.3"]),
    "TLS-CIPHER": lambda ev: _tls0(ev)["tls12_ciphers"].append("ECDHE-RSA-AES128-SHA"),
    "TLS-CERT": lambda ev: _tls0(ev)["certificate"].update(days_left=5),
    "TLS-HSTS": lambda ev: _tls0(ev).update(hsts={"present": False}),
    "SIGN-CERT": _set(["facts", "signing_cert", "days_left"], 10.0),
    "TOKEN-EXPIRY": _set(["facts", "token", "days_left"], 2.0),
    "SECRET-PERMS": lambda ev: ev["facts"]["files"][0].update(mode="0644"),
    "BACKUP-FRESH": _set(["facts", "backup_status", "backup", "finished"], NOW - 72 * HOUR),
    "BACKUP-CHECK": lambda ev: ev["facts"]["backup_status"]["check"].update(ok=False, error="pack damaged"),
    "RESTORE-DRILL": lambda ev: ev["facts"]["backup_status"]["drill"].update(
        ok=False, error="row count differs"
    ),
    "MON-ALIVE": _set(["facts", "units", "prometheus-node-exporter.service", "active"], "inactive"),
    "AGENT-HEALTH": _set(
        ["facts", "metrics", "samples", "schoolgate_agent_queue_oldest_age_seconds"],
        [{"labels": {}, "value": 7200.0}],
    ),
    "RENEWAL": lambda ev: ev["facts"]["metrics"]["samples"].update(
        schoolgate_renewal_last_outcome_ok=[
            {"labels": {"kind": "provider_token"}, "value": 1.0},
            {"labels": {"kind": "signing_cert"}, "value": 0.0},
        ],
        schoolgate_renewal_last_failure_timestamp_seconds=[
            {"labels": {"kind": "signing_cert"}, "value": NOW - 2 * HOUR}
        ],
    ),
    "LOG-JOURNALD": _set(["facts", "journald"], {"storage": "volatile", "persistent_dir": False}),
    "LOG-ROTATE": _set(["facts", "logrotate"], {"/etc/logrotate.d/nginx": False}),
    "TIME-SYNC": _set(
        ["facts", "time", "chrony_tracking"],
        {"reference": "", "stratum": 0, "system_offset_s": 0.0, "leap_status": "Not synchronised"},
    ),
    "SEC-UPDATES": lambda ev: (
        ev["facts"]["updates"].update(
            security=["openssl"],
            security_details=[
                {"package": "openssl", "candidate": "3.0.17-1~deb12u3", "origin": "Debian-Security"}
            ],
        ),
        ev.update(update_first_seen={"openssl=3.0.17-1~deb12u3": NOW - 30 * HOUR}),
    ),
    "INTEGRITY": _set(["facts", "integrity", "changed_files"], ["/usr/sbin/nginx"]),
    "OS-BASELINE": lambda ev: ev["facts"]["openscap"].update(
        counts={"pass": 39, "fail": 1, "notapplicable": 12},
        rules=[
            {
                "id": "xccdf_org.ssgproject.content_rule_sshd_disable_root_login",
                "result": "fail",
                "severity": "medium",
                "title": "Disable SSH Root Login",
            }
        ],
    ),
}


def with_violation(check_id: str, host: str = "school-001") -> dict[str, Any]:
    ev = copy.deepcopy(clean_evidence(host))
    VIOLATIONS[check_id](ev)
    return ev


@pytest.fixture
def evidence() -> dict[str, Any]:
    return clean_evidence()
