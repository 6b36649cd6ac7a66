"""The single `schoolgate` command line.

Each area of the product owns its subcommand in its own package and exposes
`register(subparsers)`; this module only wires them together, importing each
lazily-enough that a broken optional area never hides the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (subcommand, module that provides `register(subparsers)`)
SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("lab", "schoolgate.lab.cli"),
    ("esia", "schoolgate.esia.cli"),
    ("sim", "schoolgate.sim.cli"),
    ("agent", "schoolgate.agent.cli"),
    ("fleet", "schoolgate.fleet.cli"),
    ("audit", "schoolgate.audit.cli"),
    ("acceptance", "schoolgate.acceptance.cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schoolgate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _name, module_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # area not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    prepare = getattr(args, "prepare", None)  # area-wide options (e.g. `lab --lab NS`) applied first
    if prepare is not None:
        try:
            prepare(args)
        except ValueError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
