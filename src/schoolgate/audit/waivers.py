"""Waivers: per-host, time-limited exceptions with a justification and an owner (the audit trail).

File format (YAML or JSON)::

    waivers:
      - check: SEC-UPDATES          # check id from the catalogue
        hosts: "school-01*"         # shell-style pattern on the inventory host name
        justification: "..."        # why; shown in every report
        owner: "ivanov@rcoi.example"
        expires: 2027-01-31         # the waiver stops applying after this day (UTC); then the check FAILS

The whole file is validated before any check is evaluated; every problem is reported at once.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class WaiverError(ValueError):
    """The waivers file is malformed; `problems` lists every problem with its entry."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{path}: invalid waivers file:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Waiver:
    check: str
    hosts: str
    justification: str
    owner: str
    expires: dt.date
    index: int

    def matches(self, check_id: str, host: str) -> bool:
        return self.check == check_id and fnmatch.fnmatchcase(host, self.hosts)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "hosts": self.hosts,
            "justification": self.justification,
            "owner": self.owner,
            "expires": self.expires.isoformat(),
        }


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


_SCAP_RULE = re.compile(r"^SCAP:[a-z0-9_]+$")


def _known(check_id: str, known_checks: set[str]) -> bool:
    # OpenSCAP rule findings are named SCAP:<rule id without the SSG prefix>; the rule set depends on the
    # installed content, so any well-formed rule id is accepted.
    return check_id in known_checks or bool(_SCAP_RULE.match(check_id))


def load_waivers(path: Path | None, known_checks: set[str]) -> list[Waiver]:
    if path is None:
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WaiverError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise WaiverError(path, [f"not valid YAML/JSON: {exc}"]) from exc
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("waivers"), list):
        raise WaiverError(path, ["expected a mapping with a 'waivers' list"])
    problems: list[str] = []
    waivers: list[Waiver] = []
    allowed = {"check", "hosts", "justification", "owner", "expires"}
    for i, raw in enumerate(data["waivers"]):
        where = f"waivers[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: not a mapping")
            continue
        for key in sorted(set(raw) - allowed):
            problems.append(f"{where}: unknown field '{key}' (allowed: {', '.join(sorted(allowed))})")
        entry_ok = True
        for key in ("check", "hosts", "justification", "owner"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                problems.append(f"{where}: '{key}' is required (non-empty text)")
                entry_ok = False
        if isinstance(raw.get("check"), str) and not _known(raw["check"], known_checks):
            problems.append(
                f"{where}: unknown check id '{raw['check']}'"
                " (a catalogue id, or SCAP:<rule> for one OpenSCAP rule)"
            )
            entry_ok = False
        expires = _date(raw.get("expires"))
        if expires is None:
            problems.append(f"{where}: 'expires' must be a date YYYY-MM-DD")
            entry_ok = False
        if entry_ok and expires is not None:
            waivers.append(
                Waiver(
                    check=raw["check"],
                    hosts=raw["hosts"],
                    justification=raw["justification"],
                    owner=raw["owner"],
                    expires=expires,
                    index=i,
                )
            )
    if problems:
        raise WaiverError(path, problems)
    return waivers


def find_waiver(waivers: list[Waiver], check_id: str, host: str) -> Waiver | None:
    """The matching waiver; a live one wins over an expired one so renewing by appending works."""
    matching = [w for w in waivers if w.matches(check_id, host)]
    if not matching:
        return None
    return max(matching, key=lambda w: w.expires)
