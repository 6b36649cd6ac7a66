"""What the integration test runs against: the school's public portal, the provider, trust stores, secrets.

Names are resolved through `resolve` (name → address) first: in the lab the controller reaches containers
by address while TLS still checks the certificate against the real name (the portal's FQDN).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TargetError(ValueError):
    """A target setting is missing or wrong; the message names the setting and the fix."""


_NAME_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


@dataclass
class Target:
    school: str
    portal_url: str  # https://school-001.lab.schoolgate.test (nginx in front of the agent)
    hmac_secret_file: str  # the portal↔agent secret: the test acts as the portal
    provider_url: str = ""  # where records are confirmed; empty: confirmation step skipped
    api_prefix: str = "/api"  # nginx location of the agent ("" when talking to the agent directly)
    ca_file: str | None = None  # trust store for the portal (and the provider unless provider_ca_file)
    provider_ca_file: str | None = None
    provider_token_file: str | None = None  # bearer for GET /edu/v1/records at the provider
    resolve: dict[str, str] = field(default_factory=dict)
    school_id: str = ""  # record school_id; default: school
    pupil_oid: str = "1000001"
    parent_oid: str = "1000002"
    login_user_element: str = "user-pupil"  # the test user's button on the ESIA login page
    document_service: str = "spravka-ob-obuchenii"
    browser: bool = True
    timeout_s: float = 60.0

    @property
    def api(self) -> str:
        return self.portal_url.rstrip("/") + self.api_prefix

    def check(self) -> None:
        problems = []
        for name in ("portal_url", "provider_url"):
            url = getattr(self, name)
            if not url and name == "provider_url":
                continue
            parts = urlsplit(url)
            local = parts.hostname == "127.0.0.1"
            if parts.scheme != "https" and not (parts.scheme == "http" and local):
                problems.append(f"{name}={url!r}: must be https://... (plain http only to 127.0.0.1)")
        for name in ("hmac_secret_file", "ca_file", "provider_ca_file", "provider_token_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                problems.append(f"{name}={value!r}: file not found")
        for host, addr in self.resolve.items():
            if not _NAME_RE.match(host) or not addr:
                problems.append(f"resolve: {host!r}={addr!r} is not NAME=ADDRESS")
        if self.api_prefix and not self.api_prefix.startswith("/"):
            problems.append(f"api_prefix={self.api_prefix!r}: must start with '/' (or be empty)")
        if problems:
            raise TargetError("; ".join(problems))

    def public(self) -> dict[str, str]:
        """What the report shows: addresses and names, never secrets or their paths' contents."""
        return {
            "school": self.school,
            "portal": self.portal_url,
            "provider": self.provider_url or "—",
            "resolve": ", ".join(f"{k}={v}" for k, v in sorted(self.resolve.items())) or "—",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TargetError(f"unknown target settings {unknown}; known: {sorted(known)}")
        for required in ("school", "portal_url", "hmac_secret_file"):
            if not data.get(required):
                raise TargetError(f"target setting {required!r} is required")
        data = dict(data)
        # Values templated by Ansible may arrive as strings: coerce the non-string settings.
        if "timeout_s" in data:
            data["timeout_s"] = float(data["timeout_s"])
        if "browser" in data and isinstance(data["browser"], str):
            data["browser"] = data["browser"].strip().lower() in ("1", "true", "yes", "on")
        for name in ("ca_file", "provider_ca_file", "provider_token_file"):
            if data.get(name) in ("", "None", None):
                data[name] = None
        target = cls(**data)
        if not target.school_id:
            target.school_id = target.school
        return target

    @classmethod
    def from_file(cls, path: Path) -> Target:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TargetError(f"target file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise TargetError(f"target file {path}: must hold a JSON object")
        return cls.from_dict(data)
