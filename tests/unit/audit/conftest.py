"""Shared fixtures of the audit unit tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def af():
    """modules/audit_facts.py loaded as a Python module (its readers run on the target host)."""
    spec = importlib.util.spec_from_file_location("audit_facts_module", ROOT / "modules" / "audit_facts.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
