"""The lab images' compiled-code cache for AnsiballZ payloads (schoolgate.lab.zipcode), in real interpreters.

Each case runs a fresh `python3 -S` (like a module process: nothing imported yet) that loads the cache
module by path, puts a zip of `ansible` sources first on sys.path and imports from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from schoolgate.lab import images

PROBE = r"""
import builtins, importlib.util, json, sys, traceback
compiled = []
_compile = builtins.compile
def counting(source, filename, *args, **kwargs):
    compiled.append(str(filename))
    return _compile(source, filename, *args, **kwargs)
builtins.compile = counting
spec = importlib.util.spec_from_file_location("schoolgate_lab_zipcode", sys.argv[1])
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
sys.path.insert(0, sys.argv[2])
import ansible.module_utils.thing as thing
import ansible_collections.ns.coll.plugins.module_utils.helper as helper
try:
    thing.fail()
    where = ""
except RuntimeError:
    where = traceback.extract_tb(sys.exc_info()[2])[-1].filename
print(json.dumps({
    "value": thing.VALUE,
    "helper": helper.NAME,
    "file": thing.__file__,
    "where": where,
    "compiled": [c for c in compiled if ".zip" in c],
    "json_loader": type(json.__spec__.loader).__name__,
}))
"""


def _payload(path: Path, value: str) -> Path:
    """A zip laid out like an AnsiballZ payload: the `ansible` package and a collection's module_utils."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ansible/__init__.py", "")
        zf.writestr("ansible/module_utils/__init__.py", "")
        zf.writestr(
            "ansible/module_utils/thing.py",
            f"VALUE = {value!r}\n\n\ndef fail():\n    raise RuntimeError('boom')\n",
        )
        # Ansible writes an __init__.py at every level of a collection's path (executor/module_common.py).
        for package in ("", "/ns", "/ns/coll", "/ns/coll/plugins", "/ns/coll/plugins/module_utils"):
            zf.writestr(f"ansible_collections{package}/__init__.py", "")
        zf.writestr("ansible_collections/ns/coll/plugins/module_utils/helper.py", "NAME = 'helper'\n")
    return path


def _probe(payload: Path, cache: Path, **env: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(images.ZIPCODE_SOURCE), str(payload)],
        env={**os.environ, "SCHOOLGATE_LAB_ZIPCODE_DIR": str(cache), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_second_run_compiles_nothing_and_names_its_own_zip(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _probe(_payload(tmp_path / "run1.zip", "one"), cache)
    assert first["value"] == "one" and first["helper"] == "helper"
    # Entries are keyed by content: the seven empty __init__.py files share one.
    assert len(first["compiled"]) == 3
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    second = _probe(_payload(tmp_path / "run2.zip", "one"), cache)
    assert second["compiled"] == []
    assert second["file"] == str(tmp_path / "run2.zip" / "ansible" / "module_utils" / "thing.py")
    # Tracebacks point at this run's payload, not at the one that filled the cache.
    assert second["where"] == second["file"]


def test_changed_source_is_compiled_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _probe(_payload(tmp_path / "run1.zip", "one"), cache)
    changed = _probe(_payload(tmp_path / "run2.zip", "two"), cache)
    assert changed["value"] == "two"
    assert [Path(c).name for c in changed["compiled"]] == ["thing.py"]


def test_other_modules_are_left_to_the_normal_machinery(tmp_path: Path) -> None:
    out = _probe(_payload(tmp_path / "run.zip", "one"), tmp_path / "cache")
    assert out["json_loader"] == "SourceFileLoader"


def test_unwritable_cache_still_imports(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    out = _probe(_payload(tmp_path / "run.zip", "one"), blocked / "cache")
    assert out["value"] == "one" and len(out["compiled"]) == 9


def test_corrupt_entry_is_recompiled(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _probe(_payload(tmp_path / "run1.zip", "one"), cache)
    for entry in cache.iterdir():
        entry.write_bytes(b"\x00garbage")
    out = _probe(_payload(tmp_path / "run2.zip", "one"), cache)
    assert out["value"] == "one" and len(out["compiled"]) == 3


def test_switch_turns_it_off(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _probe(_payload(tmp_path / "run1.zip", "one"), cache)
    out = _probe(_payload(tmp_path / "run2.zip", "one"), cache, SCHOOLGATE_LAB_NO_ZIPCODE="1")
    # zipimport compiles each file twice (finding it, then running it); the cache is not used.
    assert out["value"] == "one" and len(set(out["compiled"])) == 9 and len(out["compiled"]) == 18


def test_lab_images_install_it_through_a_pth_file(tmp_path: Path) -> None:
    """The recipe's two files, as site.py processes them in the image's dist-packages."""
    recipe = images.recipe_for("bookworm")
    site_dir = tmp_path / images.ZIPCODE_DIR
    site_dir.mkdir(parents=True)
    for rel in (
        f"{images.ZIPCODE_DIR}/schoolgate_lab_zipcode.py",
        f"{images.ZIPCODE_DIR}/schoolgate-lab-zipcode.pth",
    ):
        content, mode = recipe.files[rel]
        assert mode == 0o644
        (tmp_path / rel).write_text(content, encoding="utf-8")
    check = (
        "import site, sys; site.addsitedir(sys.argv[1]); "
        "print([f.__name__ for f in sys.meta_path if f.__module__ == 'schoolgate_lab_zipcode'])"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", check, str(site_dir)], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "['ZipCodeFinder']"
