"""audit_schedule on a control node: account, hardened unit, timers, a real run under systemd, retention."""

from __future__ import annotations

import pytest

REPORTS = "/var/lib/schoolgate-audit/reports"


def test_dedicated_account_without_login(host) -> None:
    user = host.user("schoolgate-audit")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000
    key = host.file("/var/lib/schoolgate-audit/.ssh/id_ed25519")
    assert key.exists and key.user == "schoolgate-audit" and key.mode == 0o600
    reports = host.file(REPORTS)
    assert reports.is_directory and reports.user == "schoolgate-audit" and reports.mode == 0o750


def test_timers_scheduled_monthly_and_half_yearly(host) -> None:
    for mode in ("quick", "full"):
        timer = host.service(f"schoolgate-audit-{mode}.timer")
        assert timer.is_enabled and timer.is_running
    show = host.check_output("systemctl show -p TimersCalendar schoolgate-audit-quick.timer")
    assert "*-*-01 02:00:00" in show
    show = host.check_output("systemctl show -p TimersCalendar schoolgate-audit-full.timer")
    assert "*-01,07-01 03:00:00" in show
    nxt = host.check_output("systemctl show -p NextElapseUSecRealtime --value schoolgate-audit-full.timer")
    assert nxt.strip() and nxt.strip() != "0"


def test_unit_is_hardened(host) -> None:
    props = host.check_output(
        "systemctl show -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp"
        " -p CapabilityBoundingSet -p UMask schoolgate-audit@quick.service"
    )
    assert "User=schoolgate-audit" in props and "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props and "ProtectHome=yes" in props and "PrivateTmp=yes" in props
    assert "UMask=0027" in props
    assert "CapabilityBoundingSet=\n" in props + "\n" or "CapabilityBoundingSet=" in props.splitlines()


def test_a_run_under_systemd_writes_reports_and_prunes_old_files(host) -> None:
    old = f"{REPORTS}/audit-report-20200101T000000Z.json"
    host.check_output(f"install -o schoolgate-audit -m 0640 /dev/null {old} && touch -d '400 days ago' {old}")
    host.run("rm -f /var/lib/schoolgate-audit/calls.log")
    run = host.run("systemctl start schoolgate-audit@quick.service")
    # the stand-in report exits 1 (checks failed): the unit is left failed, as configured
    assert run.rc != 0
    assert host.check_output("systemctl show -p Result --value schoolgate-audit@quick.service") == "exit-code"
    calls = host.file("/var/lib/schoolgate-audit/calls.log").content_string.splitlines()
    assert calls[0].startswith("schoolgate-audit -i /etc/schoolgate-audit/inventory.ini playbooks/audit.yml")
    assert "audit_mode=quick" in calls[0] and f"audit_evidence_dir={REPORTS}/evidence" in calls[0]
    assert calls[1].startswith(f"schoolgate-audit audit report --evidence {REPORTS}/evidence --out {REPORTS}")
    assert host.run(f"ls {REPORTS}/evidence/school-001-*.json").rc == 0
    assert host.run(f"ls {REPORTS}/audit-report-*.json").rc == 0
    assert not host.file(old).exists  # older than audit_schedule_retention_days (30 in converge.yml)
    journal = host.check_output("journalctl -u schoolgate-audit@quick.service --no-pager -o cat")
    assert "pruned (older than 30 days)" in journal


def test_sandbox_keeps_the_rest_of_the_system_read_only(host) -> None:
    host.run("systemctl start schoolgate-audit@quick.service")
    probe = host.file("/var/lib/schoolgate-audit/sandbox.log").content_string.strip()
    if probe == "writable" and host.run("systemd-detect-virt -c -q").rc == 0:
        # Found in the podman lab (bookworm and trixie): systemd without CAP_SYS_ADMIN in the container skips
        # the mount namespace instead of failing the unit; test_unit_is_hardened asserts the properties.
        pytest.skip("systemd in this container does not apply ProtectSystem= (no mount namespace)")
    # /srv/audit-probe is mode 0777: only ProtectSystem=strict stops the run from writing there
    assert probe == "read-only"
    assert not host.file("/srv/audit-probe/x").exists
