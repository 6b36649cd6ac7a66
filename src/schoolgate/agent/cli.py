"""`schoolgate agent serve|status|dlq list|dlq replay|drain|check-config|gen-secret`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .. import aio


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("agent", help="the integration agent (portal → provider)")
    p.add_argument(
        "--config",
        "-c",
        default=None,
        help="config file (YAML or JSON; default $SCHOOLGATE_AGENT_CONFIG or /etc/schoolgate/agent.yaml)",
    )
    sub = p.add_subparsers(dest="agent_command", metavar="ACTION")
    sub.required = True

    s = sub.add_parser("serve", help="run the agent (local API + delivery workers)")
    s.add_argument("--ready-file", help="write the pid here once listening (tests, systemd helpers)")
    s.set_defaults(handler=_serve)

    s = sub.add_parser("check-config", help="validate the config file and exit")
    s.set_defaults(handler=_check_config)

    s = sub.add_parser("status", help="queue depth, delivered, dead letters, oldest queued age")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_status)

    dlq = sub.add_parser("dlq", help="dead-letter queue")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION")
    dsub.required = True
    s = dsub.add_parser("list", help="records the provider refused, with its reason")
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_dlq_list)
    s = dsub.add_parser("replay", help="queue dead letters again (after the cause was fixed)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--record-id", action="append", dest="record_ids", help="replay this record (repeatable)")
    g.add_argument("--all", action="store_true", help="replay every dead letter")
    s.set_defaults(handler=_dlq_replay)

    s = sub.add_parser("drain", help="wait until every queued record was delivered (or dead-lettered)")
    s.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (exit 1)")
    s.set_defaults(handler=_drain)

    s = sub.add_parser("gen-secret", help="create a new HMAC secret file (mode 0600)")
    s.add_argument("path")
    s.set_defaults(handler=_gen_secret)


def _load(args: argparse.Namespace, *, check_files: bool = True) -> Any:
    from .config import ConfigError, load

    try:
        return load(args.config, check_files=check_files)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    from . import logs
    from .app import run

    cfg = _load(args)
    logs.setup(cfg.log_level)
    try:
        aio.run(run(cfg, ready_file=args.ready_file))
    except ValueError as exc:  # secret file problems etc., already phrased for the admin
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    return 0


def _check_config(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"{cfg.source}: OK")
    return 0


def _status(args: argparse.Namespace) -> int:
    from .store import cli_status

    cfg = _load(args, check_files=False)
    st = cli_status(cfg.outbox.path)
    if args.json:
        print(json.dumps(st))
    else:
        for k, v in st.items():
            print(f"{k:22} {v}")
    return 0


def _dlq_list(args: argparse.Namespace) -> int:
    from .store import cli_dlq_list

    cfg = _load(args, check_files=False)
    rows = cli_dlq_list(cfg.outbox.path, args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print("dead-letter queue is empty")
    for r in rows:
        print(
            f"{r['seq']:>10} {r['record_id']} {r['kind']:12} "
            f"HTTP {r['http_status']} {r['code']}: {r['message']}"
        )
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from .store import cli_dlq_replay

    cfg = _load(args, check_files=False)
    n = cli_dlq_replay(cfg.outbox.path, None if args.all else args.record_ids)
    print(f"{n} record(s) queued again")
    return 0


def _drain(args: argparse.Namespace) -> int:
    from .store import cli_status

    cfg = _load(args, check_files=False)
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        st = cli_status(cfg.outbox.path)
        if st["queued"] == 0:
            print(f"drained: delivered={st['delivered']} dead={st['dead']}")
            return 0
        if st["queued"] != last:
            print(f"queued={st['queued']} oldest={st['oldest_queued_age_s']}s", flush=True)
            last = st["queued"]
        if time.monotonic() > deadline:
            print(
                f"not drained after {args.timeout:.0f}s: {st['queued']} still queued "
                "(is the agent running? see `schoolgate agent status` and its log)",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.5)


def _gen_secret(args: argparse.Namespace) -> int:
    from .auth import generate_secret_file

    generate_secret_file(args.path)
    print(f"wrote {args.path} (mode 0600)")
    return 0
