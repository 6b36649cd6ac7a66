"""Run the real `signing_cert` module on this machine (connection local) with real openssl + gost engine."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from schoolgate import pki

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent


def module_utils_path(tmp: Path) -> str:
    """The project's module_utils; until the ESIA core exposes itself there, a link to src/schoolgate/esia."""
    if (ROOT / "module_utils" / "schoolgate_esia").exists():
        return str(ROOT / "module_utils")
    shim = tmp / "module_utils"
    shim.mkdir(exist_ok=True)
    link = shim / "schoolgate_esia"
    if not link.exists():
        link.symlink_to(ROOT / "src" / "schoolgate" / "esia")
    return str(shim)


class ModuleRunner:
    """`ansible localhost -m signing_cert` with JSON output; keeps every byte of output for leak checks."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.outputs: list[str] = []
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.group = grp.getgrgid(os.getgid()).gr_name

    def __call__(self, check: bool = False, diff: bool = False, env: dict | None = None, **params) -> dict:
        params.setdefault("owner", self.user)
        params.setdefault("group", self.group)
        cmd = [
            str(VENV_BIN / "ansible"),
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
            "-m",
            "signing_cert",
            "-a",
            json.dumps(params),
        ]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        run_env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "ANSIBLE_LIBRARY": str(ROOT / "modules"),
            "ANSIBLE_MODULE_UTILS": module_utils_path(self.tmp),
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-tmp"),
            **(env or {}),
        }
        proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=ROOT, timeout=120)
        self.outputs.append(proc.stdout + proc.stderr)
        data = json.loads(proc.stdout)
        return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture
def run(tmp_path: Path) -> ModuleRunner:
    return ModuleRunner(tmp_path)


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return pki.init_ca(tmp_path_factory.mktemp("ca"), common_name="test УЦ")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return pki.init_ca(tmp_path_factory.mktemp("other-ca"), common_name="чужой УЦ")


@pytest.fixture
def hostdir(tmp_path: Path) -> Path:
    return tmp_path / "signing"
