"""`schoolgate acceptance run|runbook|render-check`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import aio
from .target import Target, TargetError


def _mix(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--load-mix: {part!r} is not NAME=WEIGHT") from None
    return out


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("acceptance", help="integration test, load test, staff runbook")
    sub = p.add_subparsers(dest="acceptance_command", metavar="ACTION")
    sub.required = True

    r = sub.add_parser("run", help="integration test of a deployed school; JSON, JUnit XML and HTML report")
    r.add_argument("--target", type=Path, required=True, help="target JSON (see docs/acceptance.md)")
    r.add_argument("--out", type=Path, default=Path("reports/acceptance"), help="report directory")
    r.add_argument("--cases", help="comma-separated case ids (default: all)")
    r.add_argument("--load-clients", type=int, default=200)
    r.add_argument("--load-seconds", type=float, default=30.0, help="0 = no load phase")
    r.add_argument("--load-mix", type=_mix, help="e.g. record=0.6,services=0.3,document=0.1")
    r.add_argument("--p95-limit", type=float, default=2.0, help="seconds (the seed's requirement: 2)")
    r.set_defaults(handler=cmd_run)

    b = sub.add_parser("runbook", help="staff runbook (Russian, Markdown + HTML) for one school")
    b.add_argument("--vars", type=Path, required=True, help="JSON with the school's runbook variables")
    b.add_argument("--rules", type=Path, required=True, help="rendered Prometheus alert rules (YAML)")
    b.add_argument("--out", type=Path, required=True, help="directory for runbook-<school>.md/.html")
    b.set_defaults(handler=cmd_runbook)

    c = sub.add_parser("render-check", help="open an HTML file in headless Chromium, screenshot it")
    c.add_argument("html", type=Path)
    c.add_argument("--screenshot", type=Path, required=True)
    c.set_defaults(handler=cmd_render_check)


def cmd_run(args: argparse.Namespace) -> int:
    from . import report as rep
    from .runner import run

    try:
        target = Target.from_file(args.target)
        target.check()
    except TargetError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    cases = [c.strip() for c in args.cases.split(",")] if args.cases else None
    print(f"Приёмочные испытания школы {target.school}: {target.portal_url}")
    try:
        result = aio.run(
            run(
                target,
                args.out,
                cases=cases,
                load_clients=args.load_clients,
                load_seconds=args.load_seconds,
                load_mix=args.load_mix,
                p95_limit_s=args.p95_limit,
            )
        )
    except ValueError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    paths = rep.write_reports(result, args.out)
    verdict = "ПРОЙДЕНЫ" if result.passed else "НЕ ПРОЙДЕНЫ"
    print(f"Итог: {verdict}. Отчёт: {paths['html']} (JSON {paths['json']}, JUnit {paths['junit']})")
    return 0 if result.passed else 1


def cmd_runbook(args: argparse.Namespace) -> int:
    from .runbook import RunbookError, write_runbook

    try:
        data = json.loads(args.vars.read_text(encoding="utf-8"))
        paths = write_runbook(data, args.rules.read_text(encoding="utf-8"), args.out)
    except (OSError, ValueError, RunbookError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def cmd_render_check(args: argparse.Namespace) -> int:
    from .browser import BrowserUnavailable, render_check

    try:
        result = render_check(args.html, args.screenshot)
    except BrowserUnavailable as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 1 if result["errors"] else 0
