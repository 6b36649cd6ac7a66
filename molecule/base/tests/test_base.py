"""Testinfra checks for the base role on Debian 12 and 13 containers."""

import time

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIMveAtQsTdTDQ1otWMMxlHow+i+gJ0mzmrvOq0sIWy6u"


def test_systemd_running(host):
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")


def test_chrony_runs_without_clock_control(host):
    svc = host.service("chrony")
    assert svc.is_running and svc.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value chrony")
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
    assert "-x" in cmdline.split(), cmdline  # containers: never touch the host's clock
    assert host.run("chronyc -n tracking").rc == 0


def test_chrony_time_source(host):
    name = host.backend.get_hostname()
    if name.endswith("-trixie"):
        # trixie syncs from the bookworm container over the lab network; allow a few polls.
        server_ip = host.check_output("getent hosts base-bookworm").split()[0]
        out = ""
        for _ in range(20):
            out = host.run("chronyc -n sources").stdout
            if f"^* {server_ip}" in out:  # selected and synchronised
                break
            time.sleep(2)
        assert f"^* {server_ip}" in out, out
    else:
        assert host.file("/etc/chrony/chrony.conf").contains("^local stratum 10")


def test_unattended_upgrades_security_origin(host):
    out = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    assert "-security,label=Debian-Security" in out
    assert 'APT::Periodic::Unattended-Upgrade "1"' in host.check_output("apt-config dump APT::Periodic")
    assert host.service("apt-daily-upgrade.timer").is_enabled
    # The configured pattern must match a real origin apt knows on this host (no download: a dry run
    # would fetch every pending security update).
    codename = host.system_info.codename
    policy = host.check_output("apt-cache policy")
    assert f"n={codename}-security,l=Debian-Security" in policy, policy
    assert "codename=${distro_codename}-security,label=Debian-Security" in out


def test_admin_user_and_key(host):
    user = host.user("schooladmin")
    assert user.exists and "sudo" in user.groups
    keys = host.file("/home/schooladmin/.ssh/authorized_keys")
    assert keys.user == "schooladmin" and keys.mode == 0o600
    assert KEY in keys.content_string
    assert not host.user("formeradmin").exists
    assert host.run("sudo -n -u schooladmin sudo -n true").rc == 0
    assert host.run("visudo -c").rc == 0


def test_sshd_hardened(host):
    assert host.service("ssh").is_running
    cfg = host.check_output("sshd -T")
    assert "passwordauthentication no" in cfg
    assert "permitrootlogin without-password" in cfg or "permitrootlogin prohibit-password" in cfg


def test_journald_persistent(host):
    assert host.file("/etc/systemd/journald.conf.d/50-schoolgate.conf").contains("^Storage=persistent")
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}").is_directory
    assert host.run("journalctl --disk-usage").rc == 0


def test_managed_header(host):
    assert host.file("/etc/chrony/chrony.conf").contains("Ansible managed")
