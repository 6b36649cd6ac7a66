#!/usr/bin/python3
"""schoolgate-backup: back up the school portal database and files with restic, prove restores.

Installed by the ``backup`` role as ``/usr/local/sbin/schoolgate-backup``. Standard library only: it runs on a
bare Debian school server. Configuration is a JSON file written by the role
(``/etc/schoolgate/backup/backup.json``).

Subcommands:
  run       dump the database (pg_dump -Fc + globals + table manifest), restic backup, forget/prune, check
  backup    only the dump + restic backup
  check     restic check with a rotating --read-data-subset
  drill     restore the latest dump into a scratch database, compare with the manifest recorded at dump time
  restore   restore a chosen snapshot: database (into the live or another database) and/or files
  init      create the repository if there is none (used by the role)
  status    print the JSON status file
  metrics   re-render the node_exporter textfile from the status file

Every job records its result in ``<state_dir>/status.json`` and the textfile metrics, both written atomically.
Logs carry table names, counts and snapshot ids only — never row contents (152-FZ personal data).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

DEFAULT_CONFIG = "/etc/schoolgate/backup/backup.json"
TAG = "schoolgate"
DUMP_NAME = "portal.dump"
GLOBALS_NAME = "globals.sql"
MANIFEST_NAME = "manifest.json"
METRICS_FILE = "schoolgate_backup.prom"
TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")
DBNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ENV_LINE_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
# Restic environment variables we accept from the env file (S3 credentials and the like); anything else is a
# configuration mistake we'd rather report than silently pass on.
ALLOWED_ENV_PREFIXES = ("AWS_", "RESTIC_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_")


class BackupError(Exception):
    """A failure with enough context for a school admin: what failed and what to look at."""


# --------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DatabaseConfig:
    name: str = "portal"
    user: str = "postgres"
    host: str = ""
    port: int = 5432
    os_user: str | None = "postgres"
    key_tables: tuple[str, ...] = ()
    scratch_name: str = "schoolgate_restore_drill"
    bindir: str = ""
    # 0 = uncompressed custom-format dump: unchanged table data then deduplicates across days in restic, which
    # compresses it itself (repository format 2). pg_dump's own compression would defeat deduplication.
    compress: int = 0


@dataclass(frozen=True)
class Config:
    repository: str
    password_file: str
    host: str
    state_dir: str = "/var/lib/schoolgate/backup"
    metrics_dir: str = "/var/lib/prometheus/node-exporter"
    cache_dir: str = "/var/cache/schoolgate-backup"
    env_file: str = ""
    sftp_command: str = ""
    restic: str = "restic"
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    check_subset_count: int = 7
    lock_timeout: int = 3600
    database: DatabaseConfig | None = field(default_factory=DatabaseConfig)

    @property
    def spool_dir(self) -> Path:
        return Path(self.state_dir) / "spool"


def _positive_int(raw: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BackupError(f"config: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def parse_config(raw: Mapping[str, Any]) -> Config:
    """Validate the JSON config; every error names the key so the admin knows which role variable to fix."""
    for key in ("repository", "password_file", "host"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise BackupError(f"config: '{key}' is required (a non-empty string)")
    db_raw = raw.get("database")
    database: DatabaseConfig | None = None
    if db_raw:
        if not isinstance(db_raw, Mapping):
            raise BackupError("config: 'database' must be an object or null")
        tables = tuple(db_raw.get("key_tables", ()))
        for table in tables:
            if not isinstance(table, str) or not TABLE_RE.match(table):
                raise BackupError(
                    f"config: database.key_tables entry {table!r} is not a plain [schema.]table name"
                )
        for key in ("name", "scratch_name"):
            value = db_raw.get(key, getattr(DatabaseConfig, key))
            if not isinstance(value, str) or not DBNAME_RE.match(value):
                raise BackupError(f"config: database.{key} {value!r} is not a plain database name")
        if db_raw.get("scratch_name", DatabaseConfig.scratch_name) == db_raw.get("name", DatabaseConfig.name):
            raise BackupError(
                "config: database.scratch_name must differ from database.name (the drill drops it)"
            )
        database = DatabaseConfig(
            name=db_raw.get("name", DatabaseConfig.name),
            user=db_raw.get("user", DatabaseConfig.user),
            host=db_raw.get("host", "") or "",
            port=_positive_int(db_raw, "port", 5432, 1),
            os_user=db_raw.get("os_user", DatabaseConfig.os_user) or None,
            key_tables=tables,
            scratch_name=db_raw.get("scratch_name", DatabaseConfig.scratch_name),
            bindir=db_raw.get("bindir", "") or "",
            compress=_positive_int(db_raw, "compress", 0),
        )
    paths = tuple(raw.get("paths", ()))
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise BackupError(f"config: paths entry {path!r} must be an absolute path")
    retention = raw.get("retention", {})
    return Config(
        repository=raw["repository"],
        password_file=raw["password_file"],
        host=raw["host"],
        state_dir=raw.get("state_dir", Config.state_dir),
        metrics_dir=raw.get("metrics_dir", Config.metrics_dir) or "",
        cache_dir=raw.get("cache_dir", Config.cache_dir),
        env_file=raw.get("env_file", "") or "",
        sftp_command=raw.get("sftp_command", "") or "",
        restic=raw.get("restic", "restic"),
        paths=paths,
        exclude=tuple(raw.get("exclude", ())),
        keep_daily=_positive_int(retention, "daily", 7),
        keep_weekly=_positive_int(retention, "weekly", 4),
        keep_monthly=_positive_int(retention, "monthly", 6),
        check_subset_count=_positive_int(raw, "check_subset_count", 7, 1),
        lock_timeout=_positive_int(raw, "lock_timeout", 3600),
        database=database,
    )


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise BackupError(f"cannot read config {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise BackupError(f"config {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise BackupError(f"config {path} must hold a JSON object")
    return parse_config(raw)


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines (S3 credentials). Quotes around values are stripped; unknown keys are an error."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = ENV_LINE_RE.match(stripped)
        if not match:
            raise BackupError(f"env file line {number}: expected KEY=VALUE")
        key, value = match.groups()
        if not key.startswith(ALLOWED_ENV_PREFIXES):
            raise BackupError(f"env file line {number}: {key} is not a restic/S3 variable")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


# --------------------------------------------------------------------------------------------- pure helpers
def read_data_subset(count: int, now: float) -> str:
    """Which 1/N slice of pack data `restic check` reads today; over N days every pack is read once."""
    if count <= 1:
        return "1/1"
    day = int(now // 86400)
    return f"{day % count + 1}/{count}"


def quote_ident(name: str) -> str:
    """Quote a validated [schema.]table for SQL."""
    if not TABLE_RE.match(name):
        raise BackupError(f"refusing table name {name!r}")
    return ".".join(f'"{part}"' for part in name.split("."))


def checksum_query(table: str) -> str:
    # Order-independent: sum of the first 60 bits of each row's md5. sum(bigint) is numeric in PostgreSQL,
    # so it never overflows; the same rows give the same figure whatever the physical order after a restore.
    # One text column "rows|checksum" so the same query works through psql -A -t and a piped session.
    # The table name passed quote_ident's whitelist regex, so the f-string is not an injection vector.
    select = (
        "SELECT count(*) || '|' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
    )
    return f"{select} FROM {quote_ident(table)} AS t"


def compare_manifests(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Differences between the manifest recorded at dump time and the restored tables (empty = equal)."""
    problems: list[str] = []
    want = expected.get("tables", {})
    got = actual.get("tables", {})
    if not want:
        problems.append("manifest lists no key tables: nothing to compare")
    for table in sorted(want):
        if table not in got:
            problems.append(f"{table}: missing after restore")
            continue
        if want[table]["rows"] != got[table]["rows"]:
            problems.append(
                f"{table}: rows {got[table]['rows']} != {want[table]['rows']} recorded at dump time"
            )
        if want[table]["checksum"] != got[table]["checksum"]:
            problems.append(f"{table}: checksum differs from the one recorded at dump time")
    return problems


def summary_from_backup_json(output: str) -> dict[str, Any]:
    """The `summary` message of `restic backup --json` (one JSON object per line)."""
    summary: dict[str, Any] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "summary":
            summary = message
    if not summary:
        raise BackupError("restic backup finished without a summary (no snapshot was written)")
    return summary


def render_metrics(status: Mapping[str, Any]) -> str:
    """node_exporter textfile content for the status. Names and rules: docs/monitoring.md (no labels; the
    exporter's own instance label identifies the school)."""
    backup = status.get("backup", {})
    check = status.get("check", {})
    drill = status.get("drill", {})
    rows: list[tuple[str, str, float | int | None]] = [
        (
            "schoolgate_backup_last_success_timestamp_seconds",
            "End time of the last successful backup (Unix seconds).",
            backup.get("last_success"),
        ),
        (
            "schoolgate_backup_last_run_timestamp_seconds",
            "End time of the last backup attempt, ok or not (Unix seconds).",
            backup.get("finished"),
        ),
        (
            "schoolgate_backup_last_status",
            "1 if the last backup attempt succeeded, 0 if it failed.",
            _status_value(backup),
        ),
        (
            "schoolgate_backup_last_duration_seconds",
            "Duration of the last backup attempt.",
            backup.get("duration_seconds"),
        ),
        (
            "schoolgate_backup_last_size_bytes",
            "Bytes the last successful backup added to the repository.",
            backup.get("added_bytes"),
        ),
        (
            "schoolgate_backup_processed_bytes",
            "Bytes (database dump and files) read by the last successful backup.",
            backup.get("bytes"),
        ),
        (
            "schoolgate_backup_snapshots",
            "Snapshots of this school in the repository after the last backup.",
            backup.get("snapshots"),
        ),
        (
            "schoolgate_backup_check_status",
            "1 if the last restic check passed, 0 if it failed.",
            _status_value(check),
        ),
        (
            "schoolgate_backup_check_last_timestamp_seconds",
            "End time of the last restic check.",
            check.get("finished"),
        ),
        (
            "schoolgate_restore_drill_last_status",
            "1 if the last restore drill restored and matched the dump-time manifest, 0 if not.",
            _status_value(drill),
        ),
        (
            "schoolgate_restore_drill_last_timestamp_seconds",
            "End time of the last restore drill.",
            drill.get("finished"),
        ),
        (
            "schoolgate_restore_drill_last_success_timestamp_seconds",
            "End time of the last successful restore drill.",
            drill.get("last_success"),
        ),
    ]
    lines: list[str] = []
    for name, help_text, value in rows:
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_format_number(value)}"]
    return "\n".join(lines) + "\n"


def _status_value(section: Mapping[str, Any]) -> int | None:
    if "ok" not in section:
        return None
    return 1 if section["ok"] else 0


def _format_number(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def atomic_write(path: Path, content: str, mode: int = 0o644) -> None:
    """Write via a temp file in the same directory + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name must not end in .prom: node_exporter would read the half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------- process running
class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdout_path: Path | None = None,
        stdin_path: Path | None = None,
        timeout: float | None = None,
    ) -> str: ...


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    stdout_path: Path | None = None,
    stdin_path: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run a command; raise BackupError with its stderr tail on failure. `user` drops privileges (no PAM).

    Files for stdout/stdin are opened here, as the calling user, so a command running as `postgres` can
    write a dump into (or read one from) a root-only directory without being given access to it."""
    kwargs: dict[str, Any] = {}
    if user and os.geteuid() == 0:
        kwargs.update(user=user, group=user, extra_groups=[], cwd="/")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        with contextlib.ExitStack() as stack:
            stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
            stdout = stack.enter_context(open(stdout_path, "wb")) if stdout_path else subprocess.PIPE
            proc = subprocess.run(
                list(argv),
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=full_env,
                timeout=timeout,
                check=False,
                **kwargs,
            )
        output = proc.stdout.decode("utf-8", "replace") if proc.stdout is not None else ""
    except FileNotFoundError as exc:
        raise BackupError(f"{argv[0]}: not installed ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{argv[0]} {_verb(argv)}: timed out after {timeout} s") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        name = Path(argv[0]).name
        raise BackupError(f"{name} {_verb(argv)} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return output


def _verb(argv: Sequence[str]) -> str:
    for arg in argv[1:]:
        if not arg.startswith("-"):
            return arg
    return ""


# --------------------------------------------------------------------------------------------- restic
class Restic:
    def __init__(self, config: Config, runner: Runner | None = None) -> None:
        self.config = config
        self.runner: Runner = runner or run_command

    def env(self) -> dict[str, str]:
        env = {
            "RESTIC_REPOSITORY": self.config.repository,
            "RESTIC_PASSWORD_FILE": self.config.password_file,
            "RESTIC_CACHE_DIR": self.config.cache_dir,
            "RESTIC_PROGRESS_FPS": "0.0166",
        }
        if self.config.env_file:
            try:
                env.update(parse_env_file(Path(self.config.env_file).read_text(encoding="utf-8")))
            except OSError as exc:
                raise BackupError(f"cannot read env file {self.config.env_file}: {exc.strerror}") from exc
        return env

    def argv(self, *args: str) -> list[str]:
        argv = [self.config.restic]
        if self.config.sftp_command:
            argv += ["-o", f"sftp.command={self.config.sftp_command}"]
        return argv + list(args)

    def run(self, *args: str, timeout: float | None = None) -> str:
        return self.runner(self.argv(*args), env=self.env(), timeout=timeout)

    def backup(self, paths: Sequence[str]) -> dict[str, Any]:
        args = ["backup", "--json", "--quiet", "--host", self.config.host, "--tag", TAG]
        for pattern in self.config.exclude:
            args += ["--exclude", pattern]
        return summary_from_backup_json(self.run(*args, *paths))

    def snapshots(self) -> list[dict[str, Any]]:
        output = self.run("snapshots", "--json", "--host", self.config.host, "--tag", TAG)
        data = json.loads(output or "[]")
        return list(data or [])

    def forget(self) -> None:
        c = self.config
        self.run(
            "forget",
            "--prune",
            "--host",
            c.host,
            "--tag",
            TAG,
            "--keep-daily",
            str(c.keep_daily),
            "--keep-weekly",
            str(c.keep_weekly),
            "--keep-monthly",
            str(c.keep_monthly),
        )

    def ensure_initialized(self) -> bool:
        """Create the repository if there is none; True when it was created. An unreachable or foreign
        repository is an error, never a reason to init a new one."""
        try:
            self.run("cat", "config")
            return False
        except BackupError as exc:
            # restic 0.14 has no distinct exit code for "no repository here" (0.17 added 10): match the
            # message both versions print.
            missing = ("Is there a repository at the following location", "repository does not exist")
            if not any(text in str(exc) for text in missing):
                raise
        self.run("init")
        return True

    def check(self, subset: str) -> str:
        return self.run("check", "--read-data-subset", subset)

    def restore(self, snapshot: str, target: Path, includes: Sequence[str]) -> None:
        args = ["restore", snapshot, "--target", str(target), "--host", self.config.host, "--tag", TAG]
        for include in includes:
            args += ["--include", include]
        self.run(*args)


# --------------------------------------------------------------------------------------------- postgres
class Postgres:
    def __init__(self, db: DatabaseConfig, runner: Runner | None = None) -> None:
        self.db = db
        self.runner: Runner = runner or run_command

    def tool(self, name: str) -> str:
        return str(Path(self.db.bindir) / name) if self.db.bindir else name

    def conn_args(self, dbname: str | None = None) -> list[str]:
        args = ["-U", self.db.user, "-p", str(self.db.port)]
        if self.db.host:
            args += ["-h", self.db.host]
        if dbname is not None:
            args += ["-d", dbname]
        return args

    def psql(self, dbname: str, sql: str) -> list[list[str]]:
        output = self.runner(
            [
                self.tool("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-F",
                "|",
                "-v",
                "ON_ERROR_STOP=1",
                *self.conn_args(dbname),
                "-c",
                sql,
            ],
            user=self.db.os_user,
        )
        return [line.split("|") for line in output.splitlines() if line]

    def table_manifest(self, dbname: str) -> dict[str, Any]:
        tables: dict[str, Any] = {}
        for table in self.db.key_tables:
            rows = self.psql(dbname, checksum_query(table))
            count, checksum = rows[0]
            tables[table] = {"rows": int(count), "checksum": checksum}
        return {"database": dbname, "tables": tables}

    def dump_globals(self, target: Path) -> None:
        self.runner(
            [self.tool("pg_dumpall"), "--globals-only", "--no-role-passwords", *self.conn_args()],
            user=self.db.os_user,
            stdout_path=target,
        )

    def dump(self, target: Path, snapshot_id: str | None = None) -> None:
        argv = [self.tool("pg_dump"), "-Fc", "-Z", str(self.db.compress), *self.conn_args(self.db.name)]
        if snapshot_id:
            argv += ["--snapshot", snapshot_id]
        self.runner(argv, user=self.db.os_user, stdout_path=target)

    def drop_database(self, dbname: str) -> None:
        self.runner([self.tool("dropdb"), "--if-exists", *self.conn_args(), dbname], user=self.db.os_user)

    def create_database(self, dbname: str) -> None:
        self.runner([self.tool("createdb"), *self.conn_args(), dbname], user=self.db.os_user)

    def restore_dump(self, dump: Path, dbname: str, *, clean: bool, no_owner: bool) -> None:
        argv = [self.tool("pg_restore"), "--exit-on-error", "--single-transaction", *self.conn_args(dbname)]
        if clean:
            argv += ["--clean", "--if-exists"]
        if no_owner:
            argv += ["--no-owner", "--no-acl"]
        self.runner(argv, user=self.db.os_user, stdin_path=dump)


@contextlib.contextmanager
def exported_snapshot(db: DatabaseConfig) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Hold a REPEATABLE READ transaction open and export its snapshot, so pg_dump and the manifest see
    exactly the same data even while the portal keeps writing."""
    pg = Postgres(db)
    argv = [pg.tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *pg.conn_args(db.name)]
    kwargs: dict[str, Any] = {}
    if db.os_user and os.geteuid() == 0:
        kwargs.update(user=db.os_user, group=db.os_user, extra_groups=[], cwd="/")
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n")
        proc.stdin.flush()
        snapshot_id = proc.stdout.readline().strip()
        if not snapshot_id:
            err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            raise BackupError(f"psql could not export a snapshot of {db.name}: {err.strip()[-300:]}")
        yield snapshot_id, proc
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.write("COMMIT;\n\\q\n")
            proc.stdin.flush()
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def manifest_in_snapshot(proc: subprocess.Popen[str], db: DatabaseConfig) -> dict[str, Any]:
    """Run the checksum queries inside the exported-snapshot transaction."""
    assert proc.stdin is not None and proc.stdout is not None
    tables: dict[str, Any] = {}
    for table in db.key_tables:
        proc.stdin.write(checksum_query(table) + ";\n")
        proc.stdin.flush()
        line = proc.stdout.readline().strip()
        if "|" not in line:
            raise BackupError(f"manifest query for {table} failed (is the table missing?)")
        count, checksum = line.split("|", 1)
        tables[table] = {"rows": int(count), "checksum": checksum}
    return {"database": db.name, "tables": tables}


# --------------------------------------------------------------------------------------------- status
class StatusStore:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.path = Path(config.state_dir) / "status.json"

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        return data if isinstance(data, dict) else {}

    def record(self, section: str, result: dict[str, Any]) -> dict[str, Any]:
        status = self.load()
        previous = status.get(section, {})
        if result.get("ok"):
            result["last_success"] = result["finished"]
        elif "last_success" in previous:
            result["last_success"] = previous["last_success"]
        # Keep the figures of the last good backup visible when a run fails.
        for key in ("bytes", "added_bytes", "snapshots", "snapshot_id"):
            if key not in result and key in previous:
                result[key] = previous[key]
        status[section] = result
        status["host"] = self.config.host
        status["repository"] = redact_repository(self.config.repository)
        status["schema"] = 1
        atomic_write(self.path, json.dumps(status, indent=2, sort_keys=True) + "\n", 0o640)
        self.write_metrics(status)
        return status

    def write_metrics(self, status: Mapping[str, Any]) -> None:
        if self.config.metrics_dir:
            atomic_write(Path(self.config.metrics_dir) / METRICS_FILE, render_metrics(status), 0o644)


def redact_repository(repository: str) -> str:
    """Drop credentials someone may have put into an s3/rest URL."""
    return re.sub(r"//[^/@]*@", "//***@", repository)


@contextlib.contextmanager
def host_lock(config: Config) -> Iterator[None]:
    """Serialise jobs on this host (backup, drill, restore) — restic 0.14 has no lock retry of its own."""
    path = Path(config.state_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        deadline = time.monotonic() + config.lock_timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackupError(
                        f"another schoolgate-backup job holds {path} for more than {config.lock_timeout} s"
                    ) from None
                time.sleep(5)
        yield


def _now() -> float:
    return time.time()


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------- jobs
def prepare_spool(config: Config) -> Path:
    spool = config.spool_dir
    if spool.exists():
        shutil.rmtree(spool)
    # pg_dump runs as the database OS user but writes through our file descriptors, so the spool stays
    # root-only and nobody else can read the dump before restic encrypts it.
    spool.mkdir(parents=True, mode=0o700)
    return spool


def dump_database(config: Config, spool: Path) -> dict[str, Any]:
    db = config.database
    assert db is not None
    Postgres(db).dump_globals(spool / GLOBALS_NAME)
    with exported_snapshot(db) as (snapshot_id, proc):
        manifest = manifest_in_snapshot(proc, db)
        Postgres(db).dump(spool / DUMP_NAME, snapshot_id)
    manifest["dumped_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest["dump_bytes"] = (spool / DUMP_NAME).stat().st_size
    atomic_write(spool / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n", 0o600)
    return manifest


def job_backup(config: Config, store: StatusStore, *, prune: bool, check: bool) -> int:
    started = _now()
    result: dict[str, Any] = {"started": started, "ok": False, "step": "dump"}
    rc = 0
    try:
        spool = prepare_spool(config)
        if config.database:
            manifest = dump_database(config, spool)
            result["tables"] = manifest["tables"]
            log(
                f"dumped {config.database.name}: {manifest['dump_bytes']} bytes, "
                + ", ".join(f"{t}={v['rows']} rows" for t, v in manifest["tables"].items())
            )
        missing = [p for p in config.paths if not os.path.exists(p)]
        if missing:
            log(f"warning: configured paths missing, skipped: {', '.join(missing)}")
        paths = [str(spool)] + [p for p in config.paths if os.path.exists(p)]
        restic = Restic(config)
        result["step"] = "restic backup"
        summary = restic.backup(paths)
        result.update(
            snapshot_id=summary.get("snapshot_id", ""),
            bytes=int(summary.get("total_bytes_processed", 0)),
            added_bytes=int(summary.get("data_added", 0)),
            files=int(summary.get("total_files_processed", 0)),
        )
        log(
            f"snapshot {result['snapshot_id'][:8]}: {result['bytes']} bytes processed, "
            f"{result['added_bytes']} added"
        )
        if prune:
            result["step"] = "restic forget --prune"
            restic.forget()
        result["step"] = "restic snapshots"
        result["snapshots"] = len(restic.snapshots())
        result["ok"] = True
        result.pop("step")
    except BackupError as exc:
        result["error"] = str(exc)
        log(f"backup FAILED at {result['step']}: {exc}")
        rc = 1
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(config.spool_dir)
        result["finished"] = _now()
        result["duration_seconds"] = round(result["finished"] - started, 3)
        store.record("backup", result)
    if check and rc == 0:
        rc = job_check(config, store)
    return rc


def job_check(config: Config, store: StatusStore, subset: str | None = None) -> int:
    started = _now()
    subset = subset or read_data_subset(config.check_subset_count, started)
    result: dict[str, Any] = {"started": started, "ok": False, "subset": subset}
    try:
        Restic(config).check(subset)
        result["ok"] = True
        log(f"restic check --read-data-subset {subset}: no errors")
    except BackupError as exc:
        result["error"] = str(exc)
        log(f"restic check --read-data-subset {subset} FAILED: {exc}")
    result["finished"] = _now()
    result["duration_seconds"] = round(result["finished"] - started, 3)
    store.record("check", result)
    return 0 if result["ok"] else 1


@contextlib.contextmanager
def workdir(config: Config) -> Iterator[Path]:
    base = Path(config.state_dir) / "work"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(prefix="restore-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def restored_spool(config: Config, snapshot: str, target: Path) -> tuple[Path, dict[str, Any]]:
    spool = str(config.spool_dir)
    Restic(config).restore(snapshot, target, [spool])
    restored = target / spool.lstrip("/")
    dump = restored / DUMP_NAME
    manifest_path = restored / MANIFEST_NAME
    if not dump.is_file() or not manifest_path.is_file():
        raise BackupError(f"snapshot {snapshot} holds no database dump (was the database configured?)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return dump, manifest


def job_drill(config: Config, store: StatusStore) -> int:
    db = config.database
    started = _now()
    result: dict[str, Any] = {"started": started, "ok": False, "step": "restore from repository"}
    try:
        if db is None:
            raise BackupError("no database configured: nothing to drill")
        snapshots = Restic(config).snapshots()
        if not snapshots:
            raise BackupError("the repository holds no snapshot of this host yet")
        latest = max(snapshots, key=lambda snap: snap.get("time", ""))
        result["snapshot_id"] = latest.get("id", "")
        with workdir(config) as target:
            dump, manifest = restored_spool(config, result["snapshot_id"], target)
            pg = Postgres(db)
            result["step"] = "pg_restore into scratch database"
            pg.drop_database(db.scratch_name)
            pg.create_database(db.scratch_name)
            try:
                pg.restore_dump(dump, db.scratch_name, clean=False, no_owner=True)
                result["step"] = "compare with dump-time manifest"
                actual = pg.table_manifest(db.scratch_name)
            finally:
                with contextlib.suppress(BackupError):
                    pg.drop_database(db.scratch_name)
        problems = compare_manifests(manifest, actual)
        result["tables"] = actual["tables"]
        result["dumped_at"] = manifest.get("dumped_at")
        if problems:
            raise BackupError("; ".join(problems))
        result["ok"] = True
        result.pop("step")
        log(
            f"restore drill of snapshot {result['snapshot_id'][:8]}: "
            + ", ".join(f"{t} {v['rows']} rows ok" for t, v in actual["tables"].items())
        )
    except BackupError as exc:
        result["error"] = str(exc)
        log(f"restore drill FAILED at {result['step']}: {exc}")
    result["finished"] = _now()
    result["duration_seconds"] = round(result["finished"] - started, 3)
    store.record("drill", result)
    return 0 if result["ok"] else 1


def job_restore(config: Config, store: StatusStore, args: argparse.Namespace) -> int:
    """Restore a snapshot: the database (verified against its manifest) and/or files."""
    started = _now()
    result: dict[str, Any] = {"started": started, "ok": False, "snapshot_id": args.snapshot}
    report: dict[str, Any] = {"snapshot": args.snapshot}
    try:
        if args.database:
            db = config.database
            if db is None:
                raise BackupError("no database configured")
            target_db = args.target_database or db.name
            if not DBNAME_RE.match(target_db):
                raise BackupError(f"target database {target_db!r} is not a plain database name")
            with workdir(config) as target:
                dump, manifest = restored_spool(config, args.snapshot, target)
                pg = Postgres(db)
                if target_db != db.name:
                    pg.drop_database(target_db)
                    pg.create_database(target_db)
                # --clean + --single-transaction: the live database is fully restored or left untouched.
                pg.restore_dump(dump, target_db, clean=target_db == db.name, no_owner=target_db != db.name)
                actual = pg.table_manifest(target_db)
            problems = compare_manifests(manifest, actual)
            report["database"] = {
                "name": target_db,
                "dumped_at": manifest.get("dumped_at"),
                "tables": actual["tables"],
                "equal": not problems,
                "problems": problems,
            }
            if problems:
                raise BackupError("restored database differs from the dump: " + "; ".join(problems))
        if args.paths:
            for path in args.paths:
                if not path.startswith("/"):
                    raise BackupError(f"restore path {path!r} must be absolute")
            target = Path(args.files_target)
            target.mkdir(parents=True, exist_ok=True)
            Restic(config).restore(args.snapshot, target, args.paths)
            report["files"] = {"paths": args.paths, "target": str(target)}
        result["ok"] = True
    except BackupError as exc:
        result["error"] = str(exc)
        report["error"] = str(exc)
    result["finished"] = _now()
    store.record("restore", result)
    print(json.dumps(report, sort_keys=True))
    return 0 if result["ok"] else 1


def job_init(config: Config) -> int:
    """Used by the role: create the repository when missing; prints {"changed": bool} for Ansible."""
    try:
        created = Restic(config).ensure_initialized()
    except BackupError as exc:
        print(json.dumps({"changed": False, "failed": True, "msg": str(exc)}))
        return 1
    print(json.dumps({"changed": created, "repository": redact_repository(config.repository)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schoolgate-backup", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="dump + backup + forget/prune + check")
    sub.add_parser("backup", help="dump + backup only")
    check = sub.add_parser("check", help="restic check with a rotating data subset")
    check.add_argument("--subset", help="override, e.g. 1/1 to read all data")
    sub.add_parser("drill", help="restore the latest dump into a scratch database and compare")
    restore = sub.add_parser("restore", help="restore a snapshot")
    restore.add_argument("--snapshot", default="latest")
    restore.add_argument("--database", action="store_true", help="restore the database dump")
    restore.add_argument("--target-database", help="restore into this database instead of the live one")
    restore.add_argument("--path", dest="paths", action="append", default=[], help="file path to restore")
    restore.add_argument("--files-target", default="/", help="directory to restore files under")
    sub.add_parser("init", help="create the repository if it does not exist yet")
    sub.add_parser("status", help="print status.json")
    sub.add_parser("metrics", help="re-render the textfile metrics from status.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)
    try:
        config = load_config(args.config)
    except BackupError as exc:
        print(f"schoolgate-backup: {exc}", file=sys.stderr)
        return 2
    store = StatusStore(config)
    if args.command == "status":
        print(json.dumps(store.load(), indent=2, sort_keys=True))
        return 0
    if args.command == "metrics":
        store.write_metrics(store.load())
        return 0
    try:
        with host_lock(config):
            if args.command == "init":
                return job_init(config)
            if args.command == "run":
                return job_backup(config, store, prune=True, check=True)
            if args.command == "backup":
                return job_backup(config, store, prune=False, check=False)
            if args.command == "check":
                return job_check(config, store, args.subset)
            if args.command == "drill":
                return job_drill(config, store)
            if args.command == "restore":
                if not args.database and not args.paths:
                    print("schoolgate-backup: restore needs --database and/or --path", file=sys.stderr)
                    return 2
                return job_restore(config, store, args)
    except BackupError as exc:
        print(f"schoolgate-backup: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
