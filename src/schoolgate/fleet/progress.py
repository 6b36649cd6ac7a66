"""Live progress of a wave from ansible-runner events: schools done / failed / running, current stage."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

DONE_TASK = "Rollout | every stage passed on this school"
GATE_TASK = "Rollout | stop when too many schools of the wave failed"


@dataclass
class WaveProgress:
    wave: str
    index: int
    total_waves: int
    members: list[str]
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    stage_of: dict[str, str] = field(default_factory=dict)
    play: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)
    gate_failed: bool = False

    @property
    def running(self) -> int:
        return len(set(self.members) - self.done - self.failed)

    def handle(self, event: dict[str, Any]) -> bool:
        """Update from one ansible-runner event; True when the visible counts changed."""
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        host = str(data.get("host", ""))
        before = (len(self.done), len(self.failed), self.play)
        if kind == "playbook_on_play_start":
            self.play = str(data.get("play", ""))
        elif kind == "runner_on_ok" and data.get("task") == DONE_TASK and host in self.members:
            self.done.add(host)
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            if data.get("task") == GATE_TASK:
                self.gate_failed = True
            elif host in self.members:
                self.failed.add(host)
        elif kind == "runner_on_unreachable" and host in self.members:
            self.failed.add(host)
        elif kind == "playbook_on_stats":
            self.artifacts = dict(data.get("artifact_data") or {})
        if host and kind.startswith("runner_on_"):
            self.stage_of[host] = self.play
        return before != (len(self.done), len(self.failed), self.play)

    def line(self) -> str:
        stages = Counter(self.stage_of.get(h, "") for h in self.members if h not in self.done | self.failed)
        stage = stages.most_common(1)[0][0] if stages else ""
        return (
            f"wave {self.index}/{self.total_waves} {self.wave}: {len(self.members)} schools | "
            f"done {len(self.done)} | failed {len(self.failed)} | running {self.running}"
            + (f" | {stage}" if stage and self.running else "")
        )


class Display:
    """One status line: rewritten in place on a terminal, printed on change (at most every 2 s) in logs."""

    def __init__(self, out: TextIO | None = None, min_interval_s: float = 2.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._last_line = ""

    def show(self, line: str, force: bool = False) -> None:
        now = time.monotonic()
        if line == self._last_line and not force:
            return
        if not force and not self.tty and now - self._last < self.min_interval_s:
            return
        self._last, self._last_line = now, line
        if self.tty:
            self.out.write("\r\x1b[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self, line: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[K" + line + "\n")
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self._last_line = line


def event_handler(progress: WaveProgress, display: Display) -> Callable[[dict[str, Any]], bool]:
    def handle(event: dict[str, Any]) -> bool:
        progress.handle(event)
        display.show(progress.line())  # repeated lines are dropped; logs get at most one line per 2 s
        return True  # keep every event in the runner's artifacts

    return handle
