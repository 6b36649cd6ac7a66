"""Real run of playbooks/audit.yml against this machine (connection local): it writes evidence on the
controller and reports nothing changed; a malformed waivers file stops it before any host is read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (BIN / "ansible-playbook").exists() or not SYSTEM_PYTHON, reason="needs ansible"),
]


def run(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-tmp"),
    )
    cmd = [
        str(BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "playbooks/audit.yml",
        "-e",
        "audit_hosts=localhost",
        "-e",
        f"ansible_python_interpreter={SYSTEM_PYTHON}",
        "-e",
        f"audit_evidence_dir={tmp / 'evidence'}",
        # apt simulation and debsums depend on this machine's package state and take seconds; the
        # evaluation of their evidence is unit-tested. The read-only property is what this test proves.
        "-e",
        "audit_check_updates=false",
        "-e",
        '{"audit_debsums_packages": []}',
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def recap(out: str) -> dict[str, int]:
    for line in out.splitlines():
        if line.startswith("localhost") and "ok=" in line:
            return {k: int(v) for k, v in (p.split("=") for p in line.split(":", 1)[1].split())}
    raise AssertionError("no PLAY RECAP:\n" + out[-3000:])


@pytest.mark.parametrize("mode", [[], ["--check", "--diff"]], ids=["run", "check"])
def test_audit_changes_nothing_and_writes_evidence(tmp_path: Path, mode: list[str]) -> None:
    res = run(tmp_path, *mode)
    stats = recap(res.stdout)
    assert res.returncode == 0 and stats["failed"] == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert stats["changed"] == 0, res.stdout[-3000:]
    files = list((tmp_path / "evidence").glob("localhost-*.json"))
    assert len(files) == 1
    ev = json.loads(files[0].read_text(encoding="utf-8"))
    assert ev["kind"] == "schoolgate-audit-evidence" and ev["host"] == "localhost"
    assert ev["tls"] and "journald" in ev["facts"] and "invocation" not in ev["facts"]


def test_malformed_waivers_stop_before_any_host_is_read(tmp_path: Path) -> None:
    bad = tmp_path / "waivers.yml"
    bad.write_text("waivers: [{check: NOPE}]\n", encoding="utf-8")
    res = run(tmp_path, "-e", f"audit_waivers_file={bad}")
    assert res.returncode != 0
    assert "unknown check id 'NOPE'" in res.stdout + res.stderr
    assert "Gather host evidence" not in res.stdout
    assert not list((tmp_path / "evidence").glob("*.json"))
