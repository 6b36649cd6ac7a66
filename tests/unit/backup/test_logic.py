"""Pure logic of schoolgate-backup: config validation, rotation, manifests, metrics, status bookkeeping."""

from __future__ import annotations

import json
import os

import pytest


def base_raw(tmp_path, **extra):
    raw = {
        "repository": str(tmp_path / "repo"),
        "password_file": str(tmp_path / "pw"),
        "host": "school-001",
        "state_dir": str(tmp_path / "state"),
        "metrics_dir": str(tmp_path / "metrics"),
        "cache_dir": str(tmp_path / "cache"),
        "database": {"name": "portal", "key_tables": ["pupils", "public.grades"]},
    }
    raw.update(extra)
    return raw


def test_config_ok(sb, tmp_path):
    config = sb.parse_config(base_raw(tmp_path, retention={"daily": 3, "weekly": 2, "monthly": 1}))
    assert config.keep_daily == 3 and config.keep_weekly == 2 and config.keep_monthly == 1
    assert config.database.key_tables == ("pupils", "public.grades")
    assert config.spool_dir == tmp_path / "state" / "spool"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"repository": ""}, "'repository' is required"),
        ({"host": None}, "'host' is required"),
        ({"database": {"key_tables": ["pupils; DROP TABLE x"]}}, "key_tables"),
        ({"database": {"name": "portal", "scratch_name": "portal"}}, "scratch_name must differ"),
        ({"database": {"name": "bad-name"}}, "database.name"),
        ({"paths": ["relative/path"]}, "absolute"),
        ({"retention": {"daily": -1}}, "'daily'"),
        ({"check_subset_count": 0}, "check_subset_count"),
    ],
)
def test_config_errors_name_the_key(sb, tmp_path, change, needle):
    with pytest.raises(sb.BackupError, match=needle.replace("(", r"\(")):
        sb.parse_config(base_raw(tmp_path, **change))


def test_database_optional(sb, tmp_path):
    assert sb.parse_config(base_raw(tmp_path, database=None)).database is None


def test_load_config_reports_bad_json(sb, tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(sb.BackupError, match="not valid JSON"):
        sb.load_config(str(path))
    with pytest.raises(sb.BackupError, match="cannot read config"):
        sb.load_config(str(tmp_path / "missing.json"))


def test_env_file(sb):
    env = sb.parse_env_file("# s3\nAWS_ACCESS_KEY_ID=abc\nAWS_SECRET_ACCESS_KEY='x=y'\n\n")
    assert env == {"AWS_ACCESS_KEY_ID": "abc", "AWS_SECRET_ACCESS_KEY": "x=y"}
    with pytest.raises(sb.BackupError, match="line 1"):
        sb.parse_env_file("LD_PRELOAD=/evil.so")
    with pytest.raises(sb.BackupError, match="KEY=VALUE"):
        sb.parse_env_file("just words")


def test_read_data_subset_rotates_over_all_slices(sb):
    day = 86400
    seen = {sb.read_data_subset(7, 1_700_000_000 + i * day) for i in range(7)}
    assert seen == {f"{n}/7" for n in range(1, 8)}
    assert sb.read_data_subset(1, 123.0) == "1/1"


def test_read_data_subset_same_day_same_slice(sb):
    midnight = 1_700_006_400  # a multiple of 86400
    assert midnight % 86400 == 0
    assert sb.read_data_subset(5, midnight) == sb.read_data_subset(5, midnight + 86399)
    assert sb.read_data_subset(5, midnight) != sb.read_data_subset(5, midnight + 86400)


def test_checksum_query_quotes_and_rejects(sb):
    assert 'FROM "public"."grades" AS t' in sb.checksum_query("public.grades")
    for bad in ("grades; drop table x", 'a"b', "Pupils", "a.b.c", ""):
        with pytest.raises(sb.BackupError):
            sb.checksum_query(bad)


def test_compare_manifests(sb):
    want = {"tables": {"a": {"rows": 2, "checksum": "10"}, "b": {"rows": 1, "checksum": "5"}}}
    assert sb.compare_manifests(want, want) == []
    got = {"tables": {"a": {"rows": 1, "checksum": "10"}}}
    problems = sb.compare_manifests(want, got)
    assert "a: rows 1 != 2 recorded at dump time" in problems
    assert "b: missing after restore" in problems
    got = {"tables": {"a": {"rows": 2, "checksum": "11"}, "b": {"rows": 1, "checksum": "5"}}}
    assert sb.compare_manifests(want, got) == ["a: checksum differs from the one recorded at dump time"]
    assert sb.compare_manifests({"tables": {}}, {"tables": {}}) != []


def test_summary_from_backup_json(sb):
    out = (
        '{"message_type":"status","percent_done":0.5}\nnoise\n'
        '{"message_type":"summary","snapshot_id":"ab","data_added":5}\n'
    )
    assert sb.summary_from_backup_json(out)["snapshot_id"] == "ab"
    with pytest.raises(sb.BackupError, match="no snapshot"):
        sb.summary_from_backup_json('{"message_type":"status"}')


def test_render_metrics_only_known_values(sb):
    text = sb.render_metrics({"backup": {"ok": False, "finished": 100.5, "duration_seconds": 3.0}})
    assert "schoolgate_backup_last_status 0\n" in text
    assert "schoolgate_backup_last_run_timestamp_seconds 100.500\n" in text
    assert "last_success_timestamp" not in text  # never fake a success time
    assert "schoolgate_restore_drill_last_status" not in text
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.split(" ")
            float(value)
            assert name.startswith("schoolgate_")
    assert text.count("# TYPE") == len([line for line in text.splitlines() if not line.startswith("#")])


def test_status_store_keeps_last_success_on_failure(sb, tmp_path):
    config = sb.parse_config(base_raw(tmp_path))
    store = sb.StatusStore(config)
    store.record("backup", {"ok": True, "finished": 10.0, "bytes": 100, "added_bytes": 7, "snapshots": 3})
    store.record("backup", {"ok": False, "finished": 20.0, "error": "repository unreachable"})
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["backup"]["last_success"] == 10.0
    assert status["backup"]["snapshots"] == 3
    assert status["host"] == "school-001"
    metrics = (tmp_path / "metrics" / "schoolgate_backup.prom").read_text()
    assert "schoolgate_backup_last_status 0\n" in metrics
    assert "schoolgate_backup_last_success_timestamp_seconds 10.000\n" in metrics
    assert "schoolgate_backup_last_run_timestamp_seconds 20.000\n" in metrics
    assert oct((tmp_path / "state" / "status.json").stat().st_mode & 0o777) == "0o640"
    assert oct((tmp_path / "metrics" / "schoolgate_backup.prom").stat().st_mode & 0o777) == "0o644"


def test_atomic_write_leaves_no_temp(sb, tmp_path):
    target = tmp_path / "m" / "x.prom"
    sb.atomic_write(target, "a 1\n")
    sb.atomic_write(target, "a 2\n")
    assert target.read_text() == "a 2\n"
    assert os.listdir(tmp_path / "m") == ["x.prom"]


def test_redact_repository(sb):
    assert sb.redact_repository("s3:https://key:secret@minio:9000/b") == "s3:https://***@minio:9000/b"
    assert sb.redact_repository("sftp:user@backup:/repo") == "sftp:user@backup:/repo"


def test_restic_argv_and_env(sb, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("AWS_ACCESS_KEY_ID=k\n")
    config = sb.parse_config(
        base_raw(tmp_path, sftp_command="ssh -i /k backup -s sftp", env_file=str(env_file), exclude=["*.tmp"])
    )
    calls = []

    def fake(argv, **kwargs):
        calls.append((list(argv), kwargs))
        return '{"message_type":"summary","snapshot_id":"s1","total_bytes_processed":9,"data_added":1}\n'

    restic = sb.Restic(config, fake)
    summary = restic.backup(["/a"])
    assert summary["snapshot_id"] == "s1"
    argv, kwargs = calls[0]
    assert argv[:3] == ["restic", "-o", "sftp.command=ssh -i /k backup -s sftp"]
    assert argv[argv.index("--host") : argv.index("--host") + 2] == ["--host", "school-001"]
    assert "--exclude" in argv and argv[-1] == "/a"
    assert kwargs["env"]["AWS_ACCESS_KEY_ID"] == "k"
    assert kwargs["env"]["RESTIC_PASSWORD_FILE"] == str(tmp_path / "pw")
    assert "RESTIC_PASSWORD" not in kwargs["env"]  # the password only ever travels as a file
    restic.forget()
    assert calls[-1][0][-6:] == ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"]
