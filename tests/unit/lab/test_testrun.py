"""The suite runner: its schedule (which stages overlap) and its accounting (WIP scenarios are
skipped, never dropped)."""

import threading
import time
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
    assert any(cmd[-4:] == ["molecule", "test", "-s", "alpha"] for cmd in ran)


def _fake_stages(monkeypatch, tmp_path, on_start):
    """Stage runners that record start/end order; `on_start(name)` may block or assert."""
    events: list[str] = []
    lock = threading.Lock()

    def record(event: str) -> None:
        with lock:
            events.append(event)

    def fake_pytest(name, args, nice=0):
        record(f"start {name}")
        on_start(name, events)
        time.sleep(0.05)
        record(f"end {name}")
        return testrun.Result(name, 3, 0, 0.1, tmp_path / f"{name}.log")

    def fake_molecule(names, jobs, beside=()):
        record("start molecule")
        on_start("molecule", events)
        record("end molecule")
        return [testrun.Result("molecule:x", 1, 0, 0.1, tmp_path / "m.log")]

    monkeypatch.setattr(testrun, "PROJECT", tmp_path)
    monkeypatch.setattr(testrun, "REPORTS", tmp_path / "reports")
    monkeypatch.setattr(testrun, "_run", lambda *a, **k: 0)
    monkeypatch.setattr(testrun, "stage_pytest", fake_pytest)
    monkeypatch.setattr(
        testrun, "lab_groups", lambda: {"quiet": ["q.py"], "converged": ["a.py"], "isolated": ["b.py"]}
    )
    monkeypatch.setattr(testrun, "stage_molecule", fake_molecule)
    monkeypatch.setattr(testrun, "_print", lambda res: None)
    return events


def _wait_for(events, event: str) -> bool:
    deadline = time.monotonic() + 5
    while event not in events:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_unit_and_lab_beside_lint_molecule_after_lint_quiet_group_last_and_alone(monkeypatch, tmp_path):
    def on_start(name, events):
        if name == "molecule":
            assert "lint syntax" in events, "Molecule started before the lint stages were done"
            assert "start lab-quiet" not in events
        if name == "lab-quiet":
            # The load verdict measures the host: nothing else may run (p95 2.75 s beside the unit tests).
            for other in ("unit", "lab-converged", "lab-isolated", "molecule"):
                assert f"end {other}" in events, f"the quiet lab group started while {other} ran"

    events = _fake_stages(monkeypatch, tmp_path, on_start)

    def fake_lint(name, cmd):
        for other in ("start unit", "start lab-converged", "start lab-isolated"):
            assert _wait_for(events, other), f"lint ran without {other.split()[1]} beside it"
        events.append(f"lint {name}")
        return testrun.Result(name, 1, 0, 0.1, tmp_path / f"{name}.log")

    monkeypatch.setattr(testrun, "_check", fake_lint)
    monkeypatch.setattr(testrun, "stage_syntax", lambda: fake_lint("syntax", []))
    results = testrun.run_stages(["ruff", "syntax", "unit", "molecule", "lab"], 2, None)
    assert [r.name for r in results] == [
        "ruff",
        "syntax",
        "molecule:x",
        "unit",
        "lab-converged",
        "lab-isolated",
        "lab-quiet",
    ]
    assert sum(r.passed for r in results) == 15


def test_lab_stage_alone_runs_the_quiet_group_last(monkeypatch, tmp_path):
    events = _fake_stages(monkeypatch, tmp_path, lambda name, events: None)
    results = testrun.run_stages(["lab"], 2, None)
    assert [r.name for r in results] == ["lab-converged", "lab-isolated", "lab-quiet"]
    assert events.index("start lab-quiet") > max(
        events.index("end lab-converged"), events.index("end lab-isolated")
    )
    assert "start molecule" not in events


def test_converged_group_does_not_wait_for_the_trixie_image(monkeypatch, tmp_path):
    """Only the isolated group (and Molecule) need trixie; its debootstrap must not delay the converge."""
    events = _fake_stages(monkeypatch, tmp_path, lambda name, events: None)
    trixie_built = threading.Event()

    def fake_images(cmd, log, timeout=None):
        if cmd[:3] == ["schoolgate", "lab", "images"] and "--suite" not in cmd:
            assert _wait_for(events, "start lab-converged"), "the converged group waited for every image"
            trixie_built.set()
        return 0

    monkeypatch.setattr(testrun, "_run", fake_images)
    testrun.run_stages(["lab"], 2, None)
    assert trixie_built.is_set()
    assert events.index("start lab-isolated") > events.index("start lab-converged")


def test_lab_files_are_grouped_by_whether_they_use_the_converged_lab(monkeypatch, tmp_path):
    monkeypatch.setattr(testrun, "PROJECT", tmp_path)
    lab = tmp_path / "tests" / "lab"
    lab.mkdir(parents=True)
    (lab / "test_a.py").write_text("def test_x(converged_lab): pass\n")
    (lab / "test_b.py").write_text("def test_y(lab_host): pass\n")
    (lab / "test_c.py").write_text(
        "import pytest\npytestmark = pytest.mark.quiet_host\ndef test_z(converged_lab): pass\n"
    )
    (lab / "conftest.py").write_text("converged_lab = None\n")
    assert testrun.lab_groups() == {
        "quiet": ["tests/lab/test_c.py"],
        "converged": ["tests/lab/test_a.py"],
        "isolated": ["tests/lab/test_b.py"],
    }


def test_scenarios_longest_first_from_the_last_run_else_the_known_slow_ones(project: Path) -> None:
    names = ["agent", "alpha", "backup", "base", "monitoring", "tls"]
    assert testrun.longest_first(names) == ["backup", "monitoring", "agent", "base", "alpha", "tls"]
    (project / "reports").mkdir()
    testrun._record_durations(
        [
            testrun.Result("molecule:tls", 1, 0, 900.0, project / "t.log"),
            testrun.Result("molecule:alpha", 1, 0, 5, project),
        ]
    )
    assert testrun.longest_first(names) == ["tls", "alpha", "backup", "monitoring", "agent", "base"]


def test_one_more_scenario_at_a_time_as_each_stage_beside_finishes(project: Path, monkeypatch) -> None:
    from concurrent.futures import Future

    lock = threading.Lock()
    running = {"now": 0}
    gate = threading.Semaphore(0)

    def fake_run(cmd, log, timeout=None):
        if "molecule" not in cmd:
            return 0
        with lock:
            running["now"] += 1
        gate.acquire()
        with lock:
            running["now"] -= 1
        return 0

    def wait_running(count: int) -> bool:
        deadline = time.monotonic() + 5
        while running["now"] != count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    monkeypatch.setattr(testrun, "_run", fake_run)
    monkeypatch.setattr(testrun, "_print", lambda res: None)
    unit: Future = Future()
    lab: Future = Future()
    names = [f"s{i}" for i in range(6)]
    out: list = []
    worker = threading.Thread(target=lambda: out.extend(testrun.stage_molecule(names, 2, beside=[unit, lab])))
    worker.start()
    assert wait_running(1)
    time.sleep(0.2)
    assert running["now"] == 1, "a second scenario started while the unit tests and the lab ran beside"
    unit.set_result([])
    assert wait_running(2), "no second scenario after the unit tests finished"
    time.sleep(0.2)
    assert running["now"] == 2, "a third scenario started while the lab ran beside"
    lab.set_result([])
    assert wait_running(3), "no third scenario after the lab finished"
    while worker.is_alive():
        gate.release()
        worker.join(0.05)
    assert [r.name for r in out] == [f"molecule:{n}" for n in names] and all(r.passed for r in out)


def test_failure_excerpt_shows_what_failed_first(project: Path) -> None:
    log = project / "lab-quiet.log"
    log.write_text(
        "tests/lab/test_acceptance.py FF\n"
        "E       Failed: the test lab did not converge (exit 2):\n"
        "E       TASK [agent : Service | wait for health] ****\n"
        'E       fatal: [school-001]: FAILED! => {"msg": "agent did not answer within 120 s"}\n'
        + "noise\n"
        * 50
        + "FAILED tests/lab/test_acceptance.py::test_integration - Failed: the test lab did not converge\n"
        "FAILED tests/lab/test_acceptance.py::test_5xx - Failed: the test lab did not converge\n",
        encoding="utf-8",
    )
    lines = testrun.failure_excerpt(log)
    assert lines[:2] == [
        "FAILED tests/lab/test_acceptance.py::test_integration - Failed: the test lab did not converge",
        "FAILED tests/lab/test_acceptance.py::test_5xx - Failed: the test lab did not converge",
    ]
    assert any("agent did not answer within 120 s" in line for line in lines)
    assert "noise" not in lines


def test_failures_are_printed_before_the_summary(project: Path, capsys) -> None:
    (project / "reports").mkdir()
    log = project / "reports" / "syntax.log"
    log.write_text("ERROR! the role 'nope' was not found\n", encoding="utf-8")
    testrun.print_failures(
        [testrun.Result("ruff", 1, 0, 1.0, project / "r.log"), testrun.Result("syntax", 0, 1, 1.0, log)]
    )
    out = capsys.readouterr().out
    assert "syntax (reports/syntax.log):" in out and "ERROR! the role 'nope' was not found" in out
    assert "ruff" not in out


def test_only_stages_without_containers_run_niced(monkeypatch, tmp_path):
    """Lint and unit tests yield the CPU; Molecule and the lab groups start containers, whose systemd would
    inherit the niceness (a unit with Nice=10 then fails with 214/SETSCHEDULER), so they run at 0."""
    commands: list[list[str]] = []
    monkeypatch.setattr(testrun, "PROJECT", tmp_path)
    monkeypatch.setattr(testrun, "REPORTS", tmp_path / "reports")
    monkeypatch.setattr(testrun, "_print", lambda res: None)
    monkeypatch.setattr(testrun, "_run", lambda cmd, log, timeout=None: commands.append(list(cmd)) or 0)
    monkeypatch.setattr(testrun, "lab_groups", lambda: {"converged": ["a.py"], "isolated": ["b.py"]})
    (tmp_path / "molecule" / "alpha").mkdir(parents=True)
    (tmp_path / "molecule" / "alpha" / "molecule.yml").write_text("---\n")
    testrun.run_stages(["yamllint", "unit", "molecule", "lab"], 2, None)

    def niceness(word: str) -> set[int]:
        return {int(c[2]) if c[0] == "nice" else 0 for c in commands if word in c}

    assert niceness("yamllint") == {testrun.NICE_LINT} and testrun.NICE_LINT > 0
    assert niceness("tests/unit") == {testrun.NICE_UNIT} and testrun.NICE_UNIT > 0
    assert niceness("molecule") == {0} and niceness("a.py") == {0} and niceness("b.py") == {0}


def test_scenarios_start_in_queue_order_whichever_thread_wakes_first(project: Path, monkeypatch) -> None:
    started: list[str] = []

    def fake_run(cmd, log, timeout=None):
        if "molecule" in cmd:
            started.append(cmd[-1])
            time.sleep(0.02)
        return 0

    monkeypatch.setattr(testrun, "_run", fake_run)
    monkeypatch.setattr(testrun, "_print", lambda res: None)
    names = ["agent", "backup", "base", "monitoring", "tls", "zeta"]
    (project / "molecule" / "zeta").mkdir()
    (project / "molecule" / "zeta" / "WIP").write_text("not yet")
    expected = ["backup", "monitoring", "agent", "base", "tls"]
    for _ in range(5):
        started.clear()
        # One slot (two stages still running beside): each scenario starts only when the one before ends.
        from concurrent.futures import Future

        testrun.stage_molecule(names, 2, beside=[Future(), Future()])
        assert started == expected
        # Each run records its durations; the next run orders by them.
        expected = [n for n in testrun.longest_first(names) if n != "zeta"]
