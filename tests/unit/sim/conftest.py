from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .simclient import School, SimProcess, onboard


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    state = tmp_path_factory.mktemp("sim") / "state"
    process = SimProcess(state, "--document-ready-after", "0.3").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def base(sim: SimProcess) -> str:
    return sim.base


@pytest.fixture(scope="session")
def school(base: str, tmp_path_factory: pytest.TempPathFactory) -> School:
    return onboard(base, tmp_path_factory.mktemp("school"))


@pytest.fixture(scope="session")
def service_token(school: School) -> str:
    return school.service_token()


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        requests.delete(request.getfixturevalue("base") + "/admin/v1/faults", timeout=10)


@pytest.fixture
def school_dir(tmp_path: Path) -> Path:
    return tmp_path
