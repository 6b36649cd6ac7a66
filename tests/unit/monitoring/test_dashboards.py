"""Grafana dashboards: generated from dashboards/build.py, datasource-agnostic, every query valid PromQL."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import yaml

from .conftest import need_tool

DASHBOARDS = Path(__file__).resolve().parents[3] / "dashboards"


def load_builder():
    spec = importlib.util.spec_from_file_location("dashboard_build", DASHBOARDS / "build.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def walk(node, key: str):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def test_checked_in_json_matches_the_generator() -> None:
    for name, text in load_builder().render().items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == text, (
            f"run python dashboards/build.py ({name})"
        )


def test_dashboards_do_not_name_a_datasource() -> None:
    for path in DASHBOARDS.glob("*.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        refs = [d for d in walk(doc, "datasource") if d != {"type": "prometheus", "uid": "${datasource}"}]
        assert refs == [], f"{path.name}: concrete datasource references {refs}"
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        exprs = list(walk(doc, "expr"))
        for var in doc["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+), *\w+\)", var.get("query", ""))
            if match:
                exprs.append(match.group(1))
        assert exprs, path.name
        for i, expr in enumerate(exprs):
            rules.append(
                {
                    "record": f"dashboard:{path.stem.replace('-', '_')}:{i}",
                    "expr": expr.replace("$school", "s1").replace("$region", "r1"),
                }
            )
    rules_file = tmp_path / "dashboards.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [need_tool("promtool"), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
