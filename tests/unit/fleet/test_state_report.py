"""Rows per school from records, resume selection, and the HTML/JSON fleet reports."""

from __future__ import annotations

import json
import re

from schoolgate.fleet import report
from schoolgate.fleet.inventory import parse_inventory_list
from schoolgate.fleet.state import (
    RolloutState,
    load_records,
    load_state,
    resume_candidates,
    save_state,
    school_rows,
)
from schoolgate.fleet.waves import Wave

INVENTORY = {
    "_meta": {
        "hostvars": {
            "s1": {"school_id": "1027700000001", "region_name": "Пример", "rollout_waves": [{"size": 1}]},
            "s2": {"municipality_name": "Озёрский ГО"},
            "s3": {},
            "s4": {},
        }
    },
    "all": {"children": ["ungrouped", "schools", "canary"]},
    "schools": {"children": ["mun_lesnoy", "mun_ozersk"]},
    "mun_lesnoy": {"hosts": ["s1", "s3"]},
    "mun_ozersk": {"hosts": ["s2", "s4"]},
    "canary": {"hosts": ["s3"]},
}


def _fleet():
    return parse_inventory_list(INVENTORY, "inventories/example-region")


def test_inventory_tree_gives_region_municipality_canary():
    fleet = _fleet()
    assert fleet.names() == ["s1", "s3", "s2", "s4"]
    by = fleet.by_name()
    assert by["s1"].region == "Пример" and by["s3"].region == "example-region"
    assert by["s1"].municipality == "mun_lesnoy" and by["s2"].municipality == "Озёрский ГО"
    assert by["s1"].school_id == "1027700000001" and by["s3"].school_id == "s3"
    assert fleet.canary == ["s3"] and fleet.waves_var == [{"size": 1}]


def _write(d, school, **kw):
    rec = {
        "school": school,
        "status": "ok",
        "run_id": "r1",
        "wave": "canary",
        "stage_reached": "base",
        "stages_done": ["connect", "base"],
        "changed": 0,
        "failed_task": "",
        "message": "",
        "finished": "t",
    }
    rec.update(kw)
    (d / f"{school}.json").write_text(json.dumps(rec), encoding="utf-8")


def test_rows_ignore_records_of_other_rollouts_and_resume_failed_first(tmp_path):
    state = RolloutState(inventory="inv", stages=["base"], run_ids=["r1", "r2"])
    state.waves = [Wave("canary", ["s3"], 0, "passed"), Wave("rest", ["s1", "s2", "s4"], 20, "stopped")]
    save_state(tmp_path, state)
    assert load_state(tmp_path).waves[1].hosts == ["s1", "s2", "s4"]
    rec = tmp_path / "results"
    rec.mkdir()
    _write(rec, "s3")
    _write(rec, "s1", run_id="old-rollout")  # an earlier rollout: not part of this one
    _write(
        rec,
        "s2",
        run_id="r2",
        status="failed",
        failed_task="Install baseline packages",
        message="Failed to update apt cache: <unreachable>",
    )
    (rec / ".s4.tmp.json").write_text("{", encoding="utf-8")  # a record being written: ignored
    rows = {r.school: r for r in school_rows(_fleet(), state, load_records(rec))}
    assert rows["s3"].status == "ok"
    assert rows["s1"].status == "not_reached" and rows["s4"].status == "not_reached"
    assert rows["s2"].status == "failed" and rows["s2"].status_ru == "ошибка"
    assert resume_candidates(list(rows.values())) == ["s2", "s1", "s4"]


def test_html_report_is_self_contained_russian_and_filterable(tmp_path):
    state = RolloutState(inventory="inv", stages=["base"], run_ids=["r1"], stopped_at="canary")
    state.waves = [
        Wave("canary", ["s1"], 0, "stopped", ["s1"]),
        Wave("rest", ["s2", "s3", "s4"], 20, "not_started"),
    ]
    rec = tmp_path / "results"
    rec.mkdir()
    _write(rec, "s1", status="failed", failed_task="Install <b>", message="E: <script>alert(1)</script>")
    rows = school_rows(_fleet(), state, load_records(rec))
    data = report.report_dict(state, rows)
    assert data["totals"] == {"ok": 0, "failed": 1, "unreachable": 0, "not_finished": 0, "not_reached": 3}
    jpath, hpath = report.write_reports(tmp_path, data)
    page = hpath.read_text(encoding="utf-8")
    assert json.loads(jpath.read_text(encoding="utf-8"))["stopped_at"] == "canary"
    assert "<script" not in page and "&lt;script&gt;" in page  # messages are escaped, no JS at all
    assert not re.search(r"(src|href)=", page)  # nothing external
    assert "Выкатка остановлена на волне «canary»" in page and "не начато (3)" in page
    assert page.count("<tr class='not_reached'>") == 3 and page.count("<tr class='failed'>") == 1
    for status in ("ok", "failed", "unreachable", "not_finished", "not_reached"):  # one filter per status
        assert f"id='f-{status}'" in page and f"#f-{status}:checked~table.schools" in page
    text = report.table(rows)
    assert text.splitlines()[1].startswith("s1 ") and "Install <b>: E:" in text


def test_callback_never_records_no_log_output_and_explains_loops():
    import importlib.util

    from schoolgate.fleet.runner import PROJECT

    spec = importlib.util.spec_from_file_location(
        "fleet_results", PROJECT / "playbooks" / "callback_plugins" / "fleet_results.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    hidden = mod._message({"censored": "the output has been hidden", "msg": "password=s3cret"})
    assert hidden == "output hidden (no_log)" and "s3cret" not in hidden
    assert mod._message({"_ansible_no_log": True, "stderr": "token=abc"}) == "output hidden (no_log)"
    loop = {"results": [{"failed": False, "msg": "fine"}, {"failed": True, "msg": "item 2 broke"}]}
    assert mod._message(loop) == "item 2 broke"
    assert mod._message({"msg": "x" * 2000}).endswith("…") and len(mod._message({"msg": "x" * 2000})) == 600
    assert mod._message({"msg": "apt failed", "stderr": "E: 127.0.0.1:9"}) == "apt failed | E: 127.0.0.1:9"
