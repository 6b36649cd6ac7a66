"""Pull mode on the controller, for real: git repository, ansible-pull (the venv's), the lock, the
only-on-change rule, retry after a failure, and the record POSTed to the pull receiver on 127.0.0.1.

The lab test (tests/lab/test_fleet_pull.py) runs the same script installed by roles/pull_mode in a school
container, pulling from a git daemon in another lab container.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from schoolgate.fleet import pullreceiver

PROJECT = Path(__file__).resolve().parents[3]
SCRIPT = PROJECT / "roles" / "pull_mode" / "files" / "schoolgate-pull"
BIN = Path(sys.executable).parent
PLAYBOOK = """---
- name: Pull demo
  hosts: schools
  gather_facts: false
  tasks:
    - name: Write the marker
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.file', 'version.txt') }}"
        dest: "{{ marker }}"
        mode: "0644"
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def setup(tmp_path):
    bare = tmp_path / "kit.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git(work, "config", "user.email", "t@example.invalid")
    git(work, "config", "user.name", "t")
    git(work, "checkout", "-q", "-b", "main")
    (work / "pull.yml").write_text(PLAYBOOK, encoding="utf-8")

    def commit(version: str) -> str:
        (work / "version.txt").write_text(version, encoding="utf-8")
        git(work, "add", ".")
        git(work, "commit", "-q", "-m", version)
        git(work, "push", "-q", "origin", "main")
        return git(work, "rev-parse", "HEAD")

    server = pullreceiver.serve("127.0.0.1:0", tmp_path / "center")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    marker = tmp_path / "marker"
    inv = tmp_path / "inventory.ini"
    inv.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"[schools]\nschool-042 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        f"[all:vars]\nmarker={marker}\n",
        encoding="utf-8",
    )
    cfg = {
        "school": "school-042",
        "repo_url": f"file://{bare}",
        "branch": "main",
        "playbook": "pull.yml",
        "inventory": str(inv),
        "workdir": str(tmp_path / "checkout"),
        "state_dir": str(tmp_path / "state"),
        "ansible_pull": str(BIN / "ansible-pull"),
        "report_url": f"http://127.0.0.1:{server.server_address[1]}/v1/pull-reports",
    }
    cfg_file = tmp_path / "pull.json"
    cfg_file.write_text(json.dumps(cfg), encoding="utf-8")

    def run() -> tuple[int, dict, dict]:
        proc = subprocess.run(
            [sys.executable, SCRIPT, "--config", cfg_file],
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        result = json.loads((tmp_path / "state" / "last-result.json").read_text(encoding="utf-8"))
        center = json.loads((tmp_path / "center" / "school-042.json").read_text(encoding="utf-8"))
        return proc.returncode, result, center

    yield commit, run, marker, tmp_path, work
    server.shutdown()


def test_runs_only_on_change_retries_failures_and_reports(setup):
    commit, run, marker, tmp_path, work = setup
    c1 = commit("v1")
    rc, res, center = run()
    assert (rc, res["status"], res["commit"]) == (0, "ok", c1)
    assert marker.read_text() == "v1" and res["report"] == "HTTP 201"
    assert center == {k: v for k, v in res.items() if k != "report"}  # what the center got
    marker.unlink()
    rc, res, center = run()  # nothing changed: ansible-pull is not even started
    assert (rc, res["status"], center["status"]) == (0, "unchanged", "unchanged") and not marker.exists()
    (work / "pull.yml").write_text(
        PLAYBOOK.replace("{{ marker }}", "/nonexistent-dir/marker"), encoding="utf-8"
    )
    c2 = commit("v2")
    rc, res, center = run()
    assert (rc, res["status"], res["commit"]) == (1, "failed", c2)
    assert res["failed_task"] == "Write the marker" and center["status"] == "failed"
    assert (tmp_path / "state" / "applied-commit").read_text().strip() == c1  # the failure is not "applied"
    rc, res, _ = run()  # same head, still failing: retried, not skipped as unchanged
    assert res["status"] == "failed"
    (work / "pull.yml").write_text(PLAYBOOK, encoding="utf-8")
    c3 = commit("v3")
    rc, res, center = run()
    assert (rc, res["status"], center["commit"], marker.read_text()) == (0, "ok", c3, "v3")
    history = (tmp_path / "center" / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(h)["status"] for h in history] == ["ok", "unchanged", "failed", "failed", "ok"]


def test_second_run_at_the_same_time_does_nothing(setup):
    commit, _run, marker, tmp_path, _ = setup
    commit("v1")
    (tmp_path / "state").mkdir()
    with open(tmp_path / "state" / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.run(
            [sys.executable, SCRIPT, "--config", tmp_path / "pull.json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0 and "another run holds the lock" in proc.stdout
    assert not marker.exists() and not (tmp_path / "state" / "last-result.json").exists()


def test_receiver_rejects_bad_records_and_tokens(tmp_path):
    import urllib.error
    import urllib.request

    (tmp_path / "token").write_text("s3cret\n", encoding="utf-8")
    server = pullreceiver.serve("127.0.0.1:0", tmp_path / "center", token="s3cret")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/pull-reports"

    def post(body: bytes, token: str | None) -> int:
        req = urllib.request.Request(url, data=body, method="POST")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    good = {"school": "school-1", "status": "ok", "commit": "abc", "started": "t", "finished": "t"}
    try:
        assert post(json.dumps(good).encode(), None) == 401
        assert post(json.dumps(good).encode(), "wrong") == 401
        assert post(b"not json", "s3cret") == 400
        assert post(json.dumps({**good, "school": "../etc/passwd"}).encode(), "s3cret") == 422
        assert post(json.dumps({**good, "status": "weird"}).encode(), "s3cret") == 422
        assert post(json.dumps(good).encode(), "s3cret") == 201
        assert sorted(p.name for p in (tmp_path / "center").iterdir()) == ["history.jsonl", "school-1.json"]
    finally:
        server.shutdown()
