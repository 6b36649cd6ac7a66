"""The audit_schedule runner script (roles/audit_schedule/templates/run-audit.sh.j2), rendered by Ansible and
run against the REAL playbooks/audit.yml and `schoolgate audit report` on this machine (connection local)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (BIN / "ansible").exists() or not SYSTEM_PYTHON, reason="needs ansible"),
]


def render(tmp: Path) -> Path:
    inv = tmp / "inventory.ini"
    inv.write_text(
        f"[schools]\nlocalhost ansible_connection=local ansible_python_interpreter={SYSTEM_PYTHON}\n",
        encoding="utf-8",
    )
    script = tmp / "run"
    variables = {
        "audit_schedule_project_dir": str(ROOT),
        "audit_schedule_venv": str(BIN.parent),
        "audit_schedule_inventory": str(inv),
        "audit_schedule_waivers_file": "",
        "audit_schedule_reports_dir": str(tmp / "reports"),
        "audit_schedule_retention_days": 30,
        "audit_schedule_hosts": "schools",
        # this machine's apt state and packages are not what is under test here
        "audit_schedule_extra_args": [
            "-e",
            "audit_check_updates=false",
            "-e",
            '{"audit_debsums_packages": []}',
        ],
    }
    res = subprocess.run(
        [
            str(BIN / "ansible"),
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "ansible.builtin.template",
            "-a",
            f"src={ROOT}/roles/audit_schedule/templates/run-audit.sh.j2 dest={script} mode=0755",
            "-e",
            json.dumps(variables),
            "-e",
            f"ansible_python_interpreter={SYSTEM_PYTHON}",
        ],
        cwd=ROOT,
        env=dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return script


def test_runner_gathers_reports_and_prunes(tmp_path: Path) -> None:
    script = render(tmp_path)
    assert "{{" not in script.read_text(encoding="utf-8")
    reports = tmp_path / "reports"
    (reports / "evidence").mkdir(parents=True)
    old = reports / "audit-report-20200101T000000Z.html"
    old.write_text("old")
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))

    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(
        [str(script), "quick"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    out = res.stdout + res.stderr
    # this development machine is no school server: checks fail, so the run exits 1 (not 2/3: it did run)
    assert res.returncode == 1, out[-3000:]
    (evidence,) = (reports / "evidence").glob("localhost-*.json")
    assert json.loads(evidence.read_text(encoding="utf-8"))["mode"] == "quick"
    for suffix in (".json", ".junit.xml", ".html"):
        assert list(reports.glob(f"audit-report-*{suffix}")), suffix
    assert not old.exists() and "pruned (older than 30 days)" in out

    bad = subprocess.run([str(script), "weekly"], env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "usage" in bad.stderr
