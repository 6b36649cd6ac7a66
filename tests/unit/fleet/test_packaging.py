"""AWX/AAP packaging: the schoolgate.kit collection builds, installs and really works; the EE context builds.

Proves the parts that break silently in a collection: modules importing the ESIA core through
module_utils (a symlink in the repository, real files in the collection), filters, the rollout callback,
roles and playbooks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from schoolgate.fleet import collection

BIN = Path(sys.executable).parent
PROJECT = collection.PROJECT


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(tarball, an ansible.cfg whose collections_path holds the installed collection)."""
    out = tmp_path_factory.mktemp("collection")
    tarball = collection.build(out)
    installed = out / "installed"
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", installed, tarball],
        check=True,
        capture_output=True,
        timeout=300,
    )
    cfg = out / "ansible.cfg"
    cfg.write_text(f"[defaults]\ncollections_path = {installed}\n", encoding="utf-8")
    return tarball, cfg


def _run(cfg: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cfg.parent,
        env={"ANSIBLE_CONFIG": str(cfg), "PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"},
    )


def test_collection_contents(built):
    tarball, _ = built
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = set(members)
        for module in (PROJECT / "modules").glob("*.py"):
            assert f"plugins/modules/{module.name}" in names
            text = tar.extractfile(members[f"plugins/modules/{module.name}"]).read().decode()
            assert "ansible.module_utils.schoolgate_" not in text  # would not resolve inside a collection
        esia = members["plugins/module_utils/schoolgate_esia/certhash.py"]
        assert esia.isfile() and not esia.issym()  # the repository symlink became real files
        assert any(n.startswith("plugins/module_utils/schoolgate_esia/contracts/schemas/") for n in names)
        assert {
            "plugins/filter/tls.py",
            "plugins/callback/fleet_results.py",
            "meta/runtime.yml",
            "playbooks/rollout.yml",
            "playbooks/site.yml",
            "roles/base/meta/argument_specs.yml",
        } <= names
        for main in (PROJECT / "roles").glob("*/tasks/main.yml"):
            assert f"roles/{main.parent.parent.name}/tasks/main.yml" in names
        assert not [
            n for n in names if n.startswith((".venv", "reports/", "lab/", "tests/")) or "secrets" in n
        ]
        manifest = json.load(tar.extractfile(members["MANIFEST.json"]))
    assert manifest["collection_info"]["namespace"] == "schoolgate"
    assert manifest["collection_info"]["name"] == "kit"


def test_installed_collection_modules_filters_callback_work(built, tmp_path):
    _, cfg = built
    doc = _run(cfg, str(BIN / "ansible-doc"), "-t", "module", "schoolgate.kit.signing_cert")
    assert doc.returncode == 0 and "signing key" in doc.stdout, doc.stderr
    cb = _run(cfg, str(BIN / "ansible-doc"), "-t", "callback", "schoolgate.kit.fleet_results")
    assert cb.returncode == 0 and "rollout.yml" in cb.stdout, cb.stderr
    # The module imports the ESIA core from the collection's module_utils (it fails loudly when it cannot).
    mod = _run(
        cfg,
        str(BIN / "ansible"),
        "localhost",
        "-m",
        "schoolgate.kit.signing_cert",
        "-a",
        f"state=absent path={tmp_path}/signing",
        "--check",
    )
    assert mod.returncode == 0 and "SUCCESS" in mod.stdout, mod.stdout + mod.stderr
    flt = _run(
        cfg,
        str(BIN / "ansible"),
        "localhost",
        "-m",
        "debug",
        "-a",
        "msg={{ 'TLSv1.3' | schoolgate.kit.tls_version_at_least('TLSv1.2') }}",
    )
    assert flt.returncode == 0 and '"msg": true' in flt.stdout, flt.stdout + flt.stderr
    pb = _run(
        cfg, str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", "schoolgate.kit.rollout"
    )
    assert pb.returncode == 0, pb.stdout + pb.stderr


def test_execution_environment_context(built, tmp_path):
    tarball, _ = built
    # ansible-builder copies build/collection/*.tar.gz into the context: give it the tarball just built.
    staged = PROJECT / "build" / "collection"
    staged.mkdir(parents=True, exist_ok=True)
    target = staged / tarball.name
    target.write_bytes(tarball.read_bytes())
    ctx = tmp_path / "context"
    proc = subprocess.run(
        [BIN / "ansible-builder", "create", "-f", PROJECT / "execution-environment.yml", "-c", ctx],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (ctx / "Containerfile").read_text(encoding="utf-8")
    assert (ctx / "_build" / "collections" / tarball.name).exists()
    assert "ansible-galaxy collection install --no-deps" in containerfile
    assert "community.crypto" in (ctx / "_build" / "requirements.yml").read_text(encoding="utf-8")
