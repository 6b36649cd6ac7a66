"""Jobs end to end with the real restic binary against a local repository (no database: files only), plus the
drill's comparison with a fake PostgreSQL. Needs `restic` (Debian package) on the test machine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("restic") is None, reason="restic not installed (apt-get install restic)"
)


@pytest.fixture
def env(sb, tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "upload.txt").write_text("homework scan\n" * 1000)
    pw = tmp_path / "pw"
    pw.write_text("unit-test-password\n")
    pw.chmod(0o600)
    raw = {
        "repository": str(tmp_path / "repo"),
        "password_file": str(pw),
        "host": "school-t",
        "state_dir": str(tmp_path / "state"),
        "metrics_dir": str(tmp_path / "metrics"),
        "cache_dir": str(tmp_path / "cache"),
        "paths": [str(tmp_path / "files")],
        "check_subset_count": 1,
        "database": None,
    }
    subprocess.run(
        ["restic", "init", "--repo", raw["repository"], "--password-file", str(pw)],
        check=True,
        capture_output=True,
    )
    (tmp_path / "backup.json").write_text(json.dumps(raw))
    return tmp_path


def status(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state" / "status.json").read_text())


def metrics(tmp_path: Path) -> str:
    return (tmp_path / "metrics" / "schoolgate_backup.prom").read_text()


def test_run_backs_up_prunes_checks(sb, env, capsys):
    assert sb.main(["--config", str(env / "backup.json"), "run"]) == 0
    assert sb.main(["--config", str(env / "backup.json"), "run"]) == 0
    st = status(env)
    assert st["backup"]["ok"] and st["check"]["ok"] and st["check"]["subset"] == "1/1"
    assert st["backup"]["snapshots"] == 1  # keep-daily 7: two runs the same day keep one snapshot
    assert "schoolgate_backup_last_status 1\n" in metrics(env)
    assert "schoolgate_backup_check_status 1\n" in metrics(env)
    assert not (env / "state" / "spool").exists()  # dumps never linger unencrypted


def test_unreachable_repository_fails_and_says_so(sb, env):
    assert sb.main(["--config", str(env / "backup.json"), "backup"]) == 0
    raw = json.loads((env / "backup.json").read_text())
    raw["repository"] = str(env / "gone")
    (env / "backup.json").write_text(json.dumps(raw))
    assert sb.main(["--config", str(env / "backup.json"), "run"]) == 1
    st = status(env)
    assert st["backup"]["ok"] is False
    assert "restic backup failed" in st["backup"]["error"]
    assert st["backup"]["last_success"] < st["backup"]["finished"]
    text = metrics(env)
    assert "schoolgate_backup_last_status 0\n" in text
    assert "schoolgate_backup_last_success_timestamp_seconds" in text


def test_corrupted_pack_fails_check(sb, env):
    assert sb.main(["--config", str(env / "backup.json"), "backup"]) == 0
    packs = sorted((env / "repo" / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    pack = packs[-1]
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    assert sb.main(["--config", str(env / "backup.json"), "check", "--subset", "1/1"]) == 1
    assert status(env)["check"]["ok"] is False
    assert "schoolgate_backup_check_status 0\n" in metrics(env)


def test_restore_files(sb, env, capsys):
    assert sb.main(["--config", str(env / "backup.json"), "backup"]) == 0
    (env / "files" / "upload.txt").unlink()
    capsys.readouterr()
    rc = sb.main(
        [
            "--config",
            str(env / "backup.json"),
            "restore",
            "--path",
            str(env / "files"),
            "--files-target",
            str(env / "out"),
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["files"]["paths"] == [str(env / "files")]
    restored = env / "out" / str(env / "files").lstrip("/") / "upload.txt"
    assert restored.read_text() == "homework scan\n" * 1000


def test_restore_needs_something(sb, env):
    assert sb.main(["--config", str(env / "backup.json"), "restore"]) == 2


def test_drill_without_snapshots_fails(sb, env):
    raw = json.loads((env / "backup.json").read_text())
    raw["database"] = {"name": "portal", "key_tables": ["pupils"]}
    (env / "backup.json").write_text(json.dumps(raw))
    assert sb.main(["--config", str(env / "backup.json"), "drill"]) == 1
    assert "no snapshot" in status(env)["drill"]["error"]
    assert "schoolgate_restore_drill_last_status 0\n" in metrics(env)


def test_drill_detects_mismatch(sb, env, monkeypatch):
    """Manifest says 3 pupils, the restore gives 2: the drill fails (fake PostgreSQL, real restic)."""
    raw = json.loads((env / "backup.json").read_text())
    raw["database"] = {"name": "portal", "key_tables": ["pupils"], "os_user": None}
    (env / "backup.json").write_text(json.dumps(raw))
    config = sb.load_config(str(env / "backup.json"))
    spool = config.spool_dir
    spool.mkdir(parents=True)
    (spool / "portal.dump").write_bytes(b"PGDMP fake")
    (spool / "manifest.json").write_text(json.dumps({"tables": {"pupils": {"rows": 3, "checksum": "99"}}}))
    sb.Restic(config).backup([str(spool)])
    shutil.rmtree(spool)

    calls = []

    def fake_pg(argv, **kwargs):
        calls.append(Path(argv[0]).name)
        if Path(argv[0]).name == "pg_restore":
            assert Path(kwargs["stdin_path"]).read_bytes() == b"PGDMP fake"
        if Path(argv[0]).name == "psql":
            return "2|42\n"
        return ""

    real = sb.run_command

    def router(argv, **kwargs):
        if Path(argv[0]).name == "restic":
            return real(argv, **kwargs)
        return fake_pg(argv, **kwargs)

    monkeypatch.setattr(sb, "run_command", router)
    assert sb.job_drill(config, sb.StatusStore(config)) == 1
    st = status(env)["drill"]
    assert "pupils: rows 2 != 3" in st["error"]
    assert calls[:3] == ["dropdb", "createdb", "pg_restore"]
    assert calls[-1] == "dropdb"  # scratch database removed even on failure
