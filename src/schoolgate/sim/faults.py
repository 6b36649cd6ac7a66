"""Seeded fault injection: the same seed and the same request sequence give the same faults.

Faults apply to requests whose path starts with one of `paths` (by default everything a client of
the provider talks to; the admin API, /healthz and /metrics are never faulted so tests can always
reset the simulator).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_PATHS = ["/edu/", "/api/edu-upload/", "/aas/", "/rs/", "/services/", "/cabinet/", "/region/", "/ca/"]
NEVER_FAULTED = ("/admin/", "/healthz", "/metrics", "/openapi.yaml")


class FaultConfigError(ValueError):
    """A fault setting is out of range; the message names the field."""


@dataclass
class FaultConfig:
    seed: int = 0
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    rate_429: float = 0.0
    retry_after_s: int = 1
    rate_5xx: float = 0.0
    status_5xx: int = 503
    rate_drop: float = 0.0
    expire_tokens: bool = False
    maintenance_until: float = 0.0
    # The next N faultable requests answer status_5xx, whatever the clock: a test of retries that does not
    # depend on how fast the client reaches the simulator (a time window does, on a busy machine).
    fail_first: int = 0
    paths: list[str] = field(default_factory=lambda: list(DEFAULT_PATHS))

    @classmethod
    def from_json(cls, data: Any) -> FaultConfig:
        if not isinstance(data, dict):
            raise FaultConfigError("body must be a JSON object")
        known = set(cls.__dataclass_fields__) | {"maintenance_s"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultConfigError(f"unknown fields: {', '.join(unknown)}")
        cfg = cls()
        for name in ("seed", "latency_ms", "latency_jitter_ms", "retry_after_s", "status_5xx", "fail_first"):
            if name in data:
                value = data[name]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**31:
                    raise FaultConfigError(f"{name} must be a non-negative integer")
                setattr(cfg, name, value)
        if cfg.latency_ms > 60_000 or cfg.latency_jitter_ms > 60_000:
            raise FaultConfigError("latency_ms and latency_jitter_ms must be at most 60000")
        if cfg.fail_first > 1_000_000:
            raise FaultConfigError("fail_first must be at most 1000000")
        if not 500 <= cfg.status_5xx <= 599:
            raise FaultConfigError("status_5xx must be between 500 and 599")
        for name in ("rate_429", "rate_5xx", "rate_drop"):
            if name in data:
                value = data[name]
                if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                    raise FaultConfigError(f"{name} must be a number between 0 and 1")
                setattr(cfg, name, float(value))
        if "expire_tokens" in data:
            if not isinstance(data["expire_tokens"], bool):
                raise FaultConfigError("expire_tokens must be true or false")
            cfg.expire_tokens = data["expire_tokens"]
        if "maintenance_s" in data:
            value = data["maintenance_s"]
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 86400:
                raise FaultConfigError("maintenance_s must be a number of seconds between 0 and 86400")
            cfg.maintenance_until = time.time() + float(value) if value else 0.0
        if "paths" in data:
            paths = data["paths"]
            if not isinstance(paths, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in paths
            ):
                raise FaultConfigError("paths must be a list of path prefixes starting with '/'")
            cfg.paths = paths
        return cfg

    def to_json(self, fail_first_left: int | None = None) -> dict[str, Any]:
        data = asdict(self)
        data["fail_first_remaining"] = self.fail_first if fail_first_left is None else fail_first_left
        data["maintenance_remaining_s"] = max(0.0, round(self.maintenance_until - time.time(), 3))
        return data


@dataclass
class Decision:
    latency_s: float = 0.0
    kind: str | None = None  # "maintenance" | "429" | "5xx" | "drop" | None
    retry_after_s: int = 0


class FaultInjector:
    def __init__(self) -> None:
        self.config = FaultConfig()
        self.rng = random.Random(0)  # noqa: S311 - determinism is the point
        self.fail_first_left = 0

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - determinism is the point
        self.fail_first_left = config.fail_first

    def state(self) -> dict[str, Any]:
        return self.config.to_json(self.fail_first_left)

    def reset(self) -> None:
        self.configure(FaultConfig())

    def applies(self, path: str) -> bool:
        if path.startswith(NEVER_FAULTED):
            return False
        return any(path.startswith(p) for p in self.config.paths)

    def decide(self, path: str) -> Decision:
        cfg = self.config
        if not self.applies(path):
            return Decision()
        if self.fail_first_left > 0:
            # Decided in the event loop's thread: the count needs no lock.
            self.fail_first_left -= 1
            return Decision(kind="5xx")
        now = time.time()
        if cfg.maintenance_until > now:
            return Decision(
                kind="maintenance", retry_after_s=max(1, int(cfg.maintenance_until - now + 0.999))
            )
        # Always draw the same number of values per request so the sequence depends only on the seed.
        r_lat, r_429, r_5xx, r_drop = (self.rng.random() for _ in range(4))
        latency = (cfg.latency_ms + r_lat * cfg.latency_jitter_ms) / 1000.0
        if r_drop < cfg.rate_drop:
            return Decision(latency, "drop")
        if r_429 < cfg.rate_429:
            return Decision(latency, "429", cfg.retry_after_s)
        if r_5xx < cfg.rate_5xx:
            return Decision(latency, "5xx")
        return Decision(latency)
