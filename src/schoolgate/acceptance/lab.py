"""`make lab`'s last step: the integration test against the freshly converged lab, with a short load phase,
and where each school's HTML report is."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from schoolgate.lab import podman, site

LAB_LOAD_SECONDS = 15


def run_integration_test(
    inventory: Path, ns: str, log: Callable[[str], None], *, load_seconds: float = LAB_LOAD_SECONDS
) -> int:
    log("")
    log(f"integration test (playbooks/integration_test.yml, load {load_seconds:.0f} s) ...")
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            "playbooks/integration_test.yml",
            "-e",
            f"acceptance_load_seconds={load_seconds}",
            "-e",
            "acceptance_fail_on_failure=false",
        ],
        cwd=podman.PROJECT_DIR,
        env=site.ansible_env(ns),
        capture_output=True,
        text=True,
        check=False,
    )
    prefix = f"{ns}-" if ns else ""
    root = podman.PROJECT_DIR / "reports" / "acceptance"
    reports = [
        p
        for p in sorted(root.glob(f"{prefix}school-*/acceptance.json"))
        if not p.parent.name.endswith("-promote")
    ]
    if proc.returncode != 0 or not reports:
        log(f"integration test could not run (exit {proc.returncode}):")
        for line in (proc.stdout + proc.stderr).splitlines()[-25:]:
            log(f"  {line}")
        return proc.returncode or 1
    failed = 0
    for path in reports:
        data = json.loads(path.read_text(encoding="utf-8"))
        load = data.get("load") or {}
        verdict = "PASSED" if data.get("passed") else "FAILED"
        failed += 0 if data.get("passed") else 1
        log(
            f"{data['target'].get('school', path.parent.name)}: integration test {verdict} "
            f"({data['totals']['passed']}/{len(data['cases'])} cases; load {load.get('clients', 0)} clients: "
            f"{load.get('rate_rps', 0):.0f} req/s, p95 {load.get('p95_s', 0):.3f} s, "
            f"5xx {load.get('errors_5xx', 0)})"
        )
        log(f"  report: {path.with_suffix('.html')}")
    return 1 if failed else 0
