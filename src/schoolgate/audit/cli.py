"""`schoolgate audit report|waivers-check`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schoolgate.audit.catalogue import DEFAULT_CATALOGUE, CatalogueError, load_catalogue
from schoolgate.audit.evaluate import evaluate_host
from schoolgate.audit.report import (
    EvidenceError,
    FleetReport,
    find_previous,
    load_evidence,
    now_stamp,
    write_reports,
)
from schoolgate.audit.waivers import WaiverError, load_waivers


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("audit", help="compliance audit reports and waivers")
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION")
    sub.required = True

    rep = sub.add_parser(
        "report", help="evaluate evidence from playbooks/audit.yml; write JSON, JUnit XML, HTML"
    )
    rep.add_argument(
        "--evidence",
        type=Path,
        nargs="+",
        default=[Path("reports/audit")],
        help="evidence files or directories (newest file per host is used); default reports/audit",
    )
    rep.add_argument("--waivers", type=Path, help="waivers file (YAML/JSON)")
    rep.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE, help="check catalogue (checks.yml)")
    rep.add_argument("--out", type=Path, default=Path("reports/audit"), help="report directory")
    rep.set_defaults(handler=cmd_report)

    wc = sub.add_parser("waivers-check", help="validate a waivers file; list expired waivers")
    wc.add_argument("waivers", type=Path)
    wc.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    wc.set_defaults(handler=cmd_waivers_check)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        checks = load_catalogue(args.catalogue)
        waivers = load_waivers(args.waivers, {c.id for c in checks})
        evidence = load_evidence(args.evidence)
    except (CatalogueError, WaiverError, EvidenceError) as exc:
        print(f"ошибка / error: {exc}", file=sys.stderr)
        return 2
    if not evidence:
        print(
            f"error: no audit evidence found in {', '.join(map(str, args.evidence))}; "
            "run ansible-playbook playbooks/audit.yml first",
            file=sys.stderr,
        )
        return 2
    results = [r for ev in evidence for r in evaluate_host(ev, checks, waivers)]
    report = FleetReport(
        generated_at=now_stamp(),
        checks=checks,
        results=results,
        evidence=evidence,
        previous=find_previous(args.out),
    )
    paths = write_reports(report, args.out)
    t = report.totals()
    print(f"hosts {len(evidence)}: " + ", ".join(f"{k} {v}" for k, v in t.items()))
    for r in results:
        if r.failing:
            print(f"  {r.status.upper():5} {r.host} {r.check.id} [{', '.join(r.check.measures)}]: {r.detail}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 1 if report.failed else 0


def cmd_waivers_check(args: argparse.Namespace) -> int:
    import datetime as dt

    try:
        checks = load_catalogue(args.catalogue)
        waivers = load_waivers(args.waivers, {c.id for c in checks})
    except (CatalogueError, WaiverError) as exc:
        print(f"ошибка / error: {exc}", file=sys.stderr)
        return 2
    today = dt.datetime.now(dt.UTC).date()
    expired = [w for w in waivers if w.expired(today)]
    print(f"{args.waivers}: {len(waivers)} waivers valid, {len(expired)} expired")
    for w in expired:
        print(
            f"  expired {w.expires.isoformat()}: {w.check} on {w.hosts} (owner {w.owner})"
            " - counts as a failure"
        )
    return 0
