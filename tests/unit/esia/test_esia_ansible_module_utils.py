"""AnsiballZ really packs module_utils/schoolgate_esia (a symlink to src/schoolgate/esia) and the parts a
module uses run on a target with the standard library only (python3 -S: no site-packages at all)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schoolgate.esia.certhash import client_certificate_hash
from schoolgate.esia.secret import esia_timestamp, new_state, verify_client_secret

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE = Path(sys.executable).parent / "ansible"


@pytest.fixture(scope="module")
def stdlib_python(tmp_path_factory) -> Path:
    system = shutil.which("python3", path="/usr/bin:/bin")
    assert system, "system python3 needed"
    wrapper = tmp_path_factory.mktemp("py") / "python3-stdlib-only"
    wrapper.write_text(f'#!/bin/sh\nexec {system} -S "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.slow
def test_ansiballz_packs_esia_module_utils(pairs, stdlib_python, tmp_path):
    assert (ROOT / "module_utils" / "schoolgate_esia").resolve() == ROOT / "src" / "schoolgate" / "esia"
    pair = pairs["gost256"]
    state, timestamp = new_state(), esia_timestamp()
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_CACHE_PLUGIN": "memory",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    args = f"cert={pair.cert} key={pair.key} client_id=SCHOOL-001 state={state} timestamp='{timestamp}'"
    proc = subprocess.run(
        [
            str(ANSIBLE),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-M",
            str(Path(__file__).parent / "ansible_modules"),
            "-m",
            "esia_probe",
            "-a",
            args,
            "-e",
            f"ansible_python_interpreter={stdlib_python}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    # packed into the AnsiballZ zip, not imported from the source tree
    assert "ansible/module_utils/schoolgate_esia/certhash.py" in result["module_utils_file"]
    assert ".zip" in result["module_utils_file"] and str(ROOT) not in result["module_utils_file"]
    # the target had no third-party packages at all
    assert result["cryptography_importable"] is False and result["jsonschema_importable"] is False
    assert "ansible.module_utils.schoolgate_esia.contracts" not in result["loaded"]
    # and it computed the real thing
    assert result["hash"] == client_certificate_hash(pair.cert_pem)
    assert result["info"]["algorithm"] == "GOST3410_2012_256"
    check = verify_client_secret(
        "v2",
        result["client_secret"],
        certificate=pair.cert_pem,
        client_id="SCHOOL-001",
        scope="openid",
        timestamp=timestamp,
        state=state,
        redirect_uri="https://school.example/cb",
        client_certificate_hash=result["hash"],
    )
    assert check.ok, check
    assert str(pair.key.read_bytes()[:40]) not in proc.stdout  # key material never in output
