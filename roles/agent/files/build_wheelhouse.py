"""Build the schoolgate wheel and download its dependencies as binary wheels for a target Python/arch.

    build_wheelhouse.py PROJECT_ROOT OUT_DIR PYTHON_VERSION ARCH

Runs on the controller (it has PyPI); the school server installs from OUT_DIR with --no-index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path


def main() -> int:
    root, out, pyver, arch = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp), str(root)], check=True)
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    platforms = [f"manylinux{v}_{arch}" for v in ("2014", "_2_17", "_2_28")] + [f"linux_{arch}"]
    cmd = [
        *pip,
        "download",
        "--only-binary=:all:",
        "--python-version",
        pyver,
        "--implementation",
        "cp",
        "-d",
        str(tmp),
    ]
    for p in platforms:
        cmd += ["--platform", p]
    subprocess.run([*cmd, *deps], check=True)
    (tmp / ".complete").write_text("ok\n")
    # One archive to copy to the host (one transfer instead of one per wheel); built once per build id, so
    # reruns copy nothing.
    archive = out.with_name(out.name + ".tar")
    with tarfile.open(archive.with_name(archive.name + ".part"), "w") as tar:
        for f in sorted(tmp.iterdir()):
            tar.add(f, arcname=f.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    archive.with_name(archive.name + ".part").rename(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
