"""Audit against a real systemd container: read-only (changed=0), and injected violations flip exactly the
check that proves them, with real evidence gathered by audit_facts over the podman connection.

First slice of issue 13's violation matrix: a bare lab host (no schoolgate roles) carries the two violations
that need no converged school (secret file mode, volatile journald). The full matrix needs a converged
lab school.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schoolgate.audit.catalogue import load_catalogue
from schoolgate.audit.evaluate import evaluate_host

from .conftest import podman_exec

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "e2e-audit-school"


def audit(tmp: Path, *extra: str) -> tuple[dict[str, int], dict]:
    inv = tmp / "inventory.ini"
    inv.write_text(
        f"[schools]\n{HOST} ansible_connection=containers.podman.podman"
        " ansible_python_interpreter=/usr/bin/python3\n",
        encoding="utf-8",
    )
    out = tmp / f"evidence-{len(list(tmp.glob('evidence-*')))}"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", ANSIBLE_NOCOLOR="1")
    env.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
    res = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inv),
            "playbooks/audit.yml",
            "-e",
            f"audit_evidence_dir={out}",
            "-e",
            "audit_check_updates=false",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    recap = next(line for line in res.stdout.splitlines() if line.startswith(HOST) and "ok=" in line)
    stats = {k: int(v) for k, v in (p.split("=") for p in recap.split(":", 1)[1].split())}
    (evidence_file,) = out.glob(f"{HOST}-*.json")
    return stats, json.loads(evidence_file.read_text(encoding="utf-8"))


def statuses(evidence: dict) -> dict[str, str]:
    return {r.check.id: r.status for r in evaluate_host(evidence, load_catalogue(), [])}


@pytest.fixture(scope="module")
def school(lab_host) -> str:
    return lab_host(HOST)


def test_audit_is_read_only_and_flips_injected_violations(school: str, tmp_path: Path) -> None:
    assert podman_exec(school, "sh", "-c", "mkdir -p /etc/schoolgate /etc/systemd/journald.conf.d")[0] == 0
    podman_exec(
        school,
        "sh",
        "-c",
        "echo token > /etc/schoolgate/provider-token && chmod 0644 /etc/schoolgate/provider-token",
    )
    podman_exec(
        school,
        "sh",
        "-c",
        "printf '[Journal]\\nStorage=volatile\\n' > /etc/systemd/journald.conf.d/zz-audit-test.conf",
    )

    stats, bad = audit(tmp_path)
    assert stats["changed"] == 0 and stats["failed"] == 0
    before = statuses(bad)
    assert before["SECRET-PERMS"] == "fail" and before["LOG-JOURNALD"] == "fail"
    assert "token" not in json.dumps(bad["facts"]["files"]).replace("provider-token", "")

    podman_exec(school, "chmod", "0600", "/etc/schoolgate/provider-token")
    podman_exec(
        school,
        "sh",
        "-c",
        "printf '[Journal]\\nStorage=persistent\\n' > /etc/systemd/journald.conf.d/zz-audit-test.conf",
    )
    stats, good = audit(tmp_path, "--check")
    assert stats["changed"] == 0
    after = statuses(good)
    assert after["SECRET-PERMS"] == "pass" and after["LOG-JOURNALD"] == "pass"
    # nothing else moved between the two runs: each injected violation flipped only its own check
    assert {k for k in before if before[k] != after[k]} == {"SECRET-PERMS", "LOG-JOURNALD"}
