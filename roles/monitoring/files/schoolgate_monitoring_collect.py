#!/usr/bin/python3
"""schoolgate monitoring collectors for the node_exporter textfile directory.

Runs on the school host from systemd timers. Standard library only: the target has no venv.

Subcommands (each writes one ``*.prom`` file atomically):
  expiry     days left for the TLS certificate, the signing certificate and the provider access token
  logerrors  counts error-level entries from journald units and nginx-style error log files
  agent      relays the agent's local /metrics (``schoolgate_agent_*`` families only) and
             ``schoolgate_agent_up``

Configuration is a JSON file (default /etc/schoolgate/monitoring-collect.json) written by the role.
Secrets (the token) are read but never printed: only the expiry time leaves this program.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/schoolgate/monitoring-collect.json"
SECONDS_PER_DAY = 86400.0
# nginx error log levels that count as errors (the rest are warn/notice/info/debug).
NGINX_ERROR_LEVELS = ("[error]", "[crit]", "[alert]", "[emerg]")
AGENT_PREFIX = "schoolgate_agent_"
MAX_AGENT_METRICS_BYTES = 4 * 1024 * 1024


class CollectorError(Exception):
    """A source could not be read or parsed; the message names the source, never secret content."""


# --------------------------------------------------------------------------- output


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Collects metric families and renders the Prometheus text format."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(
        self, name: str, mtype: str, help_text: str, value: float, labels: dict[str, str] | None = None
    ) -> None:
        family = self._families.setdefault(name, (mtype, help_text, []))
        label_text = ""
        if labels:
            label_text = "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(labels.items())) + "}"
        family[2].append(f"{name}{label_text} {format_value(value)}")

    def render(self) -> str:
        lines: list[str] = []
        for name, (mtype, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {mtype}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via a temp file in the same directory and rename, so node_exporter never reads half a file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- expiry


def certificate_not_after(path: Path, openssl: str = "openssl") -> float:
    """notAfter of a PEM or DER certificate as Unix seconds, via openssl (works for GOST certs too)."""
    if not path.is_file():
        raise CollectorError(f"certificate file {path} does not exist")
    last_error = ""
    for inform in ("PEM", "DER"):
        proc = subprocess.run(
            [openssl, "x509", "-noout", "-enddate", "-inform", inform, "-in", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            match = re.search(r"notAfter=(.+)", proc.stdout)
            if match:
                return parse_openssl_date(match.group(1).strip())
        last_error = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else f"exit {proc.returncode}"
    raise CollectorError(f"cannot read certificate {path}: {last_error}")


def parse_openssl_date(text: str) -> float:
    # openssl prints e.g. "Dec  4 15:00:00 2027 GMT"; collapse the double space before single-digit days.
    normalized = " ".join(text.split())
    try:
        parsed = dt.datetime.strptime(normalized, "%b %d %H:%M:%S %Y GMT")
    except ValueError as exc:
        raise CollectorError(f"unexpected openssl date {text!r}") from exc
    return parsed.replace(tzinfo=dt.UTC).timestamp()


def parse_time_value(value: Any, source: str) -> float:
    """Accept Unix seconds (number or numeric string) or ISO 8601 (naive means UTC)."""
    if isinstance(value, bool):
        raise CollectorError(f"{source}: expiry must be a time, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        stripped = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", stripped):
            return float(stripped)
        try:
            parsed = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CollectorError(
                f"{source}: expiry {stripped[:40]!r} is not ISO 8601 or Unix seconds"
            ) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise CollectorError(f"{source}: expiry has unsupported type {type(value).__name__}")


def jwt_expiry(token: str, source: str) -> float:
    parts = token.split(".")
    if len(parts) != 3:
        raise CollectorError(f"{source}: not a JWT (expected 3 dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError) as exc:
        raise CollectorError(f"{source}: JWT payload is not base64url JSON") from exc
    if not isinstance(claims, dict) or "exp" not in claims:
        raise CollectorError(f"{source}: JWT has no 'exp' claim")
    return parse_time_value(claims["exp"], source)


def token_expiry(path: Path) -> float:
    """Expiry of the provider access token.

    The file may be JSON with ``expires_at`` (or ``exp``/``expires``), or the raw token if it is a JWT.
    """
    source = str(path)
    try:
        raw = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise CollectorError(f"token file {path} does not exist") from exc
    except OSError as exc:
        raise CollectorError(f"cannot read token file {path}: {exc.strerror}") from exc
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise CollectorError(f"{source}: invalid JSON") from exc
        for key in ("expires_at", "exp", "expires"):
            if key in data:
                return parse_time_value(data[key], f"{source} key {key!r}")
        for key in ("access_token", "token"):
            if isinstance(data.get(key), str):
                return jwt_expiry(data[key], f"{source} key {key!r}")
        raise CollectorError(f"{source}: JSON has none of expires_at, exp, expires, access_token")
    return jwt_expiry(raw, source)


def collect_expiry(config: dict[str, Any], now: float, openssl: str = "openssl") -> tuple[str, list[str]]:
    """Return the exposition text and a list of problems (for the journal)."""
    out = Exposition()
    problems: list[str] = []
    certs: dict[str, str] = config.get("certificates", {})
    for kind, path in sorted(certs.items()):
        if not path:
            continue
        try:
            not_after = certificate_not_after(Path(path), openssl)
        except CollectorError as exc:
            problems.append(str(exc))
            out.add(
                "schoolgate_expiry_check_ok", "gauge", "1 if the expiry source was read", 0, {"kind": kind}
            )
            continue
        out.add("schoolgate_expiry_check_ok", "gauge", "1 if the expiry source was read", 1, {"kind": kind})
        out.add(
            "schoolgate_cert_not_after_timestamp_seconds",
            "gauge",
            "Certificate notAfter",
            not_after,
            {"kind": kind},
        )
        out.add(
            "schoolgate_cert_days_left",
            "gauge",
            "Days until the certificate expires (negative: expired)",
            round((not_after - now) / SECONDS_PER_DAY, 4),
            {"kind": kind},
        )
    token_file = config.get("token_file") or ""
    if token_file:
        try:
            expiry = token_expiry(Path(token_file))
        except CollectorError as exc:
            problems.append(str(exc))
            out.add(
                "schoolgate_expiry_check_ok", "gauge", "1 if the expiry source was read", 0, {"kind": "token"}
            )
        else:
            out.add(
                "schoolgate_expiry_check_ok", "gauge", "1 if the expiry source was read", 1, {"kind": "token"}
            )
            out.add(
                "schoolgate_token_expiry_timestamp_seconds", "gauge", "Provider access token expiry", expiry
            )
            out.add(
                "schoolgate_token_days_left",
                "gauge",
                "Days until the provider access token expires",
                round((expiry - now) / SECONDS_PER_DAY, 4),
            )
    out.add(
        "schoolgate_expiry_collector_last_run_timestamp_seconds",
        "gauge",
        "When the expiry collector last ran",
        round(now, 3),
    )
    return out.render(), problems


# --------------------------------------------------------------------------- log errors


def count_file_errors(path: Path, state: dict[str, Any]) -> int:
    """Count new error-level lines since the stored offset; handles rotation (inode change / truncation).

    On first sight of a file the current end is the baseline: history is not counted.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror}") from exc
    inode, size = stat.st_ino, stat.st_size
    known = state.get("inode") == inode
    offset = int(state.get("offset", 0)) if known else 0
    if not state:
        state.update(inode=inode, offset=size)
        return 0
    if size < offset:
        offset = 0
    count = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        handle.seek(offset)
        for line in handle:
            if not line.endswith(b"\n"):
                break  # partial line: count it on the next run
            offset += len(line)
            text = line.decode("utf-8", "replace")
            if any(level in text for level in NGINX_ERROR_LEVELS):
                count += 1
    state.update(inode=inode, offset=offset)
    return count


def count_journal_errors(unit: str, state: dict[str, Any], now: float, journalctl: str = "journalctl") -> int:
    """Count journald entries of priority err or worse for a unit since the stored cursor."""
    cmd = [journalctl, "--no-pager", "-o", "json", "-p", "err", "-u", unit]
    if state.get("cursor"):
        cmd.append("--after-cursor=" + state["cursor"])
    else:
        cmd.append("--since=@" + str(int(state.get("since", now))))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        raise CollectorError(f"journalctl for {unit} failed: {proc.stderr.strip()[:200]}")
    count = 0
    cursor = state.get("cursor")
    for line in proc.stdout.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        count += 1
        cursor = entry.get("__CURSOR", cursor)
    if cursor:
        state["cursor"] = cursor
        state.pop("since", None)
    else:
        state.setdefault("since", int(now))
    return count


def collect_logerrors(
    config: dict[str, Any], state: dict[str, Any], now: float, journalctl: str = "journalctl"
) -> tuple[str, list[str]]:
    out = Exposition()
    problems: list[str] = []
    counts: dict[str, float] = state.setdefault("counts", {})
    sources: dict[str, dict[str, Any]] = state.setdefault("sources", {})
    for unit in config.get("log_units", []):
        key = "unit:" + unit
        try:
            new = count_journal_errors(unit, sources.setdefault(key, {}), now, journalctl)
        except CollectorError as exc:
            problems.append(str(exc))
            new = 0
        counts[unit] = counts.get(unit, 0) + new
    for file_name in config.get("log_files", []):
        key = "file:" + file_name
        try:
            new = count_file_errors(Path(file_name), sources.setdefault(key, {}))
        except CollectorError as exc:
            problems.append(str(exc))
            new = 0
        counts[file_name] = counts.get(file_name, 0) + new
    wanted = set(config.get("log_units", [])) | set(config.get("log_files", []))
    for source in sorted(wanted):
        out.add(
            "schoolgate_log_errors_total",
            "counter",
            "Error-level log entries seen (journald priority err and worse, nginx [error] and worse)",
            counts.get(source, 0),
            {"source": source},
        )
    return out.render(), problems


# --------------------------------------------------------------------------- agent relay

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def split_sample(line: str) -> tuple[str, str, str]:
    """Split a sample line into (name, labels-with-braces, value), dropping any timestamp."""
    match = _METRIC_NAME.match(line)
    if not match:
        raise ValueError("no metric name")
    name = match.group(0)
    pos = match.end()
    labels = ""
    if pos < len(line) and line[pos] == "{":
        in_quotes = escaped = False
        end = pos
        for end in range(pos, len(line)):
            char = line[end]
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = not in_quotes
            elif char == "}" and not in_quotes:
                break
        else:
            raise ValueError("unterminated labels")
        labels = line[pos : end + 1]
        pos = end + 1
    fields = line[pos:].split()
    if not fields:
        raise ValueError("no value")
    float(fields[0])
    return name, labels, fields[0]


def relay_agent_metrics(text: str) -> list[str]:
    """Keep only schoolgate_agent_* families (HELP/TYPE and samples), without timestamps."""
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and parts[2].startswith(AGENT_PREFIX):
                if parts[2] == "schoolgate_agent_up":
                    continue
                if (
                    parts[1] == "TYPE"
                    and len(parts) == 4
                    and parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped")
                ):
                    parts[3] = "untyped"  # OpenMetrics-only types are not valid in the text format
                kept.append(" ".join(parts))
            continue
        try:
            name, labels, value = split_sample(line)
        except ValueError:
            continue
        if name.startswith(AGENT_PREFIX) and name != "schoolgate_agent_up":
            kept.append(f"{name}{labels} {value}")
    return kept


def fetch(url: str, timeout: float) -> str:
    if not url.startswith(("http://", "https://")):
        raise CollectorError(f"agent_metrics_url {url!r} must be http:// or https://")
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})  # noqa: S310 - checked
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        body = response.read(MAX_AGENT_METRICS_BYTES + 1)
    if len(body) > MAX_AGENT_METRICS_BYTES:
        raise CollectorError(f"{url} returned more than {MAX_AGENT_METRICS_BYTES} bytes")
    return body.decode("utf-8", "replace")


def collect_agent(
    config: dict[str, Any], fetcher: Callable[[str, float], str] = fetch
) -> tuple[str, list[str]]:
    url = config.get("agent_metrics_url", "http://127.0.0.1:8700/metrics")
    problems: list[str] = []
    lines: list[str] = []
    up = 0
    try:
        lines = relay_agent_metrics(fetcher(url, float(config.get("agent_timeout_seconds", 5))))
        up = 1
    except (OSError, urllib.error.URLError, CollectorError) as exc:
        problems.append(f"agent metrics {url} unavailable: {exc}")
    head = [
        "# HELP schoolgate_agent_up 1 if the agent's /metrics answered on the last relay run",
        "# TYPE schoolgate_agent_up gauge",
        f"schoolgate_agent_up {up}",
    ]
    return "\n".join(head + lines) + "\n", problems


# --------------------------------------------------------------------------- CLI


def load_json(path: Path, default: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if default is not None:
            return default
        raise
    if not isinstance(data, dict):
        raise CollectorError(f"{path} must hold a JSON object")
    return data


def report(problems: Iterable[str]) -> None:
    for problem in problems:
        print(f"schoolgate-monitoring: {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["expiry", "logerrors", "agent"])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        config = load_json(Path(args.config))
    except (OSError, ValueError, CollectorError) as exc:
        print(f"schoolgate-monitoring: cannot read config {args.config}: {exc}", file=sys.stderr)
        return 2
    textfile_dir = Path(config.get("textfile_dir", "/var/lib/prometheus/node-exporter"))
    now = time.time()
    if args.command == "expiry":
        text, problems = collect_expiry(config, now)
        target = textfile_dir / "schoolgate_expiry.prom"
    elif args.command == "agent":
        text, problems = collect_agent(config)
        target = textfile_dir / "schoolgate_agent.prom"
    else:
        state_file = Path(config.get("state_dir", "/var/lib/schoolgate-monitoring")) / "logerrors.json"
        state = load_json(state_file, default={})
        text, problems = collect_logerrors(config, state, now)
        write_atomic(state_file, json.dumps(state, sort_keys=True), mode=0o600)
        target = textfile_dir / "schoolgate_logerrors.prom"
    write_atomic(target, text)
    report(problems)
    return 0


if __name__ == "__main__":
    sys.exit(main())
