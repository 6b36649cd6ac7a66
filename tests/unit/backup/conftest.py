"""Load the host script (roles/backup/files/schoolgate_backup.py) as a module: the role installs it
as a standalone file, not part of the schoolgate package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "schoolgate_backup.py"


def _load():
    spec = importlib.util.spec_from_file_location("schoolgate_backup", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["schoolgate_backup"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sb():
    return _load()
