"""The one УЦ API request (signing_cert tasks_from ca_api_issue; the renewal role includes it too), by a real
ansible-playbook against the really started simulator of this area: issued, refused (a 4xx message for the
admin, no retry), a moment of 5xx retried, a request without a CSR stopped by the argument spec, and the
access code never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from sim.simclient import SimProcess

from schoolgate.sim.keys import csr_for, generate_key

from .conftest import PlaybookRun, run_playbook

PLAY = """---
- name: One request to the УЦ API
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The request
      ansible.builtin.include_role:
        name: signing_cert
        tasks_from: ca_api_issue
      vars:
        signing_cert_ca_issue_request: "{{ request }}"
    - name: Show the answer
      ansible.builtin.debug:
        msg: "ANSWER {{ signing_cert_ca_answer | to_json | b64encode }}"
"""


@pytest.fixture(scope="module")
def csr(tmp_path_factory: pytest.TempPathFactory) -> str:
    key = generate_key(tmp_path_factory.mktemp("cakey") / "key.pem", "gost")
    return csr_for(key, "/C=RU/O=Test school/CN=school-ca").decode()


def play(tmp: Path, request: dict) -> PlaybookRun:
    (tmp / "play.yml").write_text(PLAY)
    return run_playbook(tmp / "play.yml", {"request": request}, tmp)


def answer(run: PlaybookRun) -> dict:
    import base64

    line = next(x for x in run.stdout.splitlines() if "ANSWER " in x)
    return json.loads(base64.b64decode(line.split("ANSWER ", 1)[1].strip().strip('"')))


def request(sim: SimProcess, code: str, csr: str, **extra: object) -> dict:
    base = {"url": sim.base + "/", "access_code": code, "csr": csr, "days": 30, "label": "school-ca.csr"}
    return base | extra


def test_the_ca_issues_and_only_public_fields_are_kept(sim, access_code, csr, tmp_path):
    run = play(tmp_path, request(sim, access_code, csr, id=".next"))
    assert run.rc == 0, run.output[-3000:]
    got = answer(run)
    assert got["status"] == 201 and got["id"] == ".next" and got["label"] == "school-ca.csr"
    assert "BEGIN CERTIFICATE" in got["certificate"] and "BEGIN CERTIFICATE" in got["chain"]
    assert access_code not in run.output


def test_a_wrong_access_code_fails_with_the_answer_and_no_retry(sim, access_code, csr, tmp_path):
    wrong = "WRONG-" + access_code[::-1]
    run = play(tmp_path, request(sim, wrong, csr))
    assert run.rc != 0
    assert "не выпустил сертификат по запросу school-ca.csr: HTTP 401" in run.stdout, run.output[-3000:]
    # The code once, then the text (error_description begins with the code too).
    assert "HTTP 401 SIM-401 unknown access code." in " ".join(run.stdout.split()), run.stdout[-2000:]
    assert "Проверьте код доступа" in run.stdout
    assert "FAILED - RETRYING" not in run.stdout  # a 4xx is the УЦ's answer
    assert wrong not in run.output and access_code not in run.output


def test_a_moment_of_5xx_is_retried(sim, access_code, csr, tmp_path):
    resp = requests.put(sim.base + "/admin/v1/faults", json={"fail_first": 2, "paths": ["/ca/"]}, timeout=10)
    assert resp.status_code == 200, resp.text
    run = play(tmp_path, request(sim, access_code, csr))
    assert run.rc == 0, run.output[-3000:]
    assert run.stdout.count("FAILED - RETRYING") == 2
    assert answer(run)["status"] == 201


def test_a_request_without_a_csr_stops_before_any_request(sim, access_code, tmp_path):
    run = play(tmp_path, {"url": sim.base, "access_code": access_code, "label": "school-ca.csr"})
    assert run.rc != 0
    assert "signing_cert_ca_issue_request" in run.stdout and "csr" in run.stdout, run.output[-3000:]
    assert "The УЦ issues a certificate" not in run.stdout
    assert access_code not in run.output
