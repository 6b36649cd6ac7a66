"""`schoolgate fleet plan|rollout|resume|report`: the regional rollout on ansible-runner."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from schoolgate.fleet import report as fleet_report
from schoolgate.fleet.inventory import Fleet, InventoryError, load_fleet
from schoolgate.fleet.progress import Display
from schoolgate.fleet.state import (
    RolloutState,
    StateError,
    default_state_dir,
    load_records,
    load_state,
    new_run_id,
    records_dir,
    resume_candidates,
    save_state,
    school_rows,
)
from schoolgate.fleet.waves import (
    DEFAULT_MAX_FAIL,
    DEFAULT_SIZES,
    Wave,
    WaveSpecError,
    parse_specs,
    plan_waves,
)

# "connect" selects no stage: only the rollout's own plays (reachability check, records of every school).
STAGES = (
    "connect",
    "base",
    "provider",
    "tls",
    "signing_cert",
    "registration",
    "agent",
    "monitoring",
    "backup",
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("fleet", help="regional rollout: waves, resume, fleet reports")
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION")
    sub.required = True

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-i", "--inventory", required=True, help="the region's inventory (file or directory)")
        sp.add_argument(
            "--state-dir", type=Path, help="rollout state and records (default reports/fleet/<inv>)"
        )

    def run_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--stages",
            help=f"comma-separated stages to apply (default all; {','.join(STAGES)}); "
            "connect = reachability only",
        )
        sp.add_argument("--forks", type=int, help="parallel schools (default: ansible.cfg forks)")
        sp.add_argument(
            "-e", "--extra-vars", action="append", default=[], help="KEY=VALUE or JSON (repeatable)"
        )

    def wave_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--waves",
            help="wave sizes: schools or %% of the rollout, the last takes the rest "
            f"(default: inventory rollout_waves, else {','.join(DEFAULT_SIZES)})",
        )
        sp.add_argument(
            "--max-fail",
            help="max failed %% per wave, the last value repeats "
            f"(default {','.join(map(str, DEFAULT_MAX_FAIL))})",
        )

    plan = sub.add_parser("plan", help="check mode (--check --diff) across the fleet: what would change")
    common(plan)
    run_opts(plan)
    plan.add_argument("-l", "--limit", help="only these schools (comma-separated names)")
    plan.set_defaults(handler=cmd_plan)

    roll = sub.add_parser("rollout", help="apply the kit wave by wave; a failed wave gate stops the rollout")
    common(roll)
    run_opts(roll)
    wave_opts(roll)
    roll.add_argument("-l", "--limit", help="only these schools (comma-separated names)")
    roll.set_defaults(handler=cmd_rollout)

    res = sub.add_parser("resume", help="run again only the schools that failed or were not reached")
    common(res)
    res.add_argument("--forks", type=int)
    res.add_argument("-e", "--extra-vars", action="append", default=[])
    wave_opts(res)
    res.set_defaults(handler=cmd_resume)

    rep = sub.add_parser("report", help="fleet report (table, JSON, HTML) from the saved records")
    common(rep)
    rep.add_argument("--plan", action="store_true", help="report the last plan (check mode) instead")
    rep.add_argument("--out", type=Path, help="report directory (default: the state directory)")
    rep.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    rep.set_defaults(handler=cmd_report)


# -- helpers ---------------------------------------------------------------------------------------------
def _state_dir(args: argparse.Namespace) -> Path:
    return args.state_dir or default_state_dir(args.inventory)


def _stages(text: str | None) -> list[str]:
    if not text:
        return []
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise WaveSpecError(f"--stages: unknown {unknown}; known: {', '.join(STAGES)}")
    return stages


def _extra_vars(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        item = item.strip()
        if item.startswith("{"):
            out.update(json.loads(item))
        elif "=" in item:
            k, v = item.split("=", 1)
            out[k.strip()] = v
        else:
            raise WaveSpecError(f"-e {item!r}: use KEY=VALUE or a JSON object")
    return out


def _select(fleet: Fleet, limit: str | None) -> list[str]:
    names = fleet.names()
    if not limit:
        return names
    wanted = [s.strip() for s in limit.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise WaveSpecError(f"--limit: {unknown} are not schools of {fleet.inventory}")
    return [n for n in names if n in wanted]


def _specs(args: argparse.Namespace, fleet: Fleet) -> list:  # type: ignore[type-arg]
    if args.waves is None and isinstance(fleet.waves_var, list) and fleet.waves_var:
        ws = fleet.waves_var
        return parse_specs(
            [str(w.get("size", "100%")) for w in ws],
            args.max_fail or [w.get("max_fail_percentage", 0) for w in ws],
            [str(w.get("name", f"wave{i + 1}")) for i, w in enumerate(ws)],
        )
    return parse_specs(args.waves or DEFAULT_SIZES, args.max_fail or DEFAULT_MAX_FAIL)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _print_report(state_dir: Path, fleet: Fleet, state: RolloutState, out: Path | None = None) -> int:
    rows = school_rows(fleet, state, load_records(records_dir(state_dir, state.mode)))
    rep = fleet_report.report_dict(state, rows)
    jpath, hpath = fleet_report.write_reports(out or state_dir, rep)
    print(fleet_report.table(rows))
    print(f"reports: {jpath}  {hpath}")
    return 0 if all(r.status == "ok" for r in rows) else 1


def _run_waves(
    args: argparse.Namespace, fleet: Fleet, state: RolloutState, waves: list[Wave], state_dir: Path
) -> int:
    from schoolgate.fleet.runner import run_wave  # ansible-runner only when something runs

    run_id = new_run_id()
    state.run_ids.append(run_id)
    state.waves = [w for w in state.waves if w.status == "passed" or not w.hosts] if state.waves else []
    # A resume keeps the history of passed waves and appends its own.
    state.waves += waves
    state.stopped_at = None
    save_state(state_dir, state)
    display = Display()
    extra = _extra_vars(getattr(args, "extra_vars", []) or [])
    for i, wave in enumerate(waves, start=1):
        wave.status = "running"
        save_state(state_dir, state)
        outcome = run_wave(
            inventory=state.inventory,
            hosts=wave.hosts,
            wave=wave.name,
            index=i,
            total_waves=len(waves),
            max_fail_percentage=wave.max_fail_percentage,
            results_dir=records_dir(state_dir, state.mode),
            run_id=run_id,
            stages=state.stages,
            check=state.mode == "check",
            require_gate=i > 1,
            forks=args.forks,
            extra_vars=extra,
            artifacts_dir=state_dir / "artifacts",
            display=display,
        )
        wave.rc = outcome.rc
        wave.failed = outcome.failed
        if state.mode == "check" or outcome.passed_gate:
            wave.status = "passed"
            save_state(state_dir, state)
            continue
        wave.status = "stopped"
        state.stopped_at = wave.name
        for later in waves[i:]:
            later.status = "not_started"
        save_state(state_dir, state)
        print(
            f"wave {wave.name} failed its gate ({len(outcome.failed)} of {len(wave.hosts)} schools failed, "
            f"max {wave.max_fail_percentage}%): rollout stopped before the next wave. "
            f"Fix the schools, then: schoolgate fleet resume -i {state.inventory}",
            file=sys.stderr,
        )
        break
    _print_report(state_dir, fleet, state)
    return 1 if state.stopped_at or any(w.failed for w in waves) else 0


# -- commands --------------------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    try:
        fleet = load_fleet(args.inventory)
        schools = _select(fleet, args.limit)
        state = RolloutState(inventory=args.inventory, stages=_stages(args.stages), mode="check")
        wave = Wave("plan", schools, 100)
        return _run_waves(args, fleet, state, [wave], _state_dir(args))
    except (InventoryError, WaveSpecError, StateError, ValueError) as exc:
        return _fail(str(exc))


def cmd_rollout(args: argparse.Namespace) -> int:
    try:
        fleet = load_fleet(args.inventory)
        schools = _select(fleet, args.limit)
        waves = plan_waves(schools, _specs(args, fleet), first=fleet.canary)
        state = RolloutState(inventory=args.inventory, stages=_stages(args.stages))
        print(
            "waves: "
            + "; ".join(f"{w.name} {len(w.hosts)} (max fail {w.max_fail_percentage}%)" for w in waves)
        )
        return _run_waves(args, fleet, state, waves, _state_dir(args))
    except (InventoryError, WaveSpecError, StateError, ValueError) as exc:
        return _fail(str(exc))


def cmd_resume(args: argparse.Namespace) -> int:
    try:
        state_dir = _state_dir(args)
        state = load_state(state_dir)
        fleet = load_fleet(state.inventory)
        rows = school_rows(fleet, state, load_records(records_dir(state_dir)))
        todo = resume_candidates(rows)
        if not todo:
            print("nothing to resume: every school of the rollout is done")
            return _print_report(state_dir, fleet, state)
        waves = plan_waves(todo, _specs(args, fleet))
        print(f"resume: {len(todo)} schools: {', '.join(todo[:20])}{' ...' if len(todo) > 20 else ''}")
        return _run_waves(args, fleet, state, waves, state_dir)
    except (InventoryError, WaveSpecError, StateError, ValueError) as exc:
        return _fail(str(exc))


def cmd_report(args: argparse.Namespace) -> int:
    try:
        state_dir = _state_dir(args)
        mode = "check" if args.plan else "apply"
        state = load_state(state_dir, mode)
        fleet = load_fleet(state.inventory)
        if args.json:
            rows = school_rows(fleet, state, load_records(records_dir(state_dir, mode)))
            print(json.dumps(fleet_report.report_dict(state, rows), ensure_ascii=False, indent=1))
            return 0
        return _print_report(state_dir, fleet, state, args.out)
    except (InventoryError, StateError) as exc:
        return _fail(str(exc))
