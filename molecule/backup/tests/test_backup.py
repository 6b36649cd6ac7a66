"""Testinfra checks for the backup scenario: two schools (Debian 12, 13) and an SFTP backup server.

Per school, in this order (pytest keeps file order per host): units and secrets → a real backup and drill →
drop a table, restore with playbooks/restore.yml, compare → repository unreachable → corrupted pack detected.
The last test corrupts this school's repository, so it must stay last.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
SERVER = "backup-server"
SCRIPT = "/usr/local/sbin/schoolgate-backup"
METRICS = "/var/lib/prometheus/node-exporter/schoolgate_backup.prom"
KEY_TABLES = ["classes", "pupils", "grades", "attendance"]


def is_school(host):
    return host.backend.get_hostname() != SERVER


def school_only(host):
    if not is_school(host):
        pytest.skip("school host check")


def server_only(host):
    if is_school(host):
        pytest.skip("backup server check")


def server():
    return testinfra.get_host(f"podman://{SERVER}")


def status(host):
    return json.loads(host.check_output(f"{SCRIPT} status"))


def metrics(host):
    values = {}
    for line in host.file(METRICS).content_string.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values


def table_manifest(host, db="portal"):
    out = {}
    for table in KEY_TABLES:
        # The same order-independent checksum the backup script records at dump time.
        rowsum = "coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
        sql = f"SELECT count(*) || '|' || {rowsum} FROM {table} AS t"
        res = host.run(f'runuser -u postgres -- psql -X -A -t -d {db} -c "{sql}"')
        if res.rc != 0:
            out[table] = None
            continue
        rows, checksum = res.stdout.strip().split("|")
        out[table] = {"rows": int(rows), "checksum": checksum}
    return out


def start(host, unit):
    """Start a oneshot unit and wait for it (systemctl start blocks until a oneshot finishes)."""
    return host.run(f"systemctl start {unit}")


def playbook(*args):
    cmd = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(PROJECT / "playbooks" / "restore.yml"),
    ]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=1200, env=os.environ.copy())
    return proc.returncode, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------- backup server
def test_server_sshd_policy(host):
    server_only(host)
    assert host.service("ssh").is_running
    conf = host.file("/etc/ssh/sshd_config.d/schoolgate-backup.conf")
    assert conf.exists and conf.user == "root"
    for school in ("backup-bookworm", "backup-trixie"):
        chroot = host.file(f"/srv/schoolgate-backup/sgb-{school}")
        assert chroot.user == "root" and chroot.mode == 0o755
        repo = host.file(f"/srv/schoolgate-backup/sgb-{school}/restic")
        assert repo.user == f"sgb-{school}" and repo.mode == 0o700
        keys = host.file(f"/etc/ssh/schoolgate-backup-keys/sgb-{school}")
        assert keys.user == "root" and "restrict ssh-ed25519 " in keys.content_string
        assert host.user(f"sgb-{school}").shell == "/usr/sbin/nologin"
    # Only public keys reached the server.
    assert "PRIVATE KEY" not in host.run("cat /etc/ssh/schoolgate-backup-keys/*").stdout


# ------------------------------------------------------------------------------------------------ schools
def test_units_and_schedule(host):
    school_only(host)
    for timer in ("schoolgate-backup.timer", "schoolgate-backup-drill.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running
    timer = host.file("/etc/systemd/system/schoolgate-backup.timer").content_string
    assert "Persistent=true" in timer
    unit = host.file("/etc/systemd/system/schoolgate-backup.service").content_string
    for line in (
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "IOSchedulingClass=idle",
        "Nice=10",
        "PrivateTmp=true",
    ):
        assert line in unit
    # The schedule differs per host (hash of the host name) and is stable.
    other = "backup-trixie" if host.backend.get_hostname() == "backup-bookworm" else "backup-bookworm"
    other_timer = testinfra.get_host(f"podman://{other}").file("/etc/systemd/system/schoolgate-backup.timer")
    oncal = [line for line in timer.splitlines() if line.startswith("OnCalendar=")]
    other_oncal = [line for line in other_timer.content_string.splitlines() if line.startswith("OnCalendar=")]
    assert oncal and oncal != other_oncal


def test_secrets_root_only_and_private_key_local(host):
    school_only(host)
    for path in (
        "/etc/schoolgate/backup/restic-password",
        "/etc/schoolgate/backup/id_ed25519",
        "/etc/schoolgate/backup/backup.json",
    ):
        f = host.file(path)
        assert f.exists and f.user == "root" and f.mode == 0o600, path
    assert host.file("/etc/schoolgate/backup").mode == 0o700
    password = host.file("/etc/schoolgate/backup/restic-password").content_string.strip()
    assert len(password) >= 16
    # The password is not in the config, the units, or the journal.
    assert password not in host.file("/etc/schoolgate/backup/backup.json").content_string
    assert password not in host.run("journalctl --no-pager -o cat").stdout
    # The private key never left the school: the server holds only this host's public key.
    pub = host.file("/etc/schoolgate/backup/id_ed25519.pub").content_string.split()[1]
    name = host.backend.get_hostname()
    assert pub in server().file(f"/etc/ssh/schoolgate-backup-keys/sgb-{name}").content_string


def test_sftp_account_is_chrooted(host):
    school_only(host)
    name = host.backend.get_hostname()
    ssh = (
        "-i /etc/schoolgate/backup/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o UserKnownHostsFile=/etc/schoolgate/backup/known_hosts -o StrictHostKeyChecking=yes"
    )
    listing = host.run(f"echo 'ls -1 /' | sftp -b - {ssh} sgb-{name}@{SERVER}")
    assert listing.rc == 0, listing.stderr
    assert [line for line in listing.stdout.splitlines() if not line.startswith("sftp>")] == ["/restic"]
    shell = host.run(f"ssh {ssh} sgb-{name}@{SERVER} id </dev/null")
    assert "uid=" not in shell.stdout  # no shell, only internal-sftp


def test_backup_and_drill_run_for_real(host):
    school_only(host)
    res = start(host, "schoolgate-backup.service")
    assert res.rc == 0, host.run("journalctl -u schoolgate-backup.service --no-pager -n 30").stdout
    st = status(host)["backup"]
    assert st["ok"] and st["snapshots"] >= 1 and st["bytes"] > 0
    assert set(st["tables"]) == set(KEY_TABLES)
    assert st["tables"] == table_manifest(host)  # manifest = live tables (no writes in between)
    assert status(host)["check"]["ok"]
    m = metrics(host)
    assert m["schoolgate_backup_last_status"] == 1
    assert m["schoolgate_backup_check_status"] == 1
    assert (
        m["schoolgate_backup_last_success_timestamp_seconds"]
        == m["schoolgate_backup_last_run_timestamp_seconds"]
    )
    res = start(host, "schoolgate-backup-drill.service")
    assert res.rc == 0, host.run("journalctl -u schoolgate-backup-drill.service --no-pager -n 30").stdout
    drill = status(host)["drill"]
    assert drill["ok"] and drill["tables"] == st["tables"]
    assert metrics(host)["schoolgate_restore_drill_last_status"] == 1
    # the scratch database is gone again
    assert (
        host.run(
            "runuser -u postgres -- psql -X -A -t -c "
            "\"SELECT count(*) FROM pg_database WHERE datname='schoolgate_restore_drill'\""
        ).stdout.strip()
        == "0"
    )
    # the journal carries counts and ids, never pupils' names
    journal = host.run(
        "journalctl -u schoolgate-backup.service -u schoolgate-backup-drill.service --no-pager -o cat"
    )
    for name in ("Иванов", "Смирнов", "Кузнецов"):
        assert name not in journal.stdout


def test_restore_playbook_needs_confirmation(host):
    school_only(host)
    name = host.backend.get_hostname()
    before = table_manifest(host)
    rc, out = playbook("-l", name, "-e", "restore_database=true")
    assert rc != 0 and "restore_confirm=" + name in out
    assert table_manifest(host) == before


def test_drop_table_then_restore_with_playbook(host):
    school_only(host)
    name = host.backend.get_hostname()
    recorded = status(host)["backup"]["tables"]
    host.check_output("runuser -u postgres -- psql -X -q -d portal -c 'DROP TABLE attendance'")
    host.check_output("rm -f /srv/portal/uploads/README.txt")
    assert table_manifest(host)["attendance"] is None
    rc, out = playbook(
        "-l",
        name,
        "-e",
        f"restore_confirm={name}",
        "-e",
        "restore_database=true",
        "-e",
        '{"restore_paths": ["/srv/portal/uploads"]}',
    )
    assert rc == 0, out[-3000:]
    assert "equal: true" in out or '"equal": true' in out  # yaml or json result callback
    assert table_manifest(host) == recorded
    assert host.file("/srv/portal/uploads/README.txt").exists


def test_repository_unreachable(host):
    """Point the backup server's name at this host's loopback (nothing listens on 22): the unit fails, the
    metric says so, the last success time stays, and nothing else on the host is affected."""
    school_only(host)
    before = metrics(host)["schoolgate_backup_last_success_timestamp_seconds"]
    host.check_output(f"cp /etc/hosts /etc/hosts.sgb && echo '127.0.0.1 {SERVER}' >> /etc/hosts")
    try:
        assert host.run("ss -ltn | grep -q ':22 '").rc != 0
        res = start(host, "schoolgate-backup.service")
        assert res.rc != 0
        assert host.run("systemctl is-failed schoolgate-backup.service").stdout.strip() == "failed"
        m = metrics(host)
        assert m["schoolgate_backup_last_status"] == 0
        assert m["schoolgate_backup_last_success_timestamp_seconds"] == before
        assert m["schoolgate_backup_last_run_timestamp_seconds"] > before
        assert "restic" in status(host)["backup"]["error"]
        assert host.service("postgresql").is_running
        assert host.service("schoolgate-backup.timer").is_running
        assert table_manifest(host)["pupils"]["rows"] > 0
    finally:
        host.check_output("cat /etc/hosts.sgb > /etc/hosts && rm -f /etc/hosts.sgb")
    host.run("systemctl reset-failed schoolgate-backup.service")
    assert start(host, "schoolgate-backup.service").rc == 0
    assert metrics(host)["schoolgate_backup_last_status"] == 1


def test_corrupted_pack_is_caught_by_drill_and_check(host):
    """Flip bytes in the data packs of this school's repository on the server: the drill and restic check
    (reading all data) must both fail and say so in the metrics. Leaves the repository corrupt: keep last."""
    school_only(host)
    name = host.backend.get_hostname()
    srv = server()
    repo = f"/srv/schoolgate-backup/sgb-{name}/restic/data"
    packs = srv.check_output(f"find {repo} -type f").split()
    assert packs
    # Every data pack: which pack holds the latest dump depends on dedup with earlier snapshots.
    for pack in packs:
        srv.check_output(
            "python3 -c \"import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); "
            "[b.__setitem__(i, b[i] ^ 0xff) for i in range(len(b) // 3, len(b) // 3 + 64)]; "
            f"open(p,'wb').write(bytes(b))\" {pack}"
        )
    host.run("rm -rf /var/cache/schoolgate-backup/*")  # no cached copy may hide the damage
    res = start(host, "schoolgate-backup-drill.service")
    assert res.rc != 0
    drill = status(host)["drill"]
    assert drill["ok"] is False and drill["error"]
    assert metrics(host)["schoolgate_restore_drill_last_status"] == 0
    res = host.run(f"{SCRIPT} check --subset 1/1")
    assert res.rc != 0
    assert metrics(host)["schoolgate_backup_check_status"] == 0
