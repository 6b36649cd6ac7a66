"""`schoolgate fleet` end to end with real ansible-playbook runs of playbooks/rollout.yml on local hosts.

Cheap by design: `--stages connect` runs only the rollout's own plays (wave settings, reachability, the
gate and the per-school records), no role, so nothing on this machine changes. A "broken" school is one
whose SSH port on 127.0.0.1 is closed (unreachable). The lab test (tests/lab/test_fleet.py) does the same
against real school containers with the `base` stage and a really broken apt source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schoolgate.cli import main

PY = sys.executable


def _inventory(path: Path, broken: str | None, canary: str = "school-a") -> Path:
    lines = ["[schools]"]
    for name in ("school-a", "school-b", "school-c", "school-x"):
        if name == broken:
            lines.append(
                f"{name} ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody"
            )
        else:
            lines.append(f"{name} ansible_connection=local")
    lines += ["[canary]", canary, "[all:vars]", f"ansible_python_interpreter={PY}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _records(state: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (state / "results").glob("*.json")}


def test_broken_school_does_not_stop_its_wave_and_resume_touches_only_it(tmp_path, capsys):
    inv = _inventory(tmp_path / "region.ini", broken="school-x")
    state = tmp_path / "state"
    rc = main(
        [
            "fleet",
            "rollout",
            "-i",
            str(inv),
            "--state-dir",
            str(state),
            "--stages",
            "connect",
            "--waves",
            "1,100%",
            "--max-fail",
            "0,50",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1  # not everything is done
    recs = _records(state)
    assert {k: v["status"] for k, v in recs.items()} == {
        "school-a": "ok",
        "school-b": "ok",
        "school-c": "ok",
        "school-x": "unreachable",
    }
    assert recs["school-a"]["wave"] == "canary" and recs["school-b"]["wave"] == "rest"
    assert recs["school-x"]["failed_task"] == "Rollout | school reachable (Python answers)"
    assert "127.0.0.1" in recs["school-x"]["message"]
    rollout = json.loads((state / "rollout.json").read_text(encoding="utf-8"))
    assert [w["status"] for w in rollout["waves"]] == ["passed", "passed"]  # 1 of 3 failed ≤ 50%: gate passed
    assert "school-x       rest     unreachable" in out
    report = json.loads((state / "fleet-report.json").read_text(encoding="utf-8"))
    assert report["totals"]["ok"] == 3 and report["totals"]["unreachable"] == 1
    assert "нет связи" in (state / "fleet-report.html").read_text(encoding="utf-8")

    _inventory(inv, broken=None)  # the school is fixed
    rc = main(["fleet", "resume", "-i", str(inv), "--state-dir", str(state)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "resume: 1 schools: school-x" in out
    after = _records(state)
    assert after["school-x"]["status"] == "ok" and after["school-x"]["run_id"] != recs["school-x"]["run_id"]
    for other in ("school-a", "school-b", "school-c"):  # untouched: the very same records
        assert after[other] == recs[other]
    rc = main(["fleet", "report", "-i", str(inv), "--state-dir", str(state)])
    assert rc == 0 and "ok 4 | failed 0" in capsys.readouterr().out


def test_canary_failure_stops_the_rollout_before_the_next_wave(tmp_path, capsys):
    inv = _inventory(tmp_path / "region.ini", broken="school-x", canary="school-x")
    state = tmp_path / "state"
    rc = main(
        [
            "fleet",
            "rollout",
            "-i",
            str(inv),
            "--state-dir",
            str(state),
            "--stages",
            "connect",
            "--waves",
            "1,100%",
            "--max-fail",
            "0,100",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "wave canary failed its gate" in captured.err
    rollout = json.loads((state / "rollout.json").read_text(encoding="utf-8"))
    assert rollout["stopped_at"] == "canary"
    assert [(w["name"], w["hosts"], w["status"]) for w in rollout["waves"]] == [
        ("canary", ["school-x"], "stopped"),
        ("rest", ["school-a", "school-b", "school-c"], "not_started"),
    ]
    assert set(_records(state)) == {"school-x"}  # nobody else was touched
    report = json.loads((state / "fleet-report.json").read_text(encoding="utf-8"))
    assert report["totals"]["not_reached"] == 3 and report["totals"]["unreachable"] == 1
