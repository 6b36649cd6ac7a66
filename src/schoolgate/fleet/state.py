"""What the controller remembers about a rollout: the waves (rollout.json) and per-school records.

Per-school records are written by playbooks/callback_plugins/fleet_results.py (one JSON per school, per run);
this module merges them with the rollout's waves into one row per school.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from schoolgate.fleet.inventory import Fleet
from schoolgate.fleet.waves import Wave

KIND = "schoolgate-fleet-rollout"
STATUSES = ("ok", "failed", "unreachable", "not_finished", "not_reached")
STATUS_RU = {
    "ok": "готово",
    "failed": "ошибка",
    "unreachable": "нет связи",
    "not_finished": "прервано",
    "not_reached": "не начато",
}
# Schools `resume` runs again: everything that did not finish successfully in this rollout.
RESUME_STATUSES = frozenset({"failed", "unreachable", "not_finished", "not_reached"})


class StateError(RuntimeError):
    """The saved rollout state is missing or unusable; the message says what to run."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def default_state_dir(inventory: str, base: Path = Path("reports/fleet")) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(inventory.rstrip("/")).name).strip("-") or "fleet"
    return base / slug


@dataclass
class RolloutState:
    inventory: str
    stages: list[str]
    mode: str = "apply"  # apply | check
    run_ids: list[str] = field(default_factory=list)
    waves: list[Wave] = field(default_factory=list)
    started: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    stopped_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = KIND
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutState:
        if d.get("kind") != KIND:
            raise StateError("not a schoolgate fleet rollout state file")
        waves = [Wave(**w) for w in d.get("waves", [])]
        return cls(
            inventory=d["inventory"],
            stages=list(d.get("stages", [])),
            mode=d.get("mode", "apply"),
            run_ids=list(d.get("run_ids", [])),
            waves=waves,
            started=d.get("started", ""),
            updated=d.get("updated", ""),
            stopped_at=d.get("stopped_at"),
        )

    def wave_of(self) -> dict[str, str]:
        """School → the wave it was last planned in."""
        out: dict[str, str] = {}
        for w in self.waves:
            for h in w.hosts:
                out[h] = w.name
        return out


def state_file(state_dir: Path, mode: str = "apply") -> Path:
    return state_dir / ("plan.json" if mode == "check" else "rollout.json")


def records_dir(state_dir: Path, mode: str = "apply") -> Path:
    return state_dir / ("plan" if mode == "check" else "results")


def _atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def save_state(state_dir: Path, state: RolloutState) -> Path:
    state.updated = now_iso()
    path = state_file(state_dir, state.mode)
    _atomic_write(path, json.dumps(state.to_dict(), ensure_ascii=False, indent=1))
    return path


def load_state(state_dir: Path, mode: str = "apply") -> RolloutState:
    path = state_file(state_dir, mode)
    if not path.exists():
        what = "schoolgate fleet plan" if mode == "check" else "schoolgate fleet rollout"
        raise StateError(f"{path} does not exist: run `{what}` first")
    try:
        return RolloutState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path}: unreadable rollout state: {exc}") from exc


def load_records(directory: Path) -> dict[str, dict[str, Any]]:
    """School → its newest record in `directory` (one file per school, replaced by each run)."""
    out: dict[str, dict[str, Any]] = {}
    if not directory.is_dir():
        return out
    for f in sorted(directory.glob("*.json")):
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a record being replaced right now; the next read sees the new one
        if isinstance(rec, dict) and rec.get("school"):
            out[str(rec["school"])] = rec
    return out


@dataclass(frozen=True)
class SchoolRow:
    school: str
    school_id: str
    region: str
    municipality: str
    wave: str
    status: str
    stage_reached: str
    stages_done: list[str]
    changed: int
    failed_task: str
    message: str
    finished: str
    run_id: str

    @property
    def status_ru(self) -> str:
        return STATUS_RU.get(self.status, self.status)


def school_rows(fleet: Fleet, state: RolloutState, records: dict[str, dict[str, Any]]) -> list[SchoolRow]:
    """One row per school of the rollout: its record from this rollout's runs, or not reached."""
    waves = state.wave_of()
    in_rollout = [s for s in fleet.schools if s.name in waves] or fleet.schools
    rows: list[SchoolRow] = []
    runs = set(state.run_ids)
    for s in in_rollout:
        rec = records.get(s.name)
        if rec is None or rec.get("run_id") not in runs:
            rec = {}
        status = str(rec.get("status") or "not_reached")
        if status not in STATUSES:
            status = "not_finished"
        rows.append(
            SchoolRow(
                school=s.name,
                school_id=s.school_id,
                region=s.region,
                municipality=s.municipality,
                wave=str(rec.get("wave") or waves.get(s.name, "")),
                status=status,
                stage_reached=str(rec.get("stage_reached", "")),
                stages_done=list(rec.get("stages_done", [])),
                changed=int(rec.get("changed", 0) or 0),
                failed_task=str(rec.get("failed_task", "")),
                message=str(rec.get("message", "")),
                finished=str(rec.get("finished", "")),
                run_id=str(rec.get("run_id", "")),
            )
        )
    return rows


def resume_candidates(rows: list[SchoolRow]) -> list[str]:
    """Schools to run again, the ones that failed first (they prove the fix before untouched schools)."""
    failed = [r.school for r in rows if r.status in {"failed", "unreachable", "not_finished"}]
    untouched = [r.school for r in rows if r.status == "not_reached"]
    return failed + untouched
