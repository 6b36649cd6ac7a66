"""Audit timing: the read-only playbook against lab schools, and report generation for a large fleet.

1. `--lab NS` (or `--inventory`): runs `ansible-playbook playbooks/audit.yml` (quick mode) for real against
   lab hosts - one school, then the whole `--limit` - and prints wall time, the CPU seconds Ansible and its
   workers used, and the load average. Targets (issue 13): one school <= 60 s without OpenSCAP; a fleet of
   10 <= 3x one school. Needs a lab namespace with schools
   (`SCHOOLGATE_LAB=aud schoolgate lab up --schools 10`)
   on which at least base + tls ran (tls_probe needs a real portal).
2. Always: `schoolgate audit report` over N synthetic evidence files (JSON + JUnit + HTML), controller side.

    python bench/bench_audit.py [--hosts 500]
    python bench/bench_audit.py --lab aud --one school-001 --limit schools [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_agent_common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "audit"))

from audit_fixtures import VIOLATIONS, clean_evidence, with_violation  # noqa: E402

from schoolgate.cli import main as cli_main  # noqa: E402


def bench_report(hosts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ev_dir = Path(tmp) / "ev"
        ev_dir.mkdir()
        ids = sorted(VIOLATIONS)
        for i in range(hosts):
            host = f"school-{i:04d}"
            # every 7th school carries one violation so the failure paths of the reports are exercised
            ev = with_violation(ids[i % len(ids)], host) if i % 7 == 0 else clean_evidence(host)
            (ev_dir / f"{host}-20261204T120000Z.json").write_text(json.dumps(ev), encoding="utf-8")
        t0 = time.perf_counter()
        with open(os.devnull, "w") as devnull:
            stdout, sys.stdout = sys.stdout, devnull
            try:
                rc = cli_main(["audit", "report", "--evidence", str(ev_dir), "--out", str(Path(tmp) / "out")])
            finally:
                sys.stdout = stdout
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "out").iterdir())
        print(
            f"report: {hosts} hosts x {len(ids)} checks in {dt:.2f} s (rc {rc}), reports {size / 1e6:.1f} MB"
        )


def bench_playbook(inventory: str, limit: str, label: str, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        load0 = os.getloadavg()[0]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                inventory,
                "playbooks/audit.yml",
                "-l",
                limit,
                "-e",
                f"audit_evidence_dir={tmp}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        dt = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        n = len(list(Path(tmp).glob("*.json")))
    print(
        f"playbook {label} ({limit}): {n} evidence files in {dt:.1f} s (rc {res.returncode}), controller CPU"
        f" {cpu:.1f} s ({cpu / max(n, 1):.1f} s/host), loadavg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    if res.returncode != 0:
        print(res.stdout[-2000:], file=sys.stderr)
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--inventory")
    ap.add_argument("--lab", help="lab namespace: its inventory and fact cache (as `lab playbook`)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the best is compared")
    ap.add_argument("--one", default="school-001")
    ap.add_argument("--limit", default="schools")
    args = ap.parse_args()
    print(machine())
    bench_report(args.hosts)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    inventory = args.inventory
    if args.lab:
        from schoolgate.lab import cli as lab_cli
        from schoolgate.lab import site

        env.update(site.ansible_env(args.lab))
        inventory = inventory or str(lab_cli.inventory_path(args.lab))
    if inventory:
        one = min(bench_playbook(inventory, args.one, "one school", env) for _ in range(args.repeat))
        fleet = min(bench_playbook(inventory, args.limit, "fleet", env) for _ in range(args.repeat))
        print(f"one school {one:.1f} s (target <= 60 s): {'ok' if one <= 60 else 'MISSED'}")
        print(f"fleet / one = {fleet / one:.2f} (target <= 3): {'ok' if fleet <= 3 * one else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
