"""Agent configuration: one file (YAML or JSON), validated completely at start.

Every problem is reported with the dotted key that is wrong and what to do,
all at once, before the agent touches anything.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PATH = "/etc/schoolgate/agent.yaml"


class ConfigError(Exception):
    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid agent configuration {path}:\n  - " + "\n  - ".join(problems))


@dataclass
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    # mTLS for the portal: server certificate + key, and the CA that signs portal client certificates.
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None


@dataclass
class AuthConfig:
    mode: str = "hmac"  # hmac | mtls | hmac+mtls
    hmac_secret_file: str | None = None
    window_s: int = 300


@dataclass
class LimitsConfig:
    max_body_bytes: int = 16 * 1024 * 1024
    max_record_bytes: int = 64 * 1024
    max_batch_records: int = 10_000
    # Processes that decode and validate large batches (agent/parsing.py); 0 = on the event loop. Off by
    # default: the hand-off costs more CPU than it moves (measured on 2 cores); for hosts with ≥ 4 cores.
    parse_workers: int = 0


@dataclass
class OutboxConfig:
    path: str = "/var/lib/schoolgate-agent/outbox.sqlite3"
    partitions: int = 4
    group_max_rows: int = 50_000
    group_linger_ms: float = 0.0


@dataclass
class ProviderConfig:
    base_url: str = ""
    ca_file: str | None = None  # trust store for the provider's TLS certificate; None = system store
    client_cert: str | None = None
    client_key: str | None = None
    # Alternative to ESIA client_credentials: a provider access token issued by the cabinet (file 0600).
    token_file: str | None = None
    timeout_s: float = 30.0


@dataclass
class EsiaConfig:
    base_url: str = ""  # where /aas/oauth2/v3/te lives (the provider in the lab)
    client_id: str = ""
    scope: str = "edu_upload"
    redirect_uri: str = ""  # part of the v3 signed string; must match the service registration
    signer: dict[str, Any] = field(default_factory=dict)  # passed to schoolgate.esia.signing.make_signer
    refresh_margin_s: int = 300
    verify_certificates: list[str] = field(default_factory=list)  # ESIA token-signing certs (PEM files)
    issuer: str = ""  # expected `iss` of ESIA tokens (checked when set)
    ca_file: str | None = None  # trust store for ESIA's TLS certificate (default: provider.ca_file)
    # Portal user login (/esia/login → /esia/callback)
    login_scope: str = "openid fullname"
    portal_return_url: str = ""  # the browser lands here with #assertion=...; empty: JSON answer
    assertion_ttl_s: int = 300


@dataclass
class DeliveryConfig:
    enabled: bool = True
    batch_size: int = 1000
    backoff_base_s: float = 0.5
    backoff_max_s: float = 300.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    idle_poll_s: float = 1.0


@dataclass
class ServicesConfig:
    enabled: bool = True  # needs delivery (the provider and its token)
    refresh_s: float = 600.0  # service catalogue cache
    poll_s: float = 1.0  # how often pending справки are checked
    # Connections to the provider for the portal's own calls (справки, signing sessions, the poller): a pool
    # of their own, since behind the delivery workers' few connections a portal request waited seconds.
    max_connections: int = 32
    poll_concurrency: int = 8  # pending справки/signing sessions checked at once
    webhook_url: str = ""  # the portal's endpoint told about ready documents (HMAC-signed POST)
    # CA bundle (PEM) of the accredited CAs whose certificates parents sign with; empty: the signature and the
    # certificate the provider reports are checked, not the certificate's chain.
    signature_trust_ca_file: str | None = None


@dataclass
class AgentConfig:
    listen: ListenConfig = field(default_factory=ListenConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    esia: EsiaConfig = field(default_factory=EsiaConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    log_level: str = "info"
    source: str = "<defaults>"


def _read_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    try:
        import yaml  # lazy: only YAML configs need PyYAML
    except ImportError:
        raise ConfigError(
            str(path), ["PyYAML is not installed: write the config as JSON (agent.json)"]
        ) from None
    return yaml.safe_load(text)


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix or 'top level'}: must be a mapping, got {type(data).__name__}")
        return cls()
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            problems.append(
                f"{dotted}: unknown key" + (f" (did you mean '{prefix}{hint[0]}'?)" if hint else "")
            )
            continue
        f = known[key]
        default = cls().__getattribute__(key)
        if is_dataclass(default):
            kwargs[key] = _build(type(default), value, dotted + ".", problems)
            continue
        expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        ok = _type_ok(expected, value)
        if not ok:
            problems.append(f"{dotted}: expected {expected}, got {type(value).__name__} {value!r}")
            continue
        kwargs[key] = float(value) if expected.startswith("float") and isinstance(value, int) else value
    return cls(**kwargs)


def _type_ok(expected: str, value: Any) -> bool:
    if value is None:
        return "None" in expected
    if expected.startswith("bool"):
        return isinstance(value, bool)
    if expected.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if expected.startswith("float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected.startswith("str"):
        return isinstance(value, str)
    if expected.startswith("dict"):
        return isinstance(value, dict)
    if expected.startswith("list"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(cfg: AgentConfig, *, check_files: bool = True) -> list[str]:
    problems: list[str] = []
    if not 1 <= cfg.listen.port <= 65535:
        problems.append(f"listen.port: {cfg.listen.port} is not a TCP port (1-65535)")
    if cfg.auth.mode not in ("hmac", "mtls", "hmac+mtls"):
        problems.append(f"auth.mode: {cfg.auth.mode!r} must be one of hmac, mtls, hmac+mtls")
    if "hmac" in cfg.auth.mode and not cfg.auth.hmac_secret_file:
        problems.append(
            "auth.hmac_secret_file: required when auth.mode uses hmac "
            "(create one with `schoolgate agent gen-secret PATH`)"
        )
    if "mtls" in cfg.auth.mode and not (cfg.listen.tls_cert and cfg.listen.tls_key and cfg.listen.client_ca):
        problems.append(
            "listen.tls_cert, listen.tls_key, listen.client_ca: all required when auth.mode uses mtls"
        )
    if not 10 <= cfg.auth.window_s <= 3600:
        problems.append(f"auth.window_s: {cfg.auth.window_s} must be between 10 and 3600 seconds")
    if cfg.limits.max_body_bytes < 1024 or cfg.limits.max_body_bytes > 256 * 1024 * 1024:
        problems.append("limits.max_body_bytes: must be between 1 KiB and 256 MiB")
    if cfg.limits.max_record_bytes < 256 or cfg.limits.max_record_bytes > cfg.limits.max_body_bytes:
        problems.append("limits.max_record_bytes: must be ≥ 256 and ≤ limits.max_body_bytes")
    if not 1 <= cfg.limits.max_batch_records <= 100_000:
        problems.append("limits.max_batch_records: must be between 1 and 100000")
    if not 0 <= cfg.limits.parse_workers <= 16:
        problems.append("limits.parse_workers: must be between 0 (parse on the event loop) and 16")
    if not 1 <= cfg.outbox.partitions <= 64:
        problems.append("outbox.partitions: must be between 1 and 64")
    if not 0 <= cfg.outbox.group_linger_ms <= 50:
        problems.append(
            "outbox.group_linger_ms: must be between 0 and 50 (it adds to every request's latency)"
        )
    if cfg.delivery.enabled:
        problems.extend(_check_url("provider.base_url", cfg.provider.base_url))
        if not cfg.provider.token_file:
            problems.extend(_check_url("esia.base_url", cfg.esia.base_url))
        if cfg.provider.token_file:
            pass  # the cabinet's provider token replaces ESIA client_credentials
        elif not cfg.esia.client_id:
            problems.append("esia.client_id: required (the system mnemonic registered at the provider)")
        elif not cfg.esia.signer:
            problems.append(
                "esia.signer: required, e.g. {type: openssl-gost, key: /etc/schoolgate/sign.key, "
                "cert: /etc/schoolgate/sign.crt}"
            )
        if not 1 <= cfg.delivery.batch_size <= 50_000:
            problems.append("delivery.batch_size: must be between 1 and 50000")
        if cfg.delivery.backoff_base_s <= 0 or cfg.delivery.backoff_max_s < cfg.delivery.backoff_base_s:
            problems.append("delivery.backoff_base_s/backoff_max_s: need 0 < base ≤ max")
    if cfg.services.webhook_url:
        problems.extend(_check_url("services.webhook_url", cfg.services.webhook_url))
    if cfg.services.refresh_s < 10 or cfg.services.poll_s < 0.1:
        problems.append("services.refresh_s (≥ 10) or services.poll_s (≥ 0.1) is too small")
    if not 1 <= cfg.services.max_connections <= 512:
        problems.append("services.max_connections: must be between 1 and 512")
    if not 1 <= cfg.services.poll_concurrency <= cfg.services.max_connections:
        problems.append("services.poll_concurrency: must be between 1 and services.max_connections")
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        problems.append(f"log_level: {cfg.log_level!r} must be debug, info, warning or error")
    if check_files:
        for key, value in (
            ("auth.hmac_secret_file", cfg.auth.hmac_secret_file if "hmac" in cfg.auth.mode else None),
            ("listen.tls_cert", cfg.listen.tls_cert),
            ("listen.tls_key", cfg.listen.tls_key),
            ("listen.client_ca", cfg.listen.client_ca),
            ("provider.ca_file", cfg.provider.ca_file if cfg.delivery.enabled else None),
            ("provider.client_cert", cfg.provider.client_cert),
            ("provider.client_key", cfg.provider.client_key),
            ("provider.token_file", cfg.provider.token_file if cfg.delivery.enabled else None),
            ("esia.ca_file", cfg.esia.ca_file),
            *((f"esia.verify_certificates[{i}]", c) for i, c in enumerate(cfg.esia.verify_certificates)),
        ):
            if value and not os.path.isfile(value):
                problems.append(f"{key}: file {value} does not exist")
        for key, path in (
            ("esia.signer.key", cfg.esia.signer.get("key")),
            ("esia.signer.cert", cfg.esia.signer.get("cert")),
        ):
            if cfg.delivery.enabled and path and not os.path.isfile(str(path)):
                problems.append(f"{key}: file {path} does not exist")
    return problems


def _check_url(key: str, url: str) -> list[str]:
    if not url:
        return [f"{key}: required (e.g. https://provider.example:8443) unless delivery.enabled is false"]
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [f"{key}: {url!r} is not an http(s) URL"]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # Plain HTTP only to a provider on the same machine (lab/tests); anything remote must be TLS-verified.
        return [f"{key}: {url!r} must use https (plain http is allowed only to 127.0.0.1)"]
    return []


def load(path: str | Path | None = None, *, check_files: bool = True) -> AgentConfig:
    p = Path(path or os.environ.get("SCHOOLGATE_AGENT_CONFIG", DEFAULT_PATH))
    if not p.exists():
        raise ConfigError(str(p), ["file not found (create it or pass --config); see docs/agent.md"])
    try:
        data = _read_file(p)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(p), [f"cannot parse: {exc}"]) from None
    except Exception as exc:  # YAML errors carry line/column
        raise ConfigError(str(p), [f"cannot parse: {exc}"]) from None
    problems: list[str] = []
    cfg: AgentConfig = _build(AgentConfig, data, "", problems)
    cfg.source = str(p)
    if not problems:
        problems = validate(cfg, check_files=check_files)
    if problems:
        raise ConfigError(str(p), problems)
    return cfg
