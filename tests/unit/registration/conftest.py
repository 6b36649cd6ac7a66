"""Fixtures: a really started simulator on 127.0.0.1 and real `ansible-playbook` runs of the role."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

# The simulator's process helper and scripted client belong to the sim area; reuse them.
from sim.simclient import SimProcess, dossier

from schoolgate.sim.keys import csr_for, generate_key

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _stdlib_python(tmp: Path) -> Path:
    system = shutil.which("python3", path="/usr/bin:/bin")
    assert system, "system python3 needed"
    wrapper = tmp / "python3-stdlib-only"
    if not wrapper.exists():
        wrapper.write_text(f'#!/bin/sh\nexec {system} -S "$@"\n')
        wrapper.chmod(0o755)
    return wrapper


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def recap(self) -> dict[str, int]:
        for line in self.stdout.splitlines():
            if line.startswith("localhost") and "ok=" in line:
                return {k: int(v) for k, v in (p.split("=") for p in line.split(":", 1)[1].split())}
        raise AssertionError("no PLAY RECAP in output:\n" + self.output[-3000:])


def run_playbook(
    playbook: Path,
    extra: dict[str, Any],
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    inventory: str = "localhost,",
) -> PlaybookRun:
    vars_file = tmp / f"vars-{os.urandom(4).hex()}.json"
    vars_file.write_text(json.dumps(extra))
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", inventory, str(playbook), "-e", f"@{vars_file}", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
            "ANSIBLE_CACHE_PLUGIN": "memory",
            "ANSIBLE_NOCOLOR": "1",
            # Like a target host: system python3 without site-packages (modules must be stdlib-only).
            "ANSIBLE_PYTHON_INTERPRETER": str(_stdlib_python(tmp)),
            "PATH": f"{BIN}:{os.environ['PATH']}",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    vars_file.unlink()
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    state = tmp_path_factory.mktemp("regsim") / "state"
    process = SimProcess(state).start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _no_faults(sim: SimProcess) -> Iterator[None]:
    yield
    requests.delete(sim.base + "/admin/v1/faults", timeout=10)


@pytest.fixture(scope="session")
def access_code(sim: SimProcess) -> str:
    resp = requests.post(sim.base + "/region/v1/dossiers", json=dossier("school-reg"), timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()["access_code"]


def issue_certificate(base: str, code: str, directory: Path, cn: str) -> Path:
    """A GOST key made here and a certificate from the simulator's УЦ (as the signing_cert role would)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key(directory / "key.pem", "gost")
    csr = csr_for(key, f"/C=RU/O=Test school/CN={cn}")
    resp = requests.post(
        base + "/ca/v1/certificates",
        json={"csr": csr.decode(), "days": 30},
        headers={"X-Access-Code": code},
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    cert = directory / "cert.pem"
    cert.write_text(resp.json()["certificate"])
    return cert


@pytest.fixture(scope="session")
def certs(sim: SimProcess, access_code: str, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("certs")
    return [issue_certificate(sim.base, access_code, base / f"c{i}", f"school-reg {i}") for i in range(2)]


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """Stands in for /etc/schoolgate."""
    path = tmp_path / "etc-schoolgate"
    path.mkdir()
    return path


def role_vars(sim: SimProcess, code: str, cert: Path, etc: Path, name: str, **extra: Any) -> dict[str, Any]:
    import grp
    import pwd

    return {
        "registration_name": name,
        "registration_api_url": f"https://{name.lower()}.school.test/api",
        "registration_access_code": code,
        "registration_environment": "test",
        "registration_environments": {
            "test": {"base_url": sim.base, "ca_file": ""},
            "prod": {"base_url": ""},
        },
        "registration_certificate_path": str(cert),
        "registration_token_path": str(etc / "provider-token"),
        "registration_token_owner": pwd.getpwuid(os.getuid()).pw_name,
        "registration_token_group": grp.getgrgid(os.getgid()).gr_name,
        "registration_attempts": 3,
        "registration_backoff_s": 0.2,
        "registration_backoff_max_s": 2.0,
        "registration_timeout_s": 10.0,
        **extra,
    }
