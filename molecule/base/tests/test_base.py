def test_systemd_running(host):
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
