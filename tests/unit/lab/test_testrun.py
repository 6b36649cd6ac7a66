"""The suite runner's accounting: WIP scenarios are counted as skipped, never silently dropped."""

from pathlib import Path

import pytest

from schoolgate.lab import testrun


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("alpha", "beta", "_shared"):
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    monkeypatch.setattr(testrun, "PROJECT", tmp_path)
    monkeypatch.setattr(testrun, "REPORTS", tmp_path / "reports")
    return tmp_path


def test_shared_is_not_a_scenario(project: Path) -> None:
    assert testrun.scenarios() == ["alpha", "beta"]


def test_wip_marker_reason(project: Path) -> None:
    assert testrun.wip_reason("alpha") is None
    (project / "molecule" / "beta" / "WIP").write_text("verify fails on trixie:\n  see issue 8\n")
    assert testrun.wip_reason("beta") == "verify fails on trixie: see issue 8"


def test_wip_scenario_is_skipped_not_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def fake_run(cmd, log, timeout=None):
        ran.append(list(cmd))
        return 0

    monkeypatch.setattr(testrun, "_run", fake_run)
    (project / "molecule" / "beta" / "WIP").write_text("not green yet")
    results = {r.name: r for r in testrun.stage_molecule(["alpha", "beta"], jobs=1)}
    assert (results["molecule:alpha"].passed, results["molecule:alpha"].skipped) == (1, 0)
    beta = results["molecule:beta"]
    assert (beta.passed, beta.failed, beta.skipped) == (0, 0, 1)
    assert "not green yet" in beta.note
    assert not any("beta" in " ".join(cmd) for cmd in ran)
    assert any(cmd[:3] == ["molecule", "test", "-s"] and cmd[3] == "alpha" for cmd in ran)


def test_lab_stage_overlaps_molecule_and_is_reported(monkeypatch, tmp_path):
    import threading

    monkeypatch.setattr(testrun, "PROJECT", tmp_path)
    monkeypatch.setattr(testrun, "REPORTS", tmp_path / "reports")
    lab_started = threading.Event()
    seen: list[str] = []

    def fake_pytest(name, args):
        lab_started.set()
        return testrun.Result(name, 3, 0, 0.1, tmp_path / "lab.log")

    def fake_molecule(names, jobs):
        # The lab stage must already be running while the scenarios run.
        assert lab_started.wait(5), "lab stage did not start beside Molecule"
        seen.append("molecule")
        return [testrun.Result("molecule:x", 1, 0, 0.1, tmp_path / "m.log")]

    monkeypatch.setattr(testrun, "stage_pytest", fake_pytest)
    monkeypatch.setattr(testrun, "lab_groups", lambda: {"converged": ["a.py"], "isolated": ["b.py"]})
    monkeypatch.setattr(testrun, "stage_molecule", fake_molecule)
    monkeypatch.setattr(testrun, "_print", lambda res: None)
    results = testrun.run_stages(["molecule", "lab"], 2, None)
    assert [r.name for r in results] == ["molecule:x", "lab-converged", "lab-isolated"]
    assert sum(r.passed for r in results) == 7


def test_lab_files_are_grouped_by_whether_they_use_the_converged_lab(monkeypatch, tmp_path):
    monkeypatch.setattr(testrun, "PROJECT", tmp_path)
    lab = tmp_path / "tests" / "lab"
    lab.mkdir(parents=True)
    (lab / "test_a.py").write_text("def test_x(converged_lab): pass\n")
    (lab / "test_b.py").write_text("def test_y(lab_host): pass\n")
    (lab / "conftest.py").write_text("converged_lab = None\n")
    assert testrun.lab_groups() == {"converged": ["tests/lab/test_a.py"], "isolated": ["tests/lab/test_b.py"]}
