#!/usr/bin/env python3
"""Benchmark: backup and restore time of a ~1 GB portal database with schoolgate-backup (pg_dump + restic).

Runs on this machine against a private, throw-away PostgreSQL cluster (initdb in a temp dir, Unix socket only,
no TCP) and a local restic repository, using the real host script roles/backup/files/schoolgate_backup.py and
the portal_db role's schema/seed SQL. Needs root (PostgreSQL tools run as user postgres) and Debian's
postgresql and restic packages.

    sudo .venv/bin/python bench/bench_backup.py [--size-gb 1.0] [--keep]

Prints the machine and: seed time, database size, dump + backup time (first and second, deduplicated, run),
restic check, restore drill (restore into a scratch database + row-count/checksum comparison), and a full
restore into a new database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "roles" / "backup" / "files" / "schoolgate_backup.py"
SQL = ROOT / "roles" / "portal_db" / "files"
PORT = 55439
# Bytes per row measured on PostgreSQL 15 with this schema (table + indexes): grades ~138, attendance ~95.
GRADE_BYTES, ATTENDANCE_BYTES = 138, 95


def run(argv: list[str], *, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=check, capture_output=True, text=True, cwd="/")


def timed(argv: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = run(argv, check=False, **kwargs)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(
            f"FAILED ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return elapsed, proc


def pg_bindir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        sys.exit("PostgreSQL server binaries not found: apt-get install postgresql")
    return versions[-1].parent


def machine() -> str:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    restic = run(["restic", "version"]).stdout.strip()
    pg = run([str(pg_bindir() / "postgres"), "--version"]).stdout.strip()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} cores | {mem} MiB RAM | "
        f"{platform.platform()} | {pg} | {restic} | load average at start {load}"
    )


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="target database size (default 1.0)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (PostgreSQL tools run as user postgres)")
    for tool in ("restic", "runuser"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install restic)")

    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="sgb-bench-"))
    os.chmod(work, 0o755)
    bindir = pg_bindir()
    data, sock = work / "pgdata", work / "sock"
    sock.mkdir()
    shutil.chown(sock, "postgres", "postgres")
    shutil.chown(work, "postgres", "postgres")
    try:
        run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "peer", "-E", "UTF8", "--locale=C.UTF-8"],
            user="postgres",
        )
        run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(work / "pg.log"),
                "-w",
                "start",
                "-o",
                f"-p {PORT} -k {sock} -c listen_addresses='' -c shared_buffers=512MB -c max_wal_size=4GB",
            ],
            user="postgres",
        )
        psql = ["psql", "-X", "-q", "-h", str(sock), "-p", str(PORT), "-v", "ON_ERROR_STOP=1"]
        run([*psql, "-c", "CREATE DATABASE portal"], user="postgres")
        run([*psql, "-d", "portal", "-f", str(SQL / "schema.sql")], user="postgres")

        classes, per_class = 44, 30
        pupils = classes * per_class
        per_pupil = args.size_gb * 1e9 / pupils
        # Split the per-pupil budget: ~45 % grades, ~55 % attendance (a school keeps years of both).
        grades = max(1, int(per_pupil * 0.45 / GRADE_BYTES))
        attendance = max(1, int(per_pupil * 0.55 / ATTENDANCE_BYTES))
        seed_s, _ = timed(
            [
                *psql,
                "-d",
                "portal",
                "-v",
                f"classes={classes}",
                "-v",
                f"pupils_per_class={per_class}",
                "-v",
                f"grades_per_pupil={grades}",
                "-v",
                f"attendance_per_pupil={attendance}",
                "-f",
                str(SQL / "seed.sql"),
            ],
            user="postgres",
        )
        size = int(
            run(
                [*psql, "-A", "-t", "-d", "portal", "-c", "SELECT pg_database_size('portal')"],
                user="postgres",
            ).stdout
        )
        print(
            f"seed: {pupils} pupils, {pupils * grades} grades, {pupils * attendance} attendance rows "
            f"in {seed_s:.1f} s; database size {size / 1e9:.2f} GB"
        )

        password = work / "restic-password"
        password.write_text(os.urandom(24).hex() + "\n")
        password.chmod(0o600)
        config = {
            "repository": str(work / "repo"),
            "password_file": str(password),
            "host": "bench-school",
            "state_dir": str(work / "state"),
            "metrics_dir": str(work / "metrics"),
            "cache_dir": str(work / "cache"),
            "paths": [],
            "check_subset_count": 1,
            "database": {
                "name": "portal",
                "user": "postgres",
                "os_user": "postgres",
                "host": str(sock),
                "port": PORT,
                "key_tables": ["classes", "pupils", "grades", "attendance"],
            },
        }
        (work / "backup.json").write_text(json.dumps(config))
        sgb = [sys.executable, str(SCRIPT), "--config", str(work / "backup.json")]
        run([*sgb, "init"])

        results: list[tuple[str, float, str]] = []
        secs, _ = timed([*sgb, "backup"])
        status = json.loads((work / "state" / "status.json").read_text())["backup"]
        results.append(
            (
                "backup #1 (dump + manifest + restic, empty repo)",
                secs,
                f"dump {status['bytes'] / 1e6:.0f} MB, added {status['added_bytes'] / 1e6:.0f} MB",
            )
        )
        secs, _ = timed([*sgb, "backup"])
        status = json.loads((work / "state" / "status.json").read_text())["backup"]
        results.append(
            ("backup #2 (unchanged data, deduplicated)", secs, f"added {status['added_bytes'] / 1e6:.1f} MB")
        )
        secs, _ = timed([*sgb, "check", "--subset", "1/1"])
        results.append(
            ("restic check --read-data (all packs)", secs, f"repo {du(work / 'repo') / 1e6:.0f} MB")
        )
        secs, _ = timed([*sgb, "drill"])
        results.append(("restore drill (restore + pg_restore scratch + compare)", secs, "manifest equal"))
        secs, proc = timed([*sgb, "restore", "--database", "--target-database", "portal_restored"])
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(
            (
                "restore into a new database + verify",
                secs,
                "equal" if report["database"]["equal"] else "DIFFERENT",
            )
        )

        print(f"{'step':58} {'seconds':>8}  {'MB/s (of DB size)':>18}  note")
        for name, secs, note in results:
            print(f"{name:58} {secs:8.1f}  {size / 1e6 / secs:18.1f}  {note}")
        print("load average at end: " + " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], user="postgres", check=False)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
