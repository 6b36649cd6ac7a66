"""SEC-UPDATES judged by age against the ФСТЭК deadlines; OS-BASELINE (OpenSCAP) folded into the report."""

from __future__ import annotations

import copy
import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from audit_fixtures import HOUR, NOW, clean_evidence, with_violation
from test_report import put, run_report

from schoolgate.audit.catalogue import load_catalogue
from schoolgate.audit.evaluate import evaluate_host
from schoolgate.audit.report import load_evidence
from schoolgate.audit.waivers import WaiverError, load_waivers

ROOT = Path(__file__).resolve().parents[3]
RULE = "xccdf_org.ssgproject.content_rule_"


@pytest.fixture(scope="module")
def checks():
    return load_catalogue()


def by_id(ev, checks, waivers=()):
    return {r.check.id: r for r in evaluate_host(ev, checks, list(waivers), now=NOW)}


def pending(ev, *pkgs: tuple[str, float]) -> dict:
    """Security updates pending on the host, each first seen `age` hours before NOW."""
    ev["facts"]["updates"]["security"] = [p for p, _ in pkgs]
    ev["facts"]["updates"]["security_details"] = [
        {"package": p, "candidate": "1.0-1+deb12u1", "origin": "Debian-Security:12/stable-security"}
        for p, _ in pkgs
    ]
    ev["update_first_seen"] = {f"{p}=1.0-1+deb12u1": NOW - age * HOUR for p, age in pkgs}
    return ev


# --- SEC-UPDATES ---------------------------------------------------------------------------------------


def test_fresh_security_update_is_within_the_deadline(checks) -> None:
    res = by_id(pending(clean_evidence(), ("openssl", 3)), checks)["SEC-UPDATES"]
    assert res.status == "pass" and "within deadline" in res.detail
    assert res.observed["security"][0]["deadline_hours"] == 24  # unknown severity = critical by default


def test_overdue_critical_update_fails_with_age_and_deadline(checks) -> None:
    res = by_id(pending(clean_evidence(), ("openssl", 30), ("tzdata", 2)), checks)["SEC-UPDATES"]
    assert res.status == "fail"
    assert "openssl (critical, 30.0 h > 24 h)" in res.detail and "tzdata" not in res.detail
    assert {"АНЗ.1", "АНЗ.2"} <= set(res.check.measures)


def test_severity_map_and_deadlines_are_configurable(checks) -> None:
    (sec,) = [c for c in checks if c.id == "SEC-UPDATES"]
    medium = copy.deepcopy(sec)
    medium.params["severity"] = {"openssl": "medium"}
    ev = pending(clean_evidence(), ("openssl", 30 * 24))
    assert by_id(ev, [medium])["SEC-UPDATES"].status == "fail"  # 30 days > 4 weeks
    ev = pending(clean_evidence(), ("openssl", 20 * 24))
    assert by_id(ev, [medium])["SEC-UPDATES"].status == "pass"  # 20 days < 4 weeks
    medium.params["deadline_hours"] = {"medium": 24 * 14}
    assert by_id(ev, [medium])["SEC-UPDATES"].status == "fail"


def test_first_seen_comes_from_the_evidence_history(tmp_path: Path, checks) -> None:
    old = pending(clean_evidence(now=NOW - 48 * HOUR), ("openssl", 0))
    new = pending(clean_evidence(now=NOW), ("openssl", 0), ("libxml2", 0))
    for ev in (old, new):
        ev.pop("update_first_seen")
        put(tmp_path / "ev", ev)
    (loaded,) = load_evidence([tmp_path / "ev"])
    assert loaded["collected_at"] == new["collected_at"]
    assert loaded["update_first_seen"] == {
        "openssl=1.0-1+deb12u1": old["collected_at"],
        "libxml2=1.0-1+deb12u1": new["collected_at"],
    }
    res = by_id(loaded, checks)["SEC-UPDATES"]
    assert res.status == "fail" and "openssl (critical, 48.0 h" in res.detail and "libxml2" not in res.detail


def test_apt_simulation_lines_are_parsed_with_versions(af) -> None:
    m = af._INST.match(
        "Inst openssl [3.0.15-1] (3.0.16-1~deb12u1 Debian-Security:12/stable-security [amd64])"
    )
    assert m and m.group("candidate") == "3.0.16-1~deb12u1" and m.group("installed") == "3.0.15-1"
    m = af._INST.match("Inst libnew1 (2.0-1 Debian:12.8/stable [amd64])")
    assert m and m.group("installed") is None and "security" not in m.group("origin").lower()


# --- OS-BASELINE (OpenSCAP) ------------------------------------------------------------------------------


def test_quick_audit_skips_openscap_and_does_not_fail(checks) -> None:
    ev = clean_evidence()
    ev["mode"] = "quick"
    ev["facts"]["openscap"] = {"skipped": True}
    res = by_id(ev, checks)
    assert res["OS-BASELINE"].status == "skipped" and "quick" in res["OS-BASELINE"].detail
    assert {r.status for r in res.values()} == {"pass", "skipped"}


def test_full_audit_without_scanner_or_content_is_an_error(checks) -> None:
    ev = clean_evidence()
    ev["facts"]["openscap"] = {
        "error": "openscap-scanner not installed (playbooks/audit_scanner.yml installs it)"
    }
    assert by_id(ev, checks)["OS-BASELINE"].status == "error"
    ev["facts"]["openscap"] = {
        "counts": {"notapplicable": 44, "notselected": 500},
        "rules": [],
        "profile": "p",
    }
    res = by_id(ev, checks)["OS-BASELINE"]
    assert res.status == "error" and "not applicable" in res.detail


def test_each_failing_scap_rule_is_a_finding_with_mapped_measures(checks) -> None:
    ev = with_violation("OS-BASELINE")
    ev["facts"]["openscap"]["rules"].append(
        {
            "id": RULE + "file_permissions_etc_shadow",
            "result": "fail",
            "severity": "medium",
            "title": "shadow",
        }
    )
    ev["facts"]["openscap"]["rules"].append({"id": RULE + "some_new_rule", "result": "error", "title": "x"})
    res = by_id(ev, checks)
    assert res["OS-BASELINE"].status == "fail" and "3 of" in res["OS-BASELINE"].detail
    assert res["SCAP:sshd_disable_root_login"].check.measures == ("УПД.13", "ИАФ.1", "ЗИС.3")
    assert res["SCAP:file_permissions_etc_shadow"].check.measures == ("УПД.2", "УПД.5")
    assert res["SCAP:some_new_rule"].check.measures == ("АНЗ.3",)  # unmapped rule: default measure
    assert res["SCAP:sshd_disable_root_login"].status == "fail"
    assert "Disable SSH Root Login" in res["SCAP:sshd_disable_root_login"].check.title_en


def test_scap_rule_waiver_and_report(tmp_path: Path, checks) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text(
        textwrap.dedent(
            """\
            waivers:
              - check: SCAP:sshd_disable_root_login
                hosts: "school-*"
                justification: "root login via key only until the admin accounts are rolled out"
                owner: "ivanov@rcoi.example"
                expires: 2027-03-01
            """
        ),
        encoding="utf-8",
    )
    waivers = load_waivers(wf, {c.id for c in checks})
    res = by_id(with_violation("OS-BASELINE"), checks, waivers)
    assert res["SCAP:sshd_disable_root_login"].status == "waived"
    bad = tmp_path / "bad.yml"
    bad.write_text(wf.read_text(encoding="utf-8").replace("SCAP:sshd_disable_root_login", "SCAP:Bad Rule"))
    with pytest.raises(WaiverError, match="unknown check id 'SCAP:Bad Rule'"):
        load_waivers(bad, {c.id for c in checks})

    put(tmp_path / "ev", with_violation("OS-BASELINE"))
    rc, data = run_report(tmp_path)
    assert rc == 1
    failing = {r["check"] for r in data["results"] if r["status"] == "fail"}
    assert failing == {"OS-BASELINE", "SCAP:sshd_disable_root_login"}
    assert "school-001" in data["measures"]["УПД.13"]["failing_hosts"]
    html = next((tmp_path / "out").glob("*.html")).read_text(encoding="utf-8")
    assert "Disable SSH Root Login" in html


RESULTS_XML = """<?xml version="1.0"?>
<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2" id="xccdf_org.ssgproject.content_benchmark_DEBIAN-12">
  <title>Guide</title>
  <version>0.1.76</version>
  <Group id="g"><Rule id="{r}sshd_disable_root_login" severity="medium"><title>Disable SSH
     Root Login</title></Rule>
  <Rule id="{r}file_owner_etc_passwd" severity="medium"><title>Owner of passwd</title></Rule></Group>
  <TestResult id="t">
    <profile idref="xccdf_org.ssgproject.content_profile_standard"/>
    <rule-result idref="{r}sshd_disable_root_login"><result>fail</result></rule-result>
    <rule-result idref="{r}file_owner_etc_passwd"><result>pass</result></rule-result>
    <rule-result idref="{r}x"><result>notselected</result></rule-result>
    <score>50.0</score>
  </TestResult>
</Benchmark>
""".replace("{r}", RULE)


def test_xccdf_results_parsed(af, tmp_path: Path) -> None:
    f = tmp_path / "r.xml"
    f.write_text(RESULTS_XML, encoding="utf-8")
    got = af.parse_xccdf_results(str(f))
    assert got["benchmark_version"] == "0.1.76" and got["score"] == 50.0
    assert got["profile"] == "xccdf_org.ssgproject.content_profile_standard"
    assert got["counts"] == {"fail": 1, "pass": 1, "notselected": 1}
    assert got["rules"] == [
        {
            "id": RULE + "sshd_disable_root_login",
            "result": "fail",
            "severity": "medium",
            "title": "Disable SSH Root Login",
        }
    ]
    assert "<ns0:TestResult" in got["results_xml"] and "Benchmark" not in got["results_xml"]


def test_openscap_facts_runs_the_scanner_and_cleans_up(af, tmp_path: Path, monkeypatch) -> None:
    """A stand-in `oscap` on PATH writes a results file like the real one (the lab test runs the real one)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    src = tmp_path / "src.xml"
    src.write_text(RESULTS_XML, encoding="utf-8")
    log = tmp_path / "argv"
    script = bin_ / "oscap"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "OpenSCAP command line tool (oscap) 1.3.7"; exit 0; fi\n'
        f'echo "$@" > {log}\n'
        'while [ $# -gt 1 ]; do if [ "$1" = --results ]; then cp ' + str(src) + ' "$2"; fi; shift; done\n'
        "exit 2\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    ds = tmp_path / "ds.xml"
    ds.write_text("<x/>")
    got = af.openscap_facts(True, "xccdf_org.ssgproject.content_profile_standard", str(ds), 30)
    assert got["scanner_version"] == "1.3.7" and got["counts"]["fail"] == 1, got
    argv = log.read_text().split()
    assert argv[:4] == ["xccdf", "eval", "--profile", "xccdf_org.ssgproject.content_profile_standard"]
    assert not Path(argv[argv.index("--results") + 1]).parent.exists()  # temp dir removed: nothing left
    assert af.openscap_facts(False, "p", "auto", 30) == {"skipped": True}
    monkeypatch.setattr(af, "SSG_CONTENT", str(tmp_path / "none"))
    missing = af.openscap_facts(True, "p", "auto", 30)
    assert "no SSG content for Debian" in missing["error"]
    json.dumps(got)
