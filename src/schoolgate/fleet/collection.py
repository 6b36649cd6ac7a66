"""Build the kit as the Ansible collection `schoolgate.kit` (for AWX / Automation Platform).

The repository keeps Ansible's project layout (modules/, module_utils/, filter_plugins/ at the root, which
`ansible-playbook` and AWX projects use directly), so the collection is staged from those same files:

- modules → plugins/modules, with `ansible.module_utils.schoolgate_*` imports pointed at the collection's
  module_utils (inside a collection Ansible resolves them only by their full collection path);
- module_utils/schoolgate_esia (a symlink to src/schoolgate/esia) is copied as real files, schemas included;
- filter_plugins → plugins/filter, playbooks/callback_plugins → plugins/callback;
- roles/ and playbooks/ (site.yml becomes playbooks/site.yml).

  python -m schoolgate.fleet.collection [--out build/collection]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from schoolgate.fleet.inventory import ansible_bin

PROJECT = Path(__file__).resolve().parents[3]
FQCN = "ansible_collections.schoolgate.kit.plugins.module_utils"
_IMPORT_RE = re.compile(r"\bansible\.module_utils\.(schoolgate_[a-z_]+)")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "molecule", "WIP")
# Collection metadata lives in collection/ (galaxy.yml, meta/runtime.yml, CHANGELOG.md): a galaxy.yml at the
# project root would make ansible-lint treat the whole project as a collection.
META = PROJECT / "collection"


class CollectionError(RuntimeError):
    """The collection could not be built; the message carries ansible-galaxy's output."""


def _rewrite_imports(text: str) -> str:
    return _IMPORT_RE.sub(lambda m: f"{FQCN}.{m.group(1)}", text)


def stage(dest: Path) -> Path:
    """Lay the collection out under `dest` (recreated) and return it."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "plugins" / "modules").mkdir(parents=True)
    shutil.copytree(META / "meta", dest / "meta")
    shutil.copy2(META / "galaxy.yml", dest / "galaxy.yml")
    shutil.copy2(META / "CHANGELOG.md", dest / "CHANGELOG.md")
    shutil.copy2(PROJECT / "README.md", dest / "README.md")
    for module in sorted((PROJECT / "modules").glob("*.py")):
        out = dest / "plugins" / "modules" / module.name
        out.write_text(_rewrite_imports(module.read_text(encoding="utf-8")), encoding="utf-8")
    mu = dest / "plugins" / "module_utils"
    mu.mkdir()
    for item in sorted((PROJECT / "module_utils").iterdir()):
        # copytree/copy2 follow the schoolgate_esia symlink: the collection carries the real files.
        if item.is_dir():
            shutil.copytree(item.resolve(), mu / item.name, ignore=_SKIP)
        elif item.suffix == ".py":
            shutil.copy2(item.resolve(), mu / item.name)
    for py in mu.rglob("*.py"):
        py.write_text(_rewrite_imports(py.read_text(encoding="utf-8")), encoding="utf-8")
    shutil.copytree(PROJECT / "filter_plugins", dest / "plugins" / "filter", ignore=_SKIP)
    shutil.copytree(PROJECT / "playbooks" / "callback_plugins", dest / "plugins" / "callback", ignore=_SKIP)
    shutil.copytree(PROJECT / "roles", dest / "roles", ignore=_SKIP)
    shutil.copytree(
        PROJECT / "playbooks",
        dest / "playbooks",
        ignore=shutil.ignore_patterns("callback_plugins", "__pycache__"),
    )
    site = (PROJECT / "site.yml").read_text(encoding="utf-8")
    (dest / "playbooks" / "site.yml").write_text(site.replace("playbooks/", ""), encoding="utf-8")
    return dest


def build(out: Path = PROJECT / "build" / "collection") -> Path:
    """Stage (in a temporary directory: linters must not see a second copy of the roles) and build; returns
    the tarball (out/schoolgate-kit-<version>.tar.gz)."""
    with tempfile.TemporaryDirectory(prefix="schoolgate-collection-") as tmp:
        return _build(stage(Path(tmp) / "kit"), out)


def _build(src: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("schoolgate-kit-*.tar.gz"):
        old.unlink()
    proc = subprocess.run(
        [
            ansible_bin("ansible-galaxy"),
            "collection",
            "build",
            str(src),
            "--output-path",
            str(out),
            "--force",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    built = sorted(out.glob("schoolgate-kit-*.tar.gz"))
    if proc.returncode != 0 or not built:
        raise CollectionError(
            f"ansible-galaxy collection build failed: {(proc.stdout + proc.stderr)[-1500:]}"
        )
    return built[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="build the schoolgate.kit collection")
    p.add_argument("--out", type=Path, default=PROJECT / "build" / "collection")
    args = p.parse_args(argv)
    try:
        print(build(args.out))
    except CollectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
