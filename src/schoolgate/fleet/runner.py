"""One wave (or the whole fleet in check mode) through ansible-runner, with live progress."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schoolgate.fleet.progress import Display, WaveProgress, event_handler

PROJECT = Path(__file__).resolve().parents[3]
PLAYBOOK = PROJECT / "playbooks" / "rollout.yml"


@dataclass
class WaveOutcome:
    rc: int
    status: str  # runner status: successful | failed | timeout | canceled
    passed_gate: bool
    failed: list[str]
    done: list[str]
    artifacts: dict[str, Any]
    artifact_dir: str


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"true", "yes", "1"}


def stage_tags(stages: Sequence[str]) -> list[str]:
    return [f"stage_{s}" for s in stages]


def fact_cache_dir(inventory: str) -> Path:
    """One fact cache per inventory: hosts of the same name in two inventories (lab namespaces, two regions)
    must never share cached facts (addresses differ)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(inventory).resolve().as_posix())
    return PROJECT / ".cache" / "facts-fleet" / slug.strip("-")[-120:]


def runner_env(inventory: str) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        # A caller that already chose a fact cache (e.g. `schoolgate lab` per namespace) keeps it.
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": os.environ.get("ANSIBLE_CACHE_PLUGIN_CONNECTION")
        or str(fact_cache_dir(inventory)),
        "ANSIBLE_NOCOLOR": "1",
    }
    for key in ("CONTAINERS_CONF", "ANSIBLE_VAULT_PASSWORD_FILE", "HOME", "SCHOOLGATE_LAB"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def run_wave(
    *,
    inventory: str,
    hosts: Sequence[str],
    wave: str,
    index: int,
    total_waves: int,
    max_fail_percentage: int,
    results_dir: Path,
    run_id: str,
    stages: Sequence[str] = (),
    check: bool = False,
    require_gate: bool = False,
    forks: int | None = None,
    extra_vars: dict[str, Any] | None = None,
    artifacts_dir: Path | None = None,
    display: Display | None = None,
) -> WaveOutcome:
    import ansible_runner  # heavy import, only when a wave really runs

    display = display or Display()
    progress = WaveProgress(wave, index, total_waves, list(hosts))
    extravars: dict[str, Any] = {
        **(extra_vars or {}),
        "rollout_wave": wave,
        "rollout_max_fail_percentage": max_fail_percentage,
        "rollout_results_dir": str(results_dir.resolve()),
        "rollout_run_id": run_id,
    }
    if require_gate:
        extravars["rollout_require_gate"] = True
        extravars["rollout_continue"] = True  # `schoolgate fleet` only starts a wave after a passed gate
    cmdline: list[str] = []
    if check:
        cmdline += ["--check", "--diff"]
    if stages:
        cmdline += ["--tags", ",".join(stage_tags(stages))]
    private = Path(tempfile.mkdtemp(prefix="schoolgate-fleet-"))
    display.show(progress.line(), force=True)
    runner = ansible_runner.run(
        private_data_dir=str(private),
        artifact_dir=str(artifacts_dir) if artifacts_dir else None,
        ident=f"{run_id}-{wave}",
        project_dir=str(PROJECT),
        playbook=str(PLAYBOOK),
        inventory=str(Path(inventory).resolve()),
        limit=",".join(hosts),
        extravars=extravars,
        cmdline=" ".join(cmdline) if cmdline else None,
        envvars=runner_env(inventory),
        forks=forks,
        event_handler=event_handler(progress, display),
        quiet=True,
        suppress_env_files=True,
    )
    display.finish(progress.line())
    # The gate passes only when the playbook's gate play ran and said so: when every school of the wave
    # failed, Ansible ends the playbook before the gate and no verdict exists.
    passed = _truthy(progress.artifacts.get("rollout_continue")) and not progress.gate_failed
    shutil.rmtree(private, ignore_errors=True)
    return WaveOutcome(
        rc=int(runner.rc),
        status=str(runner.status),
        passed_gate=passed,
        failed=sorted(progress.failed),
        done=sorted(progress.done),
        artifacts=progress.artifacts,
        artifact_dir=str(runner.config.artifact_dir),
    )
