"""Evaluate one host's evidence against the catalogue.

Every evaluator returns (status, detail, observed): `status` is "pass", "fail" or "error" (evidence missing
or unreadable - an auditor counts that as not proven, so it fails the run too). `observed` is the small
piece of evidence the verdict rests on; it goes into the reports and never carries secrets (the evidence
has none).
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schoolgate.audit.catalogue import Check
from schoolgate.audit.waivers import Waiver, find_waiver

Verdict = tuple[str, str, dict[str, Any]]
Evaluator = Callable[[dict[str, Any], dict[str, Any], float], Verdict]

PASS, FAIL, ERROR, WAIVED, SKIPPED = "pass", "fail", "error", "waived", "skipped"
FAILING = {FAIL, ERROR}
_VERSIONS = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


@dataclass(frozen=True)
class Result:
    check: Check
    host: str
    status: str
    detail: str
    observed: dict[str, Any]
    waiver: Waiver | None = None

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    def as_dict(self) -> dict[str, Any]:
        out = {
            "check": self.check.id,
            "host": self.host,
            "status": self.status,
            "detail": self.detail,
            "observed": self.observed,
            "measures": list(self.check.measures),
            "title": {"ru": self.check.title_ru, "en": self.check.title_en},
            "remediation": dict(self.check.remediation),
        }
        if self.waiver is not None:
            out["waiver"] = self.waiver.as_dict()
        return out


def _ts(iso: Any) -> float | None:
    """Epoch seconds from an ISO 8601 string or a number (the backup status file uses epoch floats)."""
    if isinstance(iso, (int, float)) and not isinstance(iso, bool):
        return float(iso)
    if not isinstance(iso, str) or not iso:
        return None
    try:
        parsed = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _metric(ev: dict[str, Any], name: str, **labels: str) -> float | None:
    samples = (((ev.get("facts") or {}).get("metrics") or {}).get("samples") or {}).get(name) or []
    for s in samples:
        if all(s.get("labels", {}).get(k) == v for k, v in labels.items()):
            return float(s["value"])
    return None


ProbeJudge = Callable[[dict[str, Any], dict[str, Any]], tuple[list[str], Any]]


def _tls_evaluator(per_probe: ProbeJudge, ok: str) -> Evaluator:
    """Build a TLS evaluator: the shared evidence/unreachable handling once, the per-port judgement in
    `per_probe(probe, params) -> (problems, observed)`."""

    def evaluate(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
        probes = ev.get("tls")
        if not isinstance(probes, list) or not probes:
            return ERROR, "no TLS probe evidence", {}
        # Ports where the probe completed no handshake at all (nothing listening, TLS broken): a violation.
        down = {
            str(p.get("port")): str(p.get("msg") or "no TLS handshake")
            for p in probes
            if "accepted_versions" not in p
        }
        if down:
            return FAIL, "; ".join(f"port {k}: {v}" for k, v in down.items()), {"unreachable": down}
        problems: list[str] = []
        observed: dict[str, Any] = {}
        for p in probes:
            port = str(p.get("port"))
            found, observed[port] = per_probe(p, params)
            problems.extend(f"port {port}: {x}" for x in found)
        if problems:
            return FAIL, "; ".join(problems), observed
        return PASS, ok, observed

    return evaluate


def _protocols(p: dict[str, Any], params: dict[str, Any]) -> tuple[list[str], Any]:
    floor = _VERSIONS.index(params.get("min_version", "TLSv1.2"))
    accepted = p.get("accepted_versions") or []
    known = [v for v in accepted if v in _VERSIONS]
    problems = [f"accepts {v}" for v in known if _VERSIONS.index(v) < floor]
    if not [v for v in known if _VERSIONS.index(v) >= floor]:
        problems.append("no TLS 1.2+")
    return problems, {"accepted": accepted, "unsupported_by_probe": p.get("unsupported_by_probe") or []}


def _ciphers(p: dict[str, Any], params: dict[str, Any]) -> tuple[list[str], Any]:
    allowed = set(params.get("allowed") or [])
    ciphers = list(p.get("tls12_ciphers") or [])
    weak = [c for c in ciphers if c not in allowed]
    return ([f"weak suites {', '.join(weak)}"] if weak else []), ciphers


def _certificate(p: dict[str, Any], params: dict[str, Any]) -> tuple[list[str], Any]:
    cert = p.get("certificate") or {}
    days = cert.get("days_left")
    observed = {
        "days_left": days,
        "not_after": cert.get("not_after"),
        "chain_trusted": p.get("chain_trusted"),
        "hostname_match": p.get("hostname_match"),
        "verify_error": p.get("verify_error"),
    }
    if days is None:
        return ["no certificate read"], observed
    problems = []
    if days < params.get("min_days", 14):
        problems.append(f"expires in {days} days")
    if p.get("hostname_match") is False:
        problems.append(f"certificate does not cover {p.get('server_name')}")
    if p.get("chain_trusted") is not True:
        problems.append(f"chain not trusted ({p.get('verify_error') or 'unknown'})")
    return problems, observed


def _hsts(p: dict[str, Any], params: dict[str, Any]) -> tuple[list[str], Any]:
    hsts = p.get("hsts") or {}
    max_age = hsts.get("max_age")
    observed = {"present": hsts.get("present"), "max_age": max_age}
    if not hsts.get("present"):
        return ["no Strict-Transport-Security header"], observed
    if max_age is None or int(max_age) < params.get("min_max_age", 15768000):
        return [f"HSTS max-age {max_age} too short"], observed
    return [], observed


tls_protocols = _tls_evaluator(_protocols, "only TLS 1.2+ accepted")
tls_ciphers = _tls_evaluator(_ciphers, "all accepted TLS 1.2 suites are in the profile")
tls_certificate = _tls_evaluator(_certificate, "trusted and not expiring soon")
tls_hsts = _tls_evaluator(_hsts, "HSTS present")


def _expiry(info: dict[str, Any] | None, min_days: float, what: str) -> Verdict:
    if not info:
        return ERROR, f"no {what} evidence", {}
    keys = ("path", "exists", "not_after", "expires_at", "days_left")
    observed = {k: info.get(k) for k in keys if k in info}
    if info.get("exists") is False:
        return FAIL, f"{what} not installed ({info.get('path')})", observed
    if info.get("error"):
        return ERROR, f"{what}: {info['error']}", observed
    days = info.get("days_left")
    if days is None:
        return ERROR, f"{what}: expiry unknown", observed
    if days < min_days:
        return FAIL, f"{what} expires in {days:.1f} days (< {min_days})", observed
    return PASS, f"{what} valid for {days:.0f} more days", observed


def signing_cert(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    info = (ev.get("facts") or {}).get("signing_cert")
    return _expiry(info, params.get("min_days", 30), "signing certificate")


def token_expiry(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    return _expiry((ev.get("facts") or {}).get("token"), params.get("min_days", 7), "provider token")


def renewal_outcome(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    """The latest renewal of each kind (playbooks/renew.yml's textfile metrics) must have succeeded: a failed
    one leaves the old credential in place, but it still expires. No renewal yet is fine here; the expiry
    checks (TLS-CERT, SIGN-CERT, TOKEN-EXPIRY) judge the deadlines."""
    samples = (((ev.get("facts") or {}).get("metrics") or {}).get("samples") or {}).get(
        "schoolgate_renewal_last_outcome_ok"
    ) or []
    outcome = {str(s.get("labels", {}).get("kind", "?")): float(s["value"]) == 1.0 for s in samples}
    if not outcome:
        return PASS, "no renewal recorded yet", {}
    failed = sorted(kind for kind, ok in outcome.items() if not ok)
    if failed:
        metric = "schoolgate_renewal_last_failure_timestamp_seconds"
        when = {kind: _metric(ev, metric, kind=kind) for kind in failed}
        parts = [
            f"{kind} failed" + (f" {(now - ts) / 3600:.1f} h ago" if ts is not None else "")
            for kind, ts in when.items()
        ]
        return FAIL, "last renewal: " + "; ".join(parts), {"last_outcome_ok": outcome}
    return PASS, f"last renewal succeeded for {', '.join(sorted(outcome))}", {"last_outcome_ok": outcome}


def secret_permissions(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    files = (ev.get("facts") or {}).get("files")
    if files is None:
        return ERROR, "no file evidence", {}
    limit = int(str(params.get("max_mode", "0640")), 8)
    problems: list[str] = []
    observed: dict[str, Any] = {}
    for f in files:
        if not f.get("exists"):
            observed[f["path"]] = "absent" if f.get("exists") is False else f.get("error", "unknown")
            continue
        mode = int(f["mode"], 8)
        observed[f["path"]] = f"{f['mode']} {f.get('owner')}:{f.get('group')}"
        if mode & ~limit:
            problems.append(f"{f['path']} mode {f['mode']} (at most {params.get('max_mode', '0640')})")
    if problems:
        return FAIL, "; ".join(problems), observed
    if not [f for f in files if f.get("exists")]:
        return ERROR, "none of the configured secret files exists", observed
    return PASS, f"{sum(1 for f in files if f.get('exists'))} secret files restricted", observed


def _backup_part(ev: dict[str, Any], part: str) -> tuple[dict[str, Any] | None, str | None]:
    status = (ev.get("facts") or {}).get("backup_status")
    if status is None:
        return None, "backup status file missing (backup never ran or role not applied)"
    if "error" in status and part not in status:
        return None, f"backup status unreadable: {status['error']}"
    section = status.get(part)
    if not isinstance(section, dict):
        return None, f"backup status has no '{part}' section yet"
    return section, None


def _age_verdict(
    section: dict[str, Any], ts_keys: tuple[str, ...], max_hours: float, what: str, now: float
) -> Verdict:
    observed = {
        k: section.get(k) for k in ("ok", "finished", "last_success", "error", *ts_keys) if k in section
    }
    if section.get("ok") is not True:
        return FAIL, f"last {what} failed: {section.get('error') or 'ok=false'}", observed
    ts = next((t for t in (_ts(section.get(k)) for k in ts_keys) if t is not None), None)
    if ts is None:
        return ERROR, f"{what}: no timestamp in status", observed
    age_h = (now - ts) / 3600
    observed["age_hours"] = round(age_h, 1)
    if age_h > max_hours:
        return FAIL, f"last successful {what} {age_h:.1f} h ago (> {max_hours} h)", observed
    return PASS, f"last {what} ok {age_h:.1f} h ago", observed


def backup_fresh(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    section, err = _backup_part(ev, "backup")
    if section is None:
        ts = _metric(ev, "schoolgate_backup_last_success_timestamp_seconds")
        if ts is None:
            return ERROR, err or "no backup evidence", {}
        section = {"ok": True, "finished": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()}
    return _age_verdict(section, ("finished", "last_success"), params.get("max_age_hours", 26), "backup", now)


def _backup_evaluator(part: str, ts_keys: tuple[str, ...], default_hours: float, what: str) -> Evaluator:
    def evaluate(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
        section, err = _backup_part(ev, part)
        if section is None:
            return ERROR, err or f"no {what} evidence", {}
        return _age_verdict(section, ts_keys, params.get("max_age_hours", default_hours), what, now)

    return evaluate


backup_check = _backup_evaluator("check", ("finished", "last_success", "started"), 192, "repository check")
restore_drill = _backup_evaluator("drill", ("finished", "last_success", "dumped_at"), 192, "restore drill")


def monitoring_alive(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    facts = ev.get("facts") or {}
    unit = params.get("unit", "prometheus-node-exporter.service")
    state = (facts.get("units") or {}).get(unit)
    if state is None:
        return ERROR, f"{unit} state not collected", {}
    observed: dict[str, Any] = {"unit": unit, "active": state.get("active")}
    if state.get("active") != "active":
        return FAIL, f"{unit} is {state.get('active') or 'unknown'}", observed
    last = _metric(ev, "schoolgate_expiry_collector_last_run_timestamp_seconds")
    observed["collector_last_run"] = last
    if last is None:
        return FAIL, "expiry collector has never written metrics", observed
    age_h = (now - last) / 3600
    if age_h > params.get("max_collector_age_hours", 2):
        return FAIL, f"expiry collector last ran {age_h:.1f} h ago", observed
    return PASS, f"{unit} active, collectors fresh", observed


def agent_health(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    agent = (ev.get("facts") or {}).get("agent")
    if not agent:
        return ERROR, "no agent evidence", {}
    if agent.get("skipped"):
        return ERROR, "agent probe disabled (audit_agent_url empty); use audit_skip_checks instead", {}
    observed: dict[str, Any] = {"status": agent.get("status")}
    body = agent.get("body") if isinstance(agent.get("body"), dict) else {}
    if agent.get("status") != 200 or body.get("status") != "ok":
        return FAIL, f"/healthz: {agent.get('status') or agent.get('error')}", observed
    if body.get("writer") is False:
        return FAIL, "agent outbox writer not running", observed
    age = _metric(ev, "schoolgate_agent_queue_oldest_age_seconds")
    observed["queue_oldest_age_seconds"] = age
    if age is None:
        return ERROR, "queue age metric not relayed (schoolgate_agent.prom missing)", observed
    if age > params.get("max_queue_age_seconds", 3600):
        return FAIL, f"oldest undelivered record waits {age:.0f} s", observed
    return PASS, "healthy, queue fresh", observed


def journald_persistent(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    j = (ev.get("facts") or {}).get("journald")
    if not j:
        return ERROR, "no journald evidence", {}
    ok = j.get("storage") == "persistent" or (j.get("storage") == "auto" and j.get("persistent_dir"))
    if not ok:
        return FAIL, f"Storage={j.get('storage')}, /var/log/journal exists: {j.get('persistent_dir')}", j
    return PASS, "journal stored on disk", j


def logrotate(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    lr = (ev.get("facts") or {}).get("logrotate")
    if lr is None:
        return ERROR, "no logrotate evidence", {}
    missing = [p for p, exists in lr.items() if not exists]
    if missing:
        return FAIL, f"missing {', '.join(missing)}", lr
    return PASS, "logrotate configured", lr


def time_sync(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    t = (ev.get("facts") or {}).get("time")
    if not t:
        return ERROR, "no time evidence", {}
    tr = t.get("chrony_tracking") or {}
    observed = {
        "ntp_synchronized": t.get("ntp_synchronized"),
        "stratum": tr.get("stratum"),
        "offset_s": tr.get("system_offset_s"),
        "leap_status": tr.get("leap_status"),
    }
    if not tr:
        return FAIL, f"chrony not answering: {t.get('chrony_error') or 'no tracking data'}", observed
    if not tr.get("stratum") or str(tr.get("leap_status", "")).lower().startswith("not"):
        return FAIL, "chrony has no synchronised source", observed
    offset = abs(float(tr.get("system_offset_s") or 0.0))
    if offset > params.get("max_offset_seconds", 1.0):
        return FAIL, f"clock offset {offset:.3f} s", observed
    return PASS, f"synchronised, stratum {tr.get('stratum')}", observed


SEVERITIES = ("critical", "high", "medium", "low")
# ФСТЭК России «Методика оценки уровня критичности уязвимостей программных, программно-аппаратных средств»
# (28.10.2022, section 3; re-approved 30.06.2025, item 21): critical - within 24 h, high - within 7 days,
# medium - within 4 weeks. "Low" is left to planned updates; 4 months is our default. All overridable in
# checks.yml (params.deadline_hours); docs/audit.md names the source.
DEFAULT_DEADLINE_HOURS = {"critical": 24, "high": 7 * 24, "medium": 28 * 24, "low": 120 * 24}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def security_updates(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    """Pending security updates judged by AGE against the ФСТЭК deadline for their severity.

    Age = now - the first evidence of this host that listed the same package at the same candidate version
    (`update_first_seen`, built by `schoolgate audit report` from the evidence history). Severity is not in
    apt's data: `params.severity` maps packages to a level, everything else gets `default_severity`.
    """
    u = (ev.get("facts") or {}).get("updates")
    if not u:
        return ERROR, "no update evidence", {}
    if u.get("error"):
        return ERROR, f"apt simulation failed: {u['error']}", {}
    deadlines = {**DEFAULT_DEADLINE_HOURS, **(params.get("deadline_hours") or {})}
    default_severity = params.get("default_severity", "critical")
    severity = params.get("severity") or {}
    first_seen = ev.get("update_first_seen") or {}
    details = u.get("security_details") or [{"package": n} for n in u.get("security") or []]
    pending: list[dict[str, Any]] = []
    for d in details:
        name = str(d.get("package"))
        seen = _ts(first_seen.get(f"{name}={d.get('candidate', '')}")) or now
        level = str(severity.get(name, default_severity))
        pending.append(
            {
                "package": name,
                "candidate": d.get("candidate"),
                "severity": level,
                "first_seen": _iso(min(seen, now)),
                "age_hours": round(max(0.0, now - seen) / 3600, 1),
                "deadline_hours": deadlines[level],
            }
        )
    age = u.get("lists_age_seconds")
    observed = {
        "security": pending[:50],
        "pending_total": len(u.get("pending") or []),
        "lists_age_hours": None if age is None else round(age / 3600, 1),
        "deadline_hours": deadlines,
    }
    overdue = [p for p in pending if p["age_hours"] > p["deadline_hours"]]
    if overdue:
        names = ", ".join(
            f"{p['package']} ({p['severity']}, {p['age_hours']} h > {p['deadline_hours']} h)"
            for p in overdue[:10]
        )
        return FAIL, f"{len(overdue)} security updates past the ФСТЭК deadline: {names}", observed
    if age is None or age / 3600 > params.get("max_lists_age_hours", 48):
        return FAIL, "package lists stale or missing: pending updates unknown", observed
    if pending:
        oldest = max(p["age_hours"] for p in pending)
        return PASS, f"{len(pending)} security updates pending, within deadline (oldest {oldest} h)", observed
    return PASS, "no pending security updates", observed


def integrity(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    i = (ev.get("facts") or {}).get("integrity")
    if not i or i.get("skipped"):
        return ERROR, "integrity not verified (no packages configured)", {}
    if i.get("tool") is None:
        return FAIL, f"integrity tool unavailable: {i.get('error')}", {}
    changed = i.get("changed_files") or []
    observed = {"packages": i.get("packages"), "changed_files": changed[:50]}
    if changed:
        return FAIL, f"{len(changed)} package files modified", observed
    return PASS, f"{len(i.get('packages') or [])} packages verified", observed


SCAP_RULE_PREFIX = "xccdf_org.ssgproject.content_rule_"


def openscap(ev: dict[str, Any], params: dict[str, Any], now: float) -> Verdict:
    """The OpenSCAP (SSG) baseline as one check; each failing rule also becomes its own finding
    (`scap_findings`)."""
    o = (ev.get("facts") or {}).get("openscap")
    if ev.get("mode", "quick") != "full" and (not o or o.get("skipped")):
        return SKIPPED, "quick audit: OpenSCAP runs in the full (half-year) audit", {}
    if not o or o.get("skipped"):
        return ERROR, "full audit without OpenSCAP evidence", {}
    keys = ("scanner_version", "content_package", "datastream", "profile", "benchmark_version", "counts")
    observed = {k: o.get(k) for k in keys}
    if o.get("error"):
        return ERROR, f"OpenSCAP: {o['error']}", observed
    counts = o.get("counts") or {}
    applicable = sum(v for k, v in counts.items() if k not in ("notapplicable", "notselected"))
    if not applicable:
        why = f"profile {o.get('profile')} not applicable to this host (SSG content for another release?)"
        return ERROR, why, observed
    failed = [r for r in o.get("rules") or [] if r.get("result") in ("fail", "error", "unknown")]
    if failed:
        return FAIL, f"{len(failed)} of {applicable} SSG rules fail ({o.get('profile')})", observed
    return PASS, f"{counts.get('pass', 0)} SSG rules pass ({o.get('profile')})", observed


def _scap_measures(rule_id: str, params: dict[str, Any]) -> tuple[str, ...]:
    short = rule_id.removeprefix(SCAP_RULE_PREFIX)
    for pattern, measures in params.get("measures_by_rule") or []:
        if fnmatch.fnmatchcase(short, pattern):
            return tuple(measures)
    return tuple(params.get("default_measures") or ["АНЗ.3"])


def scap_findings(ev: dict[str, Any], baseline: Check) -> list[tuple[Check, str, dict[str, Any]]]:
    """One finding per failing SCAP rule, mapped to ФСТЭК measures by rule id pattern (checks.yml)."""
    o = (ev.get("facts") or {}).get("openscap") or {}
    out = []
    for r in o.get("rules") or []:
        if r.get("result") not in ("fail", "error", "unknown"):
            continue
        rid = str(r.get("id"))
        title = str(r.get("title") or rid)
        check = Check(
            id=f"SCAP:{rid.removeprefix(SCAP_RULE_PREFIX)}",
            title_ru=f"Правило OpenSCAP (SSG): {title}",
            title_en=f"OpenSCAP (SSG) rule: {title}",
            measures=_scap_measures(rid, baseline.params),
            evaluator=baseline.evaluator,
            remediation=dict(baseline.remediation),
        )
        detail = f"{r.get('result')} (severity {r.get('severity') or 'unknown'}, profile {o.get('profile')})"
        out.append((check, detail, {"rule": rid, "result": r.get("result"), "severity": r.get("severity")}))
    return out


EVALUATORS: dict[str, Evaluator] = {
    "tls_protocols": tls_protocols,
    "tls_ciphers": tls_ciphers,
    "tls_certificate": tls_certificate,
    "tls_hsts": tls_hsts,
    "signing_cert": signing_cert,
    "token_expiry": token_expiry,
    "renewal_outcome": renewal_outcome,
    "secret_permissions": secret_permissions,
    "backup_fresh": backup_fresh,
    "backup_check": backup_check,
    "restore_drill": restore_drill,
    "monitoring_alive": monitoring_alive,
    "agent_health": agent_health,
    "journald_persistent": journald_persistent,
    "logrotate": logrotate,
    "time_sync": time_sync,
    "security_updates": security_updates,
    "integrity": integrity,
    "openscap": openscap,
}


def _judged(check: Check, host: str, verdict: Verdict, waivers: list[Waiver], today: dt.date) -> Result:
    """Apply the waivers to one verdict: a valid waiver turns a failure into "waived", an expired one
    keeps it failing and says so."""
    status, detail, observed = verdict
    waiver = find_waiver(waivers, check.id, host)
    if waiver is None or status not in FAILING:
        return Result(check, host, status, detail, observed)
    if waiver.expired(today):
        detail = f"{detail} (waiver by {waiver.owner} expired {waiver.expires.isoformat()})"
        return Result(check, host, FAIL, detail, observed, waiver)
    return Result(check, host, WAIVED, detail, observed, waiver)


def evaluate_host(
    evidence: dict[str, Any],
    checks: list[Check],
    waivers: list[Waiver],
    now: float | None = None,
    today: dt.date | None = None,
) -> list[Result]:
    host = str(evidence.get("host") or "?")
    if now is None:
        now = _ts(evidence.get("collected_at")) or time.time()
    if today is None:
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    skip = set(evidence.get("skipped_checks") or [])
    results: list[Result] = []
    for check in checks:
        if check.id in skip:
            results.append(Result(check, host, SKIPPED, "skipped by audit_skip_checks", {}))
            continue
        try:
            verdict = EVALUATORS[check.evaluator](evidence, check.params, now)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            verdict = ERROR, f"evidence malformed: {type(exc).__name__}: {exc}", {}
        results.append(_judged(check, host, verdict, waivers, today))
        if check.evaluator == "openscap" and verdict[0] == FAIL:
            for rule_check, detail, observed in scap_findings(evidence, check):
                results.append(_judged(rule_check, host, (FAIL, detail, observed), waivers, today))
    return results


def epoch(iso: str) -> float:
    """ISO 8601 UTC 'YYYY-MM-DDTHH:MM:SSZ' to epoch seconds (report timestamps)."""
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
