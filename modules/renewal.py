#!/usr/bin/python
"""Ansible module: what a renewal needs to know (certificate days left) and what it leaves behind (events)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: renewal
short_description: Inspect certificate expiry and record renewal events for audit and monitoring
description:
  - With O(action=inspect) reads a PEM/DER certificate on the host and returns its expiry, serial and
    C(client_certificate_hash) (ESIA core, standard library only) and whether renewal is due against
    O(threshold_days). Never changes anything.
  - With O(action=record) appends one JSON line to O(events_file) (what was renewed, outcome, step, old and
    new serial/hash, reason — never keys or tokens) and rewrites the node_exporter textfile
    O(metrics_file) with C(schoolgate_renewal_last_success_timestamp_seconds),
    C(schoolgate_renewal_last_failure_timestamp_seconds) and C(schoolgate_renewal_last_outcome_ok) per kind,
    computed from the whole events file, so the metric always agrees with the audit trail.
  - Supports check mode (nothing written) and diff (the event line).
version_added: "0.1.0"
author: schoolgate
options:
  action:
    description: V(inspect) a certificate, or V(record) a renewal event.
    type: str
    choices: [inspect, record]
    default: record
  certificate_path:
    description: Certificate to inspect (PEM or DER). Required with O(action=inspect).
    type: path
  threshold_days:
    description: Renewal is due when fewer days than this are left (O(action=inspect)).
    type: int
    default: 30
  kind:
    description: What was renewed - C(signing_cert), C(tls_cert), C(provider_token), C(esia_token).
    type: str
    choices: [signing_cert, tls_cert, provider_token, esia_token]
  outcome:
    description: V(success), V(failure) or V(skipped) (nothing was due).
    type: str
    choices: [success, failure, skipped]
  step:
    description: The step the renewal reached or failed at (e.g. C(csr), C(issue), C(register), C(switch)).
    type: str
    default: ""
  reason:
    description: Why it failed or was skipped (shown to staff; must not contain secrets).
    type: str
    default: ""
  details:
    description: Extra non-secret facts (old/new serial, certificate hash, days left, token id).
    type: dict
    default: {}
  events_file:
    description: JSON-lines audit trail of renewals (mode 0640).
    type: path
    default: /var/lib/schoolgate/renewal-events.jsonl
  metrics_file:
    description: node_exporter textfile-collector file (mode 0644). Empty disables it.
    type: path
    default: /var/lib/prometheus/node-exporter/schoolgate_renewal.prom
notes:
  - The metrics file is written atomically (temporary file + rename) so node_exporter never reads half of it.
"""

EXAMPLES = r"""
- name: Is the signing certificate due?
  renewal:
    action: inspect
    certificate_path: /etc/schoolgate/signing/cert.pem
    threshold_days: 30
  register: signing

- name: Record the outcome
  renewal:
    kind: signing_cert
    outcome: success
    step: done
    details: {old_serial: "{{ signing.certificate.serial }}"}
"""

RETURN = r"""
certificate:
  description: Certificate facts (O(action=inspect)).
  type: dict
  returned: when action is inspect
  sample: {serial: "1f3a", not_after: "2027-01-03T00:00:00+00:00", days_left: 29, expired: false,
           certificate_hash: "8a7f..."}
due:
  description: True when days_left < threshold_days (O(action=inspect)).
  type: bool
  returned: when action is inspect
event:
  description: The event written (O(action=record)).
  type: dict
  returned: when action is record
"""

import json
import os
import time
from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

KINDS = ("signing_cert", "tls_cert", "provider_token", "esia_token")


def inspect(module: AnsibleModule) -> Dict[str, Any]:
    from ansible.module_utils.schoolgate_esia.certhash import certificate_info, client_certificate_hash

    path = module.params["certificate_path"]
    if not path:
        module.fail_json(msg="certificate_path обязателен при action=inspect")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        info = certificate_info(data)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="Сертификат %s не читается: %s" % (path, exc))
    keys = ("serial", "not_before", "not_after", "days_left", "expired", "subject", "subject_fields")
    facts = {k: info.get(k) for k in keys}
    try:
        facts["certificate_hash"] = client_certificate_hash(data) if info.get("is_gost") else ""
    except Exception:  # no GOST engine: the hash is informative here, not required
        facts["certificate_hash"] = ""
    facts["path"] = path
    return {
        "changed": False,
        "certificate": facts,
        "due": info["days_left"] < module.params["threshold_days"],
    }


def read_events(path: str) -> List[Dict[str, Any]]:
    events: List[Dict[str, Any]] = []
    try:
        with open(path, "r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash must not hide every other event
                if isinstance(item, dict):
                    events.append(item)
    except FileNotFoundError:
        pass
    return events


def render_metrics(events: List[Dict[str, Any]]) -> str:
    last: Dict[str, Dict[str, float]] = {}
    outcome_ok: Dict[str, int] = {}
    for ev in events:
        kind, outcome, ts = ev.get("kind"), ev.get("outcome"), ev.get("ts_unix")
        if kind not in KINDS or not isinstance(ts, (int, float)):
            continue
        slot = last.setdefault(kind, {})
        if outcome in ("success", "failure"):
            slot[outcome] = max(slot.get(outcome, 0.0), float(ts))
            outcome_ok[kind] = 1 if outcome == "success" else 0
        if outcome in ("success", "skipped"):
            slot["check"] = max(slot.get("check", 0.0), float(ts))
    lines = [
        "# HELP schoolgate_renewal_last_success_timestamp_seconds Last successful renewal, by kind.",
        "# TYPE schoolgate_renewal_last_success_timestamp_seconds gauge",
    ]
    lines += [
        'schoolgate_renewal_last_success_timestamp_seconds{kind="%s"} %d' % (k, v["success"])
        for k, v in sorted(last.items())
        if "success" in v
    ]
    lines += [
        "# HELP schoolgate_renewal_last_failure_timestamp_seconds Last failed renewal, by kind.",
        "# TYPE schoolgate_renewal_last_failure_timestamp_seconds gauge",
    ]
    lines += [
        'schoolgate_renewal_last_failure_timestamp_seconds{kind="%s"} %d' % (k, v["failure"])
        for k, v in sorted(last.items())
        if "failure" in v
    ]
    lines += [
        "# HELP schoolgate_renewal_last_outcome_ok 1 if the latest renewal succeeded, 0 if it failed.",
        "# TYPE schoolgate_renewal_last_outcome_ok gauge",
    ]
    lines += [
        'schoolgate_renewal_last_outcome_ok{kind="%s"} %d' % (k, v) for k, v in sorted(outcome_ok.items())
    ]
    lines += [
        "# HELP schoolgate_renewal_last_check_timestamp_seconds Last renewal run that found nothing wrong.",
        "# TYPE schoolgate_renewal_last_check_timestamp_seconds gauge",
    ]
    lines += [
        'schoolgate_renewal_last_check_timestamp_seconds{kind="%s"} %d' % (k, v["check"])
        for k, v in sorted(last.items())
        if "check" in v
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str, mode: int) -> None:
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, ".%s.tmp" % os.path.basename(path))
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def record(module: AnsibleModule) -> Dict[str, Any]:
    p = module.params
    if not p["kind"] or not p["outcome"]:
        module.fail_json(msg="kind и outcome обязательны при action=record")
    now = time.time()
    event = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "ts_unix": round(now, 3),
        "kind": p["kind"],
        "outcome": p["outcome"],
        "step": p["step"],
        "reason": p["reason"][:1000],
        "details": p["details"],
    }
    line = json.dumps(event, ensure_ascii=False, sort_keys=True)
    result: Dict[str, Any] = {"changed": True, "event": event, "diff": {"before": "", "after": line + "\n"}}
    if module.check_mode:
        return result
    events_dir = os.path.dirname(p["events_file"])
    try:
        if events_dir and not os.path.isdir(events_dir):
            os.makedirs(events_dir, 0o750)
        # A line torn by a crash mid-write must not swallow this event: start on a fresh line.
        lead = ""
        if os.path.exists(p["events_file"]) and os.path.getsize(p["events_file"]) > 0:
            with open(p["events_file"], "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                lead = "" if fh.read(1) == b"\n" else "\n"
        fd = os.open(p["events_file"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            # The creation mode is cut by the caller's umask (0077 under some runners); the trail is meant to
            # be readable by the audit's group, so the mode is set explicitly.
            os.fchmod(fd, 0o640)
            os.write(fd, (lead + line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if p["metrics_file"]:
            metrics_dir = os.path.dirname(p["metrics_file"])
            if metrics_dir and not os.path.isdir(metrics_dir):
                os.makedirs(metrics_dir, 0o755)
            write_atomic(p["metrics_file"], render_metrics(read_events(p["events_file"])), 0o644)
    except OSError as exc:
        module.fail_json(msg="Не удалось записать событие обновления (%s): %s" % (p["events_file"], exc))
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "choices": ["inspect", "record"], "default": "record"},
            "certificate_path": {"type": "path"},
            "threshold_days": {"type": "int", "default": 30},
            "kind": {"type": "str", "choices": list(KINDS)},
            "outcome": {"type": "str", "choices": ["success", "failure", "skipped"]},
            "step": {"type": "str", "default": ""},
            "reason": {"type": "str", "default": ""},
            "details": {"type": "dict", "default": {}},
            "events_file": {"type": "path", "default": "/var/lib/schoolgate/renewal-events.jsonl"},
            "metrics_file": {
                "type": "path",
                "default": "/var/lib/prometheus/node-exporter/schoolgate_renewal.prom",
            },
        },
        supports_check_mode=True,
    )
    if module.params["action"] == "inspect":
        module.exit_json(**inspect(module))
    module.exit_json(**record(module))


if __name__ == "__main__":
    main()
