"""`schoolgate lab run` (what `make lab` does): lab up, then site.yml against the lab inventory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from schoolgate.lab import podman

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)(?:\s+skipped=(?P<skipped>\d+))?"
)
IMPORT_RE = re.compile(r"import_playbook:\s*(\S+)")


@dataclass(frozen=True)
class Recap:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int


def parse_recap(output: str) -> dict[str, Recap]:
    """Host → counts from the PLAY RECAP block(s) of ansible-playbook output (last one wins)."""
    recaps: dict[str, Recap] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap:
            m = RECAP_RE.match(line.strip())
            if m:
                d = {k: int(v or 0) for k, v in m.groupdict().items() if k != "host"}
                recaps[m.group("host")] = Recap(m.group("host"), **d)
            elif line.strip():
                in_recap = False
    return recaps


def site_stages(site: Path) -> list[str]:
    return IMPORT_RE.findall(site.read_text()) if site.exists() else []


def ansible_playbook() -> str:
    """ansible-playbook of the venv this code runs from (PATH may not have the venv's bin/ first)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def ansible_env(ns: str = "") -> dict[str, str]:
    """Environment for ansible-playbook against a lab namespace.

    Each namespace gets its own fact cache: the same host name (`school-001`) exists in several namespaces
    with different addresses, and a shared jsonfile cache would hand one lab's facts to another.
    """
    env = podman.podman_env()
    env["ANSIBLE_CONFIG"] = str(podman.PROJECT_DIR / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    if ns:
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(podman.PROJECT_DIR / ".cache" / f"facts-{ns}")
    env[podman.NAMESPACE_ENV] = ns
    return env


def run_site(
    inventory: Path,
    log_dir: Path,
    extra: list[str] | None = None,
    *,
    ns: str = "",
    playbook: str = "site.yml",
) -> tuple[int, dict[str, Recap], Path]:
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(playbook).stem
    prefix = f"lab-{ns}-{stem}" if ns else f"lab-{stem}"
    log = log_dir / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    env = ansible_env(ns)
    # --flush-cache: lab containers get new addresses whenever they are recreated, and cached facts would make
    # exporters bind to an address the container no longer has.
    cmd = [ansible_playbook(), "--flush-cache", "-i", str(inventory), playbook, *(extra or [])]
    with open(log, "w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        # Straight into the log so `tail -f` shows progress of a long run.
        proc = subprocess.run(
            cmd,
            cwd=podman.PROJECT_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    return proc.returncode, parse_recap(log.read_text(errors="replace")), log


def failures(output: str, limit: int = 10) -> list[str]:
    """'host: TASK name: msg' for each failed task in ansible-playbook output."""
    found: list[str] = []
    task = "?"
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TASK ["):
            task = line[6 : line.find("]")]
        m = re.match(r"^fatal: \[(?P<host>[^\]]+)\]", line)
        if m:
            msg = next((ln.strip() for ln in lines[i + 1 : i + 15] if ln.strip().startswith("msg:")), "")
            found.append(f"{m.group('host')}: {task}: {msg[4:].strip() if msg else '(see log)'}")
    return found[:limit]
