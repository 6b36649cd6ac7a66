#!/usr/bin/python
"""Ansible module audit_facts: gather a school's compliance evidence in one read-only round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit_facts
short_description: Gather read-only compliance evidence from a schoolgate host in one call
description:
  - Collects, in one module run, the raw evidence the schoolgate audit evaluates on the controller
    (C(schoolgate audit report)) - file modes and owners of keys and secrets, the backup status file,
    the node_exporter textfile metrics, systemd unit states, time synchronisation, journald storage,
    log rotation, pending security updates, the agent's health endpoint and the expiry of the signing
    certificate and of the provider access token.
  - The module only reads. It never writes a file, never starts a unit and never reports C(changed).
    C(apt-get) is only run with C(-s) (simulate, C(dist-upgrade)) and never refreshes package lists.
  - It does not judge anything; pass/fail decisions and the mapping to ФСТЭК / 152-ФЗ / GDPR measures
    live in the controller-side catalogue, so one evidence file can be re-evaluated against new waivers.
  - Standard library only, so it runs on a bare Debian host. Secrets are never read; for key and token
    files only C(stat) data is returned; the token metadata file (C(<token>.json)) carries no secret.
version_added: "0.1.0"
author: schoolgate audit area
options:
  secret_files:
    description:
      - Files whose mode and owner are evidence (private keys, tokens, credentials). Missing files are
        reported with C(exists=false).
    type: list
    elements: str
    default: []
  backup_status_file:
    description: The backup status JSON written by C(schoolgate-backup).
    type: path
    default: /var/lib/schoolgate/backup/status.json
  textfile_dir:
    description: node_exporter textfile directory; every C(*.prom) file is parsed.
    type: path
    default: /var/lib/prometheus/node-exporter
  units:
    description: systemd units whose C(ActiveState), C(SubState) and C(UnitFileState) are returned.
    type: list
    elements: str
    default: []
  signing_cert_file:
    description: The school's installed signing certificate (PEM); its expiry is read with C(openssl x509).
    type: path
    default: /etc/schoolgate/signing/cert.pem
  token_meta_file:
    description: The provider token metadata file (C(expires_at), no secret).
    type: path
    default: /etc/schoolgate/provider-token.json
  agent_url:
    description: Base URL of the agent's local API; C(/healthz) is requested. Empty skips it.
    type: str
    default: http://127.0.0.1:8700
  logrotate_files:
    description: logrotate configuration files that must exist (for example the nginx one).
    type: list
    elements: path
    default: [/etc/logrotate.d/nginx]
  check_updates:
    description: Simulate C(apt-get upgrade) and list pending updates from security origins.
    type: bool
    default: true
  debsums_packages:
    description: Packages verified with C(debsums -s) when debsums is installed. Empty skips it.
    type: list
    elements: str
    default: []
  openscap:
    description:
      - Run C(oscap xccdf eval) with the Debian SCAP Security Guide profile (the full audit). The scan
        only reads the system; its results file goes to a private temporary directory that is removed
        afterwards, and the C(TestResult) element comes back as I(results_xml) for the controller to keep.
    type: bool
    default: false
  openscap_profile:
    description: XCCDF profile id evaluated by the full audit.
    type: str
    default: xccdf_org.ssgproject.content_profile_standard
  openscap_datastream:
    description:
      - SCAP source data stream. C(auto) picks C(ssg-debian<major>-ds.xml) for the running Debian release
        and reports an error naming the available content when there is none.
    type: str
    default: auto
  openscap_timeout:
    description: Seconds allowed for the OpenSCAP scan.
    type: float
    default: 3600.0
  timeout:
    description: Seconds allowed for each command and for the agent request.
    type: float
    default: 20.0
notes:
  - Supports check mode; the module only reads.
"""

EXAMPLES = r"""
- name: Gather audit evidence
  audit_facts:
    secret_files:
      - /etc/ssl/private/schoolgate-portal.key
      - /etc/schoolgate/provider-token
    units: [prometheus-node-exporter.service, chrony.service, schoolgate-agent.service]
  register: evidence
"""

RETURN = r"""
collected_at:
  description: UTC time the evidence was read (ISO 8601).
  returned: always
  type: str
files:
  description: One entry per I(secret_files) path with C(exists), C(mode) (octal string), C(owner), C(group).
  returned: always
  type: list
  elements: dict
backup_status:
  description: Parsed backup status file, C(null) when missing; C(error) set when unreadable.
  returned: always
  type: dict
metrics:
  description: >-
    C(samples) from the textfile directory as C({name: [{labels: {...}, value: float}]}); C(files) lists the
    files read with their modification time.
  returned: always
  type: dict
units:
  description: "C({unit: {active, sub, enabled, load}}) from C(systemctl show)."
  returned: always
  type: dict
time:
  description: >-
    C(ntp_synchronized) (timedatectl), C(chrony_tracking) (C(chronyc -c tracking) fields) and
    C(virtualization).
  returned: always
  type: dict
journald:
  description: C(storage) effective setting, C(persistent_dir) whether /var/log/journal exists.
  returned: always
  type: dict
logrotate:
  description: "C({path: exists}) for I(logrotate_files)."
  returned: always
  type: dict
updates:
  description: >-
    C(pending) package names, C(security) the subset from security origins, C(security_details) (package,
    installed, candidate, origin), C(lists_age_seconds).
  returned: when check_updates
  type: dict
agent:
  description: C(status) HTTP status of /healthz, C(body) parsed JSON when possible, C(error).
  returned: always
  type: dict
signing_cert:
  description: C(exists), C(not_after) (ISO 8601), C(days_left) of I(signing_cert_file).
  returned: always
  type: dict
token:
  description: C(exists), C(expires_at), C(days_left) from I(token_meta_file).
  returned: always
  type: dict
integrity:
  description: C(tool) (debsums or null), C(changed_files) reported by C(debsums -s), C(error).
  returned: always
  type: dict
openscap:
  description: >-
    C(skipped) when I(openscap) is false; otherwise C(scanner_version), C(content_package) (ssg-debian
    version), C(datastream), C(profile), C(benchmark_id), C(benchmark_version), C(score), C(counts) per
    result, C(rules) (failing/error/unknown rules with C(id), C(result), C(severity), C(title)),
    C(results_xml) (the XCCDF C(TestResult) element) or C(error).
  returned: always
  type: dict
"""

import calendar
import contextlib
import datetime as dt
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_INST = re.compile(
    r"^Inst (?P<name>\S+) (?:\[(?P<installed>[^\]]+)\] )?\((?P<candidate>\S+) (?P<origin>[^\[)]*)"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _run(cmd: List[str], timeout: float, env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        return {"rc": None, "stdout": "", "stderr": "%s: not installed" % cmd[0]}
    except subprocess.TimeoutExpired:
        return {"rc": None, "stdout": "", "stderr": "%s: timed out after %ss" % (cmd[0], timeout)}
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr.strip()[-500:]}


def file_facts(paths: List[str]) -> List[Dict[str, Any]]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out.append({"path": path, "exists": False})
            continue
        except OSError as exc:
            out.append({"path": path, "exists": None, "error": str(exc)})
            continue
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        out.append(
            {
                "path": path,
                "exists": True,
                "mode": "%04o" % stat.S_IMODE(st.st_mode),
                "owner": owner,
                "group": group,
            }
        )
    return out


def read_json_file(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": "%s: %s" % (path, exc)}
    if not isinstance(data, dict):
        return {"error": "%s: not a JSON object" % path}
    return data


def parse_prometheus_text(text: str) -> Dict[str, List[Dict[str, Any]]]:
    samples: Dict[str, List[Dict[str, Any]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        samples.setdefault(m.group(1), []).append({"labels": labels, "value": value})
    return samples


def textfile_metrics(directory: str) -> Dict[str, Any]:
    result: Dict[str, Any] = {"files": {}, "samples": {}}
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".prom"))
    except OSError as exc:
        result["error"] = "%s: %s" % (directory, exc)
        return result
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        result["files"][name] = {"mtime": mtime}
        for metric, values in parse_prometheus_text(text).items():
            result["samples"].setdefault(metric, []).extend(values)
    return result


def unit_facts(units: List[str], timeout: float) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for unit in units:
        r = _run(
            ["systemctl", "show", unit, "--property=ActiveState,SubState,UnitFileState,LoadState"], timeout
        )
        props = dict(line.split("=", 1) for line in r["stdout"].splitlines() if "=" in line)
        out[unit] = {
            "active": props.get("ActiveState"),
            "sub": props.get("SubState"),
            "enabled": props.get("UnitFileState"),
            "load": props.get("LoadState"),
        }
        if r["rc"] not in (0,):
            out[unit]["error"] = r["stderr"]
    return out


def time_facts(timeout: float) -> Dict[str, Any]:
    td = _run(["timedatectl", "show", "--property=NTPSynchronized"], timeout)
    synced = None
    if td["rc"] == 0 and "=" in td["stdout"]:
        synced = td["stdout"].strip().split("=", 1)[1] == "yes"
    tracking: Optional[Dict[str, Any]] = None
    tr = _run(["chronyc", "-c", "tracking"], timeout)
    if tr["rc"] == 0 and tr["stdout"].strip():
        f = tr["stdout"].strip().split(",")
        # chronyc -c tracking: ref id, ref name, stratum, ref time, system offset, last offset, ...,
        # leap status last. Stratum 0 / "Not synchronised" means no usable source.
        try:
            tracking = {
                "reference": f[1],
                "stratum": int(f[2]),
                "system_offset_s": float(f[4]),
                "leap_status": f[-1],
            }
        except (IndexError, ValueError):
            tracking = {"raw": tr["stdout"].strip()[:300]}
    virt = _run(["systemd-detect-virt"], timeout)
    return {
        "ntp_synchronized": synced,
        "chrony_tracking": tracking,
        "chrony_error": None if tr["rc"] == 0 else tr["stderr"],
        "virtualization": virt["stdout"].strip() or None,
    }


def journald_facts() -> Dict[str, Any]:
    storage = "auto"  # journald's compiled default
    files = ["/etc/systemd/journald.conf"]
    for d in ("/usr/lib/systemd/journald.conf.d", "/etc/systemd/journald.conf.d"):
        with contextlib.suppress(OSError):
            files += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".conf")]
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line.startswith("Storage="):
                        storage = line.split("=", 1)[1].strip()
        except OSError:
            continue
    return {"storage": storage, "persistent_dir": os.path.isdir("/var/log/journal")}


def update_facts(timeout: float) -> Dict[str, Any]:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    # dist-upgrade, not upgrade: a security fix that pulls in a new dependency is "kept back" by upgrade.
    r = _run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"], timeout * 3, env=env)
    pending: List[str] = []
    security: List[str] = []
    details: List[Dict[str, Any]] = []
    for line in r["stdout"].splitlines():
        # "Inst openssl [3.0.15-1] (3.0.16-1~deb12u1 Debian-Security:12/stable-security [amd64])"
        m = _INST.match(line)
        if not m:
            continue
        pending.append(m.group("name"))
        if re.search(r"security", m.group("origin"), re.IGNORECASE):
            security.append(m.group("name"))
            details.append(
                {
                    "package": m.group("name"),
                    "installed": m.group("installed"),
                    "candidate": m.group("candidate"),
                    "origin": m.group("origin").strip(),
                }
            )
    ages = []
    lists = "/var/lib/apt/lists"
    with contextlib.suppress(OSError):
        ages = [
            os.stat(os.path.join(lists, n)).st_mtime
            for n in os.listdir(lists)
            if n.endswith(("Packages", "Packages.lz4", "Packages.xz"))
        ]
    return {
        "pending": pending,
        "security": security,
        "security_details": details,
        "lists_age_seconds": (time.time() - max(ages)) if ages else None,
        "error": None if r["rc"] == 0 else (r["stderr"] or "apt-get exited %s" % r["rc"]),
    }


def agent_facts(base_url: str, timeout: float) -> Dict[str, Any]:
    if not base_url:
        return {"skipped": True}
    url = base_url.rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL from config
            status, raw = resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(65536)
    except (urllib.error.URLError, OSError) as exc:
        return {"url": url, "status": None, "error": str(getattr(exc, "reason", exc))}
    try:
        body: Any = json.loads(raw.decode("utf-8"))
    except ValueError:
        body = None
    return {"url": url, "status": status, "body": body}


def cert_facts(path: str, timeout: float) -> Dict[str, Any]:
    if not os.path.exists(path):
        return {"path": path, "exists": False}
    r = _run(["openssl", "x509", "-noout", "-enddate", "-in", path], timeout)
    if r["rc"] != 0:
        return {"path": path, "exists": True, "error": r["stderr"] or "openssl x509 failed"}
    raw = r["stdout"].strip().split("=", 1)[-1]
    try:
        ts = calendar.timegm(time.strptime(raw.replace(" GMT", ""), "%b %d %H:%M:%S %Y"))
    except ValueError:
        return {"path": path, "exists": True, "error": "unparsable notAfter %r" % raw}
    return {"path": path, "exists": True, "not_after": _iso(ts), "days_left": (ts - time.time()) / 86400.0}


def token_facts(path: str) -> Dict[str, Any]:
    meta = read_json_file(path)
    if meta is None:
        return {"path": path, "exists": False}
    if "error" in meta:
        return {"path": path, "exists": True, "error": meta["error"]}
    expires = meta.get("expires_at")
    out: Dict[str, Any] = {"path": path, "exists": True, "expires_at": expires}
    try:
        ts = calendar.timegm(time.strptime(str(expires), "%Y-%m-%dT%H:%M:%SZ"))
        out["days_left"] = (ts - time.time()) / 86400.0
    except ValueError:
        out["error"] = "unparsable expires_at %r" % expires
    return out


def integrity_facts(packages: List[str], timeout: float) -> Dict[str, Any]:
    if not packages:
        return {"tool": None, "skipped": True}
    r = _run(["debsums", "-s", *packages], timeout * 6)
    if r["rc"] is None:
        return {"tool": None, "error": r["stderr"]}
    changed = re.findall(r"(/\S+)", r["stdout"] + "\n" + r["stderr"])
    return {"tool": "debsums", "packages": packages, "changed_files": sorted(set(changed)), "rc": r["rc"]}


SSG_CONTENT = "/usr/share/xml/scap/ssg/content"
_XCCDF = "{http://checklists.nist.gov/xccdf/1.2}"
_FAILING_RESULTS = ("fail", "error", "unknown")


def _debian_major() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VERSION_ID="):
                return line.split("=", 1)[1].strip().strip('"').split(".")[0]
    with contextlib.suppress(OSError), open("/etc/debian_version", encoding="utf-8") as fh:
        return fh.read().strip().split(".")[0]
    return "unknown"


def parse_xccdf_results(path: str) -> Dict[str, Any]:
    """Rules' titles/severities and the TestResult from an `oscap xccdf eval --results` file.

    The file is the scanner's own output on this host (not outside input); iterparse keeps memory flat on
    the multi-megabyte benchmark part.
    """
    rules: Dict[str, Dict[str, Any]] = {}
    out: Dict[str, Any] = {"benchmark_id": None, "benchmark_version": None, "profile": None, "score": None}
    results: List[Dict[str, Any]] = []
    test_result = None
    for event, elem in ET.iterparse(path, events=("start", "end")):  # noqa: S314 - oscap's own output
        tag = elem.tag
        if event == "start":
            if tag == _XCCDF + "Benchmark":
                out["benchmark_id"] = elem.get("id")
            continue
        if tag == _XCCDF + "version" and out["benchmark_version"] is None:
            out["benchmark_version"] = (elem.text or "").strip() or None
        elif tag == _XCCDF + "Rule":
            title = elem.find(_XCCDF + "title")
            rules[elem.get("id", "")] = {
                "severity": elem.get("severity"),
                "title": " ".join((title.text or "").split()) if title is not None else None,
            }
            elem.clear()
        elif tag == _XCCDF + "TestResult":
            test_result = elem
            profile = elem.find(_XCCDF + "profile")
            out["profile"] = profile.get("idref") if profile is not None else None
            score = elem.find(_XCCDF + "score")
            with contextlib.suppress(TypeError, ValueError):
                out["score"] = float(score.text) if score is not None else None
            for rr in elem.findall(_XCCDF + "rule-result"):
                res = rr.find(_XCCDF + "result")
                results.append(
                    {"id": rr.get("idref"), "result": (res.text or "").strip() if res is not None else ""}
                )
    counts: Dict[str, int] = {}
    failing = []
    for r in results:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
        if r["result"] in _FAILING_RESULTS:
            failing.append(dict(r, **rules.get(r["id"], {})))
    out["counts"] = counts
    out["rules"] = failing
    out["results_xml"] = ET.tostring(test_result, encoding="unicode") if test_result is not None else None
    return out


def openscap_facts(enabled: bool, profile: str, datastream: str, timeout: float) -> Dict[str, Any]:
    if not enabled:
        return {"skipped": True}
    ver = _run(["oscap", "--version"], 30)
    if ver["rc"] is None:
        return {"error": "openscap-scanner not installed (playbooks/audit_scanner.yml installs it)"}
    facts: Dict[str, Any] = {
        "scanner_version": (ver["stdout"].splitlines() or [""])[0].split(")")[-1].strip() or None,
        "profile": profile,
    }
    pkg = _run(["dpkg-query", "-W", "-f=${Version}", "ssg-debian"], 30)
    facts["content_package"] = "ssg-debian " + pkg["stdout"].strip() if pkg["rc"] == 0 else None
    if datastream == "auto":
        major = _debian_major()
        datastream = os.path.join(SSG_CONTENT, "ssg-debian%s-ds.xml" % major)
        if not os.path.exists(datastream):
            available = []
            with contextlib.suppress(OSError):
                available = sorted(n for n in os.listdir(SSG_CONTENT) if n.endswith("-ds.xml"))
            facts["error"] = "no SSG content for Debian %s in %s (available: %s)" % (
                major,
                facts["content_package"] or "ssg-debian (not installed)",
                ", ".join(available) or "none",
            )
            return facts
    facts["datastream"] = datastream
    tmp = tempfile.mkdtemp(prefix="schoolgate-oscap-")
    try:
        results = os.path.join(tmp, "results.xml")
        r = _run(["oscap", "xccdf", "eval", "--profile", profile, "--results", results, datastream], timeout)
        # oscap: 0 every rule passed, 2 at least one rule failed, anything else is a scanner error.
        if r["rc"] not in (0, 2) or not os.path.exists(results):
            facts["error"] = "oscap xccdf eval failed (rc %s): %s" % (r["rc"], r["stderr"][-300:])
            return facts
        try:
            facts.update(parse_xccdf_results(results))
        except ET.ParseError as exc:
            facts["error"] = "unreadable XCCDF results: %s" % exc
        facts["profile"] = facts.get("profile") or profile
        return facts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "secret_files": {"type": "list", "elements": "str", "default": []},
            "backup_status_file": {"type": "path", "default": "/var/lib/schoolgate/backup/status.json"},
            "textfile_dir": {"type": "path", "default": "/var/lib/prometheus/node-exporter"},
            "units": {"type": "list", "elements": "str", "default": []},
            "signing_cert_file": {"type": "path", "default": "/etc/schoolgate/signing/cert.pem"},
            "token_meta_file": {"type": "path", "default": "/etc/schoolgate/provider-token.json"},
            "agent_url": {"type": "str", "default": "http://127.0.0.1:8700"},
            "logrotate_files": {"type": "list", "elements": "path", "default": ["/etc/logrotate.d/nginx"]},
            "check_updates": {"type": "bool", "default": True},
            "debsums_packages": {"type": "list", "elements": "str", "default": []},
            "openscap": {"type": "bool", "default": False},
            "openscap_profile": {"type": "str", "default": "xccdf_org.ssgproject.content_profile_standard"},
            "openscap_datastream": {"type": "str", "default": "auto"},
            "openscap_timeout": {"type": "float", "default": 3600.0},
            "timeout": {"type": "float", "default": 20.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    t = p["timeout"]
    facts: Dict[str, Any] = {
        "collected_at": _iso(time.time()),
        "files": file_facts(p["secret_files"]),
        "backup_status": read_json_file(p["backup_status_file"]),
        "metrics": textfile_metrics(p["textfile_dir"]),
        "units": unit_facts(p["units"], t),
        "time": time_facts(t),
        "journald": journald_facts(),
        "logrotate": {path: os.path.exists(path) for path in p["logrotate_files"]},
        "agent": agent_facts(p["agent_url"], t),
        "signing_cert": cert_facts(p["signing_cert_file"], t),
        "token": token_facts(p["token_meta_file"]),
        "integrity": integrity_facts(p["debsums_packages"], t),
        "openscap": openscap_facts(
            p["openscap"], p["openscap_profile"], p["openscap_datastream"], p["openscap_timeout"]
        ),
    }
    if p["check_updates"]:
        facts["updates"] = update_facts(t)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
