"""`schoolgate lab test`: every check of the project in stages, one summary line at the end.

Each lint stage and each Molecule scenario counts as one check; pytest stages count their tests.
All stages run even when one fails; the exit code is non-zero when anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from schoolgate.lab import podman

PROJECT = podman.PROJECT_DIR
REPORTS = PROJECT / "reports"
STAGES = ("ruff", "yamllint", "ansible-lint", "syntax", "unit", "molecule", "lab")
# A hung scenario fails instead of holding the suite; the longest ones take 23 min beside the lab tests on a
# 2-core machine (backup: 1372 s), so 30 min left too little room on a slower CI machine.
MOLECULE_TIMEOUT_S = 45 * 60
# CPU priority (nice) per stage: lint and unit tests (host processes only) yield to the lab and Molecule.
# Stages that start containers stay at normal priority: a container's systemd inherits the niceness of the
# podman that started it, and a unit asking for a higher priority than that (backup's Nice=10 in a
# container started at nice 12) fails with 214/SETSCHEDULER. Container work is shared between container
# cgroups, which nice does not reach anyway (cgroup v1 cpu.shares; measured: with Molecule at nice 10-12 the
# converge of lab t still took 23 minutes).
NICE_LINT = 5
NICE_UNIT = 5


def _niced(level: int, cmd: Sequence[str]) -> list[str]:
    return ["nice", "-n", str(level), *cmd] if level > 0 else list(cmd)


@dataclass
class Result:
    name: str
    passed: int
    failed: int
    seconds: float
    log: Path
    note: str = ""
    skipped: int = 0


def _env() -> dict[str, str]:
    env = podman.podman_env()
    env["PATH"] = f"{PROJECT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    env["PY_COLORS"] = "0"
    env["NO_COLOR"] = "1"
    return env


def _run(cmd: Sequence[str], log: Path, timeout: float | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            return subprocess.run(
                list(cmd),
                cwd=PROJECT,
                env=_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\nTIMEOUT after {timeout}s\n")
            return 124


def _check(name: str, cmd: Sequence[str]) -> Result:
    log = REPORTS / f"{name}.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    rc = _run(_niced(NICE_LINT, cmd), log)
    ok = rc == 0
    return Result(name, int(ok), int(not ok), time.monotonic() - started, log)


def playbooks() -> list[Path]:
    found = [PROJECT / "site.yml"] if (PROJECT / "site.yml").exists() else []
    return found + sorted((PROJECT / "playbooks").glob("*.yml"))


def stage_syntax() -> Result:
    log = REPORTS / "syntax.log"
    log.unlink(missing_ok=True)
    started = time.monotonic()
    inventory = PROJECT / "inventory.example.ini"
    bad = [
        pb.name
        for pb in playbooks()
        if _run(_niced(NICE_LINT, ["ansible-playbook", "--syntax-check", "-i", str(inventory), str(pb)]), log)
        != 0
    ]
    return Result(
        "syntax",
        int(not bad),
        int(bool(bad)),
        time.monotonic() - started,
        log,
        f"failed: {', '.join(bad)}" if bad else f"{len(playbooks())} playbooks",
    )


def stage_pytest(name: str, args: Sequence[str], nice: int = 0) -> Result:
    log = REPORTS / f"{name}.log"
    log.unlink(missing_ok=True)
    junit = REPORTS / f"{name}.xml"
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    rc = _run(_niced(nice, ["pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]), log)
    secs = time.monotonic() - started
    if rc == 5:  # pytest: no tests collected
        return Result(name, 0, 0, secs, log, "no tests")
    passed = failed = skipped = 0
    if junit.exists():
        root = ET.parse(junit).getroot()  # noqa: S314
        for suite in root.iter("testsuite"):
            tests = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            failed += bad
            skipped += int(suite.get("skipped", 0))
            passed += tests - bad - int(suite.get("skipped", 0))
    if rc != 0 and failed == 0:
        failed = 1  # crashed before/after tests (collection error, internal error)
    return Result(name, passed, failed, secs, log, skipped=skipped)


QUIET_MARK = "pytest.mark.quiet_host"
RUN_ID_ENV = "SCHOOLGATE_TEST_RUN"


def lab_groups(lab_dir: Path | None = None) -> dict[str, list[str]]:
    """Lab test files in three groups.

    - `quiet`: files marked `pytest.mark.quiet_host` measure the host (the acceptance load verdict, p95 ≤ 2 s
      at 200 clients); `make test` runs them last, alone: beside anything else (unit tests included: p95
      2.75 s instead of 0.6 s) they would measure the neighbours instead of the school.
    - `converged`: the other tests on the shared converged lab (namespace t; one after another, each undoing
      its faults). The lab is converged once per run (by whichever group needs it first).
    - `isolated`: tests with hosts of their own (fleet namespace, bare hosts, local processes); they spend
      minutes waiting on timers and loads, so they run beside the converged group.
    """
    lab_dir = lab_dir or PROJECT / "tests" / "lab"
    groups: dict[str, list[str]] = {"quiet": [], "converged": [], "isolated": []}
    for path in sorted(lab_dir.glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if QUIET_MARK in text:
            key = "quiet"
        elif "converged_lab" in text:
            key = "converged"
        else:
            key = "isolated"
        groups[key].append(str(path.relative_to(PROJECT)))
    return {k: v for k, v in groups.items() if v}


def stage_lab(which: Sequence[str]) -> list[Result]:
    groups = {name: files for name, files in lab_groups().items() if name in which}
    if not groups:
        return []
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = [
            pool.submit(stage_pytest, f"lab-{name}", ["-m", "lab", *files]) for name, files in groups.items()
        ]
        return [f.result() for f in futures]


IMAGES_LOG = "lab-images.log"


def stage_lab_busy() -> list[Result]:
    """The converged and isolated groups side by side, each as soon as the images it needs exist.

    The converged group needs only the bookworm image and the apt cache; the trixie image (debootstrap,
    mostly waiting on the mirror) is built meanwhile for the isolated group and Molecule.
    """
    _run(["schoolgate", "lab", "images", "--suite", "bookworm"], REPORTS / IMAGES_LOG)

    def isolated() -> list[Result]:
        _run(["schoolgate", "lab", "images"], REPORTS / IMAGES_LOG)
        return stage_lab(["isolated"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        converged = pool.submit(stage_lab, ["converged"])
        rest = pool.submit(isolated)
        return converged.result() + rest.result()


def scenarios(only: Sequence[str] | None = None) -> list[str]:
    names = sorted(
        p.parent.name
        for p in (PROJECT / "molecule").glob("*/molecule.yml")
        if not p.parent.name.startswith("_")
    )
    return [n for n in names if not only or n in only]


WIP_MARKER = "WIP"


def wip_reason(name: str) -> str | None:
    """A scenario with a `WIP` file is not run yet; the file says why, and the summary counts it as skipped.

    This keeps unfinished scenarios visible (never silently dropped) without failing the whole suite.
    """
    marker = PROJECT / "molecule" / name / WIP_MARKER
    if not marker.exists():
        return None
    return " ".join(marker.read_text(encoding="utf-8").split())[:200] or "unfinished"


# Longest first, so the last scenario to start is a short one (measured in CI: backup 1314 s, monitoring
# 926 s, agent 627 s, base 599 s; the others 300-500 s). A previous run's durations (reports/) come first.
SLOW_SCENARIOS = ("backup", "monitoring", "agent", "base")
DURATIONS = "molecule-durations.json"


def longest_first(names: Sequence[str]) -> list[str]:
    try:
        measured = json.loads((REPORTS / DURATIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        measured = {}

    def key(name: str) -> tuple[float, int, str]:
        hint = SLOW_SCENARIOS.index(name) if name in SLOW_SCENARIOS else len(SLOW_SCENARIOS)
        return (-float(measured.get(name, 0.0)), hint, name)

    return sorted(names, key=key)


def _record_durations(results: Sequence[Result]) -> None:
    path = REPORTS / DURATIONS
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    for res in results:
        if res.seconds > 0:
            known[res.name.removeprefix("molecule:")] = round(res.seconds, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")


class Slots:
    """How many scenarios may run at once; widened when the stages beside them have finished.

    Slots go out in ticket order (the order the scenarios were queued in, longest first): waiting threads
    would otherwise wake in any order, and the longest scenario could start last and stretch the run.
    """

    def __init__(self, count: int) -> None:
        self._free = count
        self._cond = threading.Condition()
        self._next_ticket = 0

    def widen(self, by: int = 1) -> None:
        with self._cond:
            self._free += by
            self._cond.notify_all()

    @contextlib.contextmanager
    def taken(self, ticket: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._free > 0 and self._next_ticket == ticket)
            self._free -= 1
            self._next_ticket += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            self.widen(1)


def stage_molecule(names: Sequence[str], jobs: int, beside: Sequence[Future] = ()) -> list[Result]:
    """Scenarios `jobs` at a time beside one other stage; one fewer per further stage still running beside
    them (`beside`: the unit tests, the lab tests), one more once each is done. A scenario alone keeps well
    under one core busy (systemd boots, handlers, verify waits)."""
    slots = Slots(max(1, jobs + 1 - len(beside)) if jobs > 1 else 1)

    ordered = longest_first(names)
    runnable = [n for n in ordered if wip_reason(n) is None]  # one ticket each, in this order

    def one(name: str) -> Result:
        reason = wip_reason(name)
        if reason is not None:
            res = Result(
                f"molecule:{name}",
                0,
                0,
                0.0,
                PROJECT / "molecule" / name / WIP_MARKER,
                f"SKIPPED (WIP: {reason})",
                skipped=1,
            )
            _print(res)
            return res
        with slots.taken(runnable.index(name)):
            log = REPORTS / f"molecule-{name}.log"
            log.unlink(missing_ok=True)
            started = time.monotonic()
            rc = _run(["molecule", "test", "-s", name], log, timeout=MOLECULE_TIMEOUT_S)
            res = Result(f"molecule:{name}", int(rc == 0), int(rc != 0), time.monotonic() - started, log)
        _print(res)
        return res

    if not names:
        return []
    # Build/reuse images once up front so parallel scenarios do not queue on the image lock.
    _run(["schoolgate", "lab", "images"], REPORTS / IMAGES_LOG)
    if jobs > 1:  # --jobs 1 asks for one at a time, always
        for stage in beside:
            stage.add_done_callback(lambda _f: slots.widen(1))
    with ThreadPoolExecutor(max_workers=max(1, jobs) + 1) as pool:
        by_name = dict(zip(ordered, pool.map(one, ordered), strict=True))
    results = [by_name[n] for n in names]
    _record_durations(results)
    return results


def _print(res: Result) -> None:
    status = "FAIL" if res.failed else ("SKIP" if res.skipped and not res.passed else "PASS")
    counts = f"{res.passed} passed, {res.failed} failed"
    note = f" - {res.note}" if res.note else ""
    print(
        f"[{status}] {res.name:<24} {counts:<22} {res.seconds:6.1f}s  {res.log.relative_to(PROJECT)}{note}",
        flush=True,
    )


def run_stages(stages: Sequence[str], jobs: int, only_scenarios: Sequence[str] | None) -> list[Result]:
    """Run every stage, overlapped so that `make test` keeps both cores of a CI machine busy:

    - from the start, beside the lint stages: the unit tests, and the lab's images followed by its
      converged and isolated groups (stage_lab_busy);
    - after the lint stages: the Molecule scenarios, more of them at once as the others finish;
    - last and alone: the lab's quiet group (load verdicts measure the host, not its neighbours).
    """
    REPORTS.mkdir(exist_ok=True)
    results: list[Result] = []
    simple = {
        # Lint and formatting both: a formatter diff left unchecked grows until nobody runs the formatter.
        "ruff": lambda: _check("ruff", ["sh", "-c", "ruff check . && ruff format --check ."]),
        "yamllint": lambda: _check("yamllint", ["yamllint", "."]),
        "ansible-lint": lambda: _check("ansible-lint", ["ansible-lint", "--profile", "production"]),
        "syntax": stage_syntax,
    }
    lab = "lab" in stages
    side_stages: list[Future] = []
    with ThreadPoolExecutor(max_workers=2) as side:
        if "unit" in stages:
            side_stages.append(side.submit(stage_pytest, "unit", ["tests/unit"], NICE_UNIT))
        if lab:
            side_stages.append(side.submit(stage_lab_busy))
        for stage in side_stages:
            # Shown when done, not when the main thread gets round to them.
            stage.add_done_callback(lambda f: _report(f.result()) if f.exception() is None else None)
        for stage in stages:
            if stage in ("lab", "unit"):
                continue
            if stage == "molecule":
                results += stage_molecule(scenarios(only_scenarios), jobs, beside=side_stages)
                continue
            results += _report(simple[stage]())
        for stage in side_stages:
            outcome = stage.result()
            results += outcome if isinstance(outcome, list) else [outcome]
    if lab:
        results += _report(stage_lab(["quiet"]))
    return results


def _report(outcome: Result | list[Result]) -> list[Result]:
    found = outcome if isinstance(outcome, list) else [outcome]
    for res in found:
        _print(res)
    return found


# What a failing stage's log says first, by kind: pytest's summary lines, Ansible's failed tasks, a stage's
# timeout, then the assertion or error text. CI shows only the end of `make test`'s output, so these are
# printed there; without them a failure on the CI machine cannot be told from its summary line.
_EXCERPT_KINDS = (
    (re.compile(r"^(FAILED|ERROR) "), 6),
    (re.compile(r"(fatal|failed): \[[^\]]+\]"), 4),
    (re.compile(r"TIMEOUT after|Timeout|timed out", re.IGNORECASE), 2),
    (re.compile(r"^E {3,}\S"), 6),
)
EXCERPT_WIDTH = 300


def failure_excerpt(log: Path, limit: int = 14) -> list[str]:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return [f"(log unreadable: {exc})"]
    picked: list[str] = []
    for pattern, cap in _EXCERPT_KINDS:
        found = 0
        for line in lines:
            if found == cap or len(picked) == limit:
                break
            text = line.strip()[:EXCERPT_WIDTH]
            if pattern.search(line) and text not in picked:
                picked.append(text)
                found += 1
    return picked or [line.strip()[:EXCERPT_WIDTH] for line in lines[-5:]]


def print_failures(results: Sequence[Result]) -> None:
    failed = [r for r in results if r.failed]
    if not failed:
        return
    print("failures (first lines from each failing stage's log):", flush=True)
    for res in failed:
        print(f"  {res.name} ({res.log.relative_to(PROJECT)}):", flush=True)
        for line in failure_excerpt(res.log):
            print(f"    {line}", flush=True)


def cmd_test(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # One id per run: the lab tests converge the shared test lab once per run, whichever group comes first.
    os.environ.setdefault(RUN_ID_ENV, f"{os.getpid()}-{time.time_ns()}")
    stages = args.stage or list(STAGES)
    results = run_stages(stages, args.jobs, args.scenario)
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    print_failures(results)
    print(f"logs: {REPORTS.relative_to(PROJECT)}/  total time {time.monotonic() - started:.0f}s", flush=True)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""), flush=True)
    return 1 if failed else 0


def register_test(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="run every stage of the test suite (what `make test` runs)")
    p.add_argument("--stage", action="append", choices=STAGES, help="only this stage (repeatable)")
    p.add_argument("--scenario", action="append", help="only this Molecule scenario (repeatable)")
    p.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("MOLECULE_JOBS", "2")),
        help="Molecule scenarios run at the same time beside the lab tests (one more once those are done)",
    )
    p.set_defaults(handler=cmd_test)
