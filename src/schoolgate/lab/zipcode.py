"""Compiled-code cache for Ansible's module payloads, installed in the lab images only.

Every Ansible task runs its module as a fresh Python process that imports ansible.module_utils from the
AnsiballZ zip. zipimport cannot write bytecode next to the sources, so each task compiles the same
~50 files again: measured at about half of the CPU a typical task costs inside a container
(`import ansible.module_utils.basic` from a zip of sources 0.62 s, with this cache 0.29 s, on a loaded
2-core machine). `make test` runs tens of thousands of such tasks on two cores.

This file is copied verbatim into the lab images as `schoolgate_lab_zipcode` (a `.pth` line imports it at
interpreter start-up, see `schoolgate.lab.images`). It must run on the images' system Python (3.11 on
bookworm, 3.13 on trixie) without the schoolgate package, and cost next to nothing for every other
Python process in the container: it only acts on `ansible*` modules found inside zip files.

Cache entries are keyed by the SHA-256 of the source and the interpreter's cache tag, so a different
Ansible version or a changed file compiles afresh. The directory is root-only (0700): processes of other
users (become_user) simply compile as usual. Real servers never get this file; set
SCHOOLGATE_LAB_NO_ZIPCODE=1 in a lab container to measure without it.
"""

from __future__ import annotations

import _imp
import marshal
import os
import sys
import zipimport
from types import CodeType, ModuleType
from typing import Any

CACHE_DIR = os.environ.get("SCHOOLGATE_LAB_ZIPCODE_DIR", "/var/cache/schoolgate-zipcode")
_TAG = sys.implementation.cache_tag or "none"
_PREFIXES = ("ansible.", "ansible_collections.")
_importers: dict[str, zipimport.zipimporter | None] = {}


def _zip_importer(entry: str) -> zipimport.zipimporter | None:
    if entry not in _importers:
        found = None
        if ".zip" in entry:
            try:
                found = zipimport.zipimporter(entry)
            except zipimport.ZipImportError:
                found = None
        _importers[entry] = found
    return _importers[entry]


class ZipSourceLoader:
    """Loads one module's source from a zip; its code object comes from the cache when it was seen before."""

    def __init__(self, importer: zipimport.zipimporter, path: str, source: bytes) -> None:
        self._importer = importer
        self._path = path
        self._source = source

    def create_module(self, spec: Any) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.get_code(module.__name__), module.__dict__)  # noqa: S102 - this is what a loader does

    def get_filename(self, fullname: str) -> str:
        return self._path

    def get_source(self, fullname: str) -> str:
        return self._source.decode("utf-8")

    def is_package(self, fullname: str) -> bool:
        return self._path.endswith("__init__.py")

    def get_data(self, path: str) -> bytes:
        return self._importer.get_data(path)

    def get_resource_reader(self, fullname: str) -> Any:
        return self._importer.get_resource_reader(fullname)

    def get_code(self, fullname: str) -> CodeType:
        import hashlib  # here, not at start-up: only Ansible modules pay for it

        entry = os.path.join(CACHE_DIR, f"{hashlib.sha256(self._source).hexdigest()}.{_TAG}")
        try:
            with open(entry, "rb") as fh:
                code = marshal.loads(fh.read())  # noqa: S302 - root-only dir this module wrote
        except (OSError, ValueError, EOFError, TypeError):
            code = compile(self._source, self._path, "exec", dont_inherit=True)
            _store(entry, code)
            return code
        # The cached object names the zip of the run that compiled it; tracebacks must name this one.
        _imp._fix_co_filename(code, self._path)
        return code


def _store(entry: str, code: CodeType) -> None:
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        tmp = f"{entry}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(marshal.dumps(code))
        os.replace(tmp, entry)  # atomic: parallel tasks never read half an entry
    except OSError:
        pass  # not root, read-only, full disk: the module still runs, compiled as usual


class ZipCodeFinder:
    """Meta path finder for `ansible*` modules whose first location on the search path is a zip file."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(_PREFIXES) and fullname not in ("ansible", "ansible_collections"):
            return None
        tail = fullname.rpartition(".")[2]
        for entry in path if path is not None else sys.path:
            importer = _zip_importer(entry)
            if importer is None:
                plain = os.path.join(entry, tail)
                if os.path.isfile(plain + ".py") or os.path.isdir(plain):
                    return None  # found outside a zip first: the normal machinery handles it
                continue
            base = os.path.join(importer.archive, importer.prefix, tail)
            for candidate, package in ((os.path.join(base, "__init__.py"), True), (base + ".py", False)):
                try:
                    source = importer.get_data(candidate)
                except OSError:
                    continue
                from importlib.machinery import ModuleSpec

                spec = ModuleSpec(
                    fullname,
                    ZipSourceLoader(importer, candidate, source),
                    origin=candidate,
                    is_package=package,
                )
                spec.has_location = True
                if package:
                    spec.submodule_search_locations = [base]
                return spec
        # Nothing found, or only namespace-package directories: the normal machinery decides.
        return None


def install() -> None:
    if os.environ.get("SCHOOLGATE_LAB_NO_ZIPCODE") or any(f is ZipCodeFinder for f in sys.meta_path):
        return
    sys.meta_path.insert(0, ZipCodeFinder)


install()
