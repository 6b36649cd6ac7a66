# Managed by schoolgate (src/schoolgate/fleet). Loaded automatically for playbooks in this directory; it
# only acts for playbooks/rollout.yml.
from __future__ import annotations

import datetime
import json
import os
import tempfile
from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: fleet_results
type: aggregate
short_description: per-school result records of a schoolgate rollout wave
description:
  - Active only when the playbook being run is C(rollout.yml); other playbooks are ignored.
  - For every school of the wave (the hosts of the play whose vars set C(rollout_marker=start)) writes
    C(<rollout_results_dir>/<host>.json) on the controller at the end of the run with the stage reached,
    the stages completed, the number of changed tasks, and for a failed school the failed task and its
    message.
  - Messages of tasks with C(no_log) are never written (the record says the output was hidden).
  - The stage of a play comes from its C(rollout_stage) variable (set by the import in rollout.yml).
options: {}
"""

MESSAGE_LIMIT = 600
ARG_SPEC_ACTIONS = frozenset({"validate_argument_spec", "ansible.builtin.validate_argument_spec"})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _message(result: dict[str, Any]) -> str:
    if result.get("_ansible_no_log") or result.get("censored"):
        return "output hidden (no_log)"
    parts = []
    msg = result.get("msg")
    if msg:
        parts.append(str(msg))
    stderr = result.get("stderr")
    if stderr and str(stderr) not in " ".join(parts):
        parts.append(str(stderr))
    if not parts and result.get("results"):  # a loop: the first failed item explains it
        for item in result["results"]:
            if isinstance(item, dict) and item.get("failed"):
                return _message(item)
    text = " | ".join(p.strip() for p in parts) or "failed (no message)"
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_results"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.results_dir = ""
        self.wave = ""
        self.run_id = ""
        self.stage = ""
        self.marker = ""
        self.started = _now()
        self.check_mode = False
        self.members: list[str] = []
        self.hosts: dict[str, dict[str, Any]] = {}

    # -- run and play boundaries -------------------------------------------------------------
    def v2_playbook_on_start(self, playbook: Any) -> None:
        name = os.path.basename(getattr(playbook, "_file_name", "") or "")
        self.active = name == "rollout.yml"
        self.check_mode = bool(context.CLIARGS.get("check", False))
        self.started = _now()

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if not self.active:
            return
        pvars = play.vars or {}
        extra = play.get_variable_manager().extra_vars
        if not self.results_dir:
            default = os.path.join(os.getcwd(), "reports", "fleet", "plan" if self.check_mode else "results")
            self.results_dir = str(extra.get("rollout_results_dir") or default)
            self.wave = str(extra.get("rollout_wave", "all"))
            self.run_id = str(extra.get("rollout_run_id", self.started))
        self.stage = str(pvars.get("rollout_stage", ""))
        self.marker = str(pvars.get("rollout_marker", ""))
        if pvars.get("rollout_marker") == "start":
            inventory = play.get_variable_manager()._inventory
            self.members = [h.name for h in inventory.get_hosts(play.hosts)]
            for name in self.members:
                self._host(name)

    # -- per-host results --------------------------------------------------------------------
    def _host(self, name: str) -> dict[str, Any]:
        return self.hosts.setdefault(
            name,
            {
                "stages": [],
                "changed": 0,
                "ok": 0,
                "failed_task": "",
                "message": "",
                "failed_stage": "",
                "status": "running",
            },
        )

    def _seen(self, result: Any, progress: bool = True) -> dict[str, Any] | None:
        if not self.active or not self.stage:
            return None
        rec = self._host(result._host.get_name())
        # Argument-spec validation runs even for stages deselected by --tags: passing it is no progress.
        if result._task.action in ARG_SPEC_ACTIONS and progress:
            return rec
        if self.stage not in rec["stages"]:
            rec["stages"].append(self.stage)
        return rec

    def v2_runner_on_ok(self, result: Any) -> None:
        if self.active and self.marker == "end":
            self._host(result._host.get_name())["done"] = True
            return
        rec = self._seen(result)
        if rec is not None:
            rec["ok"] += 1
            rec["changed"] += int(bool(result._result.get("changed")))

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        rec = self._seen(result, progress=False)
        if rec is None or ignore_errors:
            return
        rec["status"] = "failed"
        rec["failed_stage"] = self.stage
        rec["failed_task"] = result.task_name or result._task.get_name()
        rec["message"] = _message(result._result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        rec = self._seen(result, progress=False)
        if rec is None:
            return
        rec["status"] = "unreachable"
        rec["failed_stage"] = self.stage
        rec["failed_task"] = result.task_name or result._task.get_name()
        rec["message"] = _message(result._result)

    # -- the records -------------------------------------------------------------------------
    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self.active or not self.members:
            return
        os.makedirs(self.results_dir, mode=0o750, exist_ok=True)
        finished = _now()
        for name in self.members:
            rec = self._host(name)
            if rec["status"] == "running":
                # Not failed itself: done when the end marker play reached it; else the run stopped before
                # this school finished (the wave gate or Ansible ended the playbook).
                rec["status"] = "ok" if rec.get("done") else "not_finished"
            stages = rec["stages"]
            done = [s for s in stages if s != rec["failed_stage"]]
            record = {
                "school": name,
                "wave": self.wave,
                "run_id": self.run_id,
                "mode": "check" if self.check_mode else "apply",
                "status": rec["status"],
                "stage_reached": rec["failed_stage"] or (stages[-1] if stages else ""),
                "stages_done": done,
                "changed": rec["changed"],
                "ok": rec["ok"],
                "failed_task": rec["failed_task"],
                "message": rec["message"],
                "started": self.started,
                "finished": finished,
            }
            fd, tmp = tempfile.mkstemp(dir=self.results_dir, prefix=f".{name}.", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(record, out, ensure_ascii=False, indent=1, sort_keys=True)
            os.chmod(tmp, 0o640)
            os.replace(tmp, os.path.join(self.results_dir, f"{name}.json"))
