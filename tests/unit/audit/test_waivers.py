"""Waivers: validation before any check, matching by host pattern, expiry turns a waiver into a failure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from audit_fixtures import NOW, with_violation

from schoolgate.audit.catalogue import load_catalogue
from schoolgate.audit.evaluate import evaluate_host
from schoolgate.audit.waivers import WaiverError, load_waivers

CHECKS = load_catalogue()
IDS = {c.id for c in CHECKS}
TODAY = dt.datetime.fromtimestamp(NOW, dt.UTC).date()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "waivers.yml"
    p.write_text(text, encoding="utf-8")
    return p


def waiver_yaml(expires: str, hosts: str = "school-00*", check: str = "SEC-UPDATES") -> str:
    return (
        "waivers:\n"
        f"  - check: {check}\n"
        f"    hosts: '{hosts}'\n"
        "    justification: vendor kernel pinned until the next maintenance window\n"
        "    owner: ivanov@rcoi.example\n"
        f"    expires: {expires}\n"
    )


def status(ev, waivers, check_id: str) -> str:
    return {r.check.id: r.status for r in evaluate_host(ev, CHECKS, waivers, now=NOW, today=TODAY)}[check_id]


def test_live_waiver_turns_failure_into_waived(tmp_path: Path) -> None:
    waivers = load_waivers(write(tmp_path, waiver_yaml("2027-01-31")), IDS)
    assert status(with_violation("SEC-UPDATES"), waivers, "SEC-UPDATES") == "waived"


def test_waiver_is_host_specific(tmp_path: Path) -> None:
    waivers = load_waivers(write(tmp_path, waiver_yaml("2027-01-31", hosts="school-002")), IDS)
    assert status(with_violation("SEC-UPDATES", host="school-001"), waivers, "SEC-UPDATES") == "fail"
    assert status(with_violation("SEC-UPDATES", host="school-002"), waivers, "SEC-UPDATES") == "waived"


def test_expired_waiver_counts_as_failure(tmp_path: Path) -> None:
    waivers = load_waivers(write(tmp_path, waiver_yaml("2026-12-03")), IDS)
    results = evaluate_host(with_violation("SEC-UPDATES"), CHECKS, waivers, now=NOW, today=TODAY)
    r = next(r for r in results if r.check.id == "SEC-UPDATES")
    assert r.status == "fail"
    assert "expired 2026-12-03" in r.detail and r.waiver is not None


def test_waiver_valid_through_its_last_day(tmp_path: Path) -> None:
    waivers = load_waivers(write(tmp_path, waiver_yaml(TODAY.isoformat())), IDS)
    assert status(with_violation("SEC-UPDATES"), waivers, "SEC-UPDATES") == "waived"


def test_waiver_does_not_touch_passing_checks(tmp_path: Path) -> None:
    waivers = load_waivers(write(tmp_path, waiver_yaml("2026-01-01")), IDS)
    assert status(with_violation("TLS-HSTS"), waivers, "SEC-UPDATES") == "pass"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "waivers: [{check: SEC-UPDATES, hosts: '*', owner: a, expires: 2027-01-01}]",
            "'justification' is required",
        ),
        (
            "waivers: [{check: NOPE, hosts: '*', owner: a, justification: b, expires: 2027-01-01}]",
            "unknown check id 'NOPE'",
        ),
        (
            "waivers: [{check: SEC-UPDATES, hosts: '*', owner: a, justification: b, expires: soon}]",
            "'expires' must be a date",
        ),
        (
            "waivers: [{check: SEC-UPDATES, hosts: '*', owner: a, justification: b,"
            " expires: 2027-01-01, x: 1}]",
            "unknown field 'x'",
        ),
        ("waivers: {check: SEC-UPDATES}", "expected a mapping with a 'waivers' list"),
        ("waivers: [\n  - check: [", "not valid YAML"),
    ],
)
def test_malformed_file_is_rejected_with_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(WaiverError) as err:
        load_waivers(write(tmp_path, text), IDS)
    assert problem in str(err.value)
    assert str(tmp_path / "waivers.yml") in str(err.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "waivers:\n  - {check: NOPE}\n  - {check: SEC-UPDATES, hosts: '*', owner: a, justification: b}\n"
    with pytest.raises(WaiverError) as err:
        load_waivers(write(tmp_path, text), IDS)
    assert any(p.startswith("waivers[0]") for p in err.value.problems)
    assert any(p.startswith("waivers[1]") and "expires" in p for p in err.value.problems)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WaiverError, match="cannot read"):
        load_waivers(tmp_path / "absent.yml", IDS)
