"""Runtime settings of the simulator (command line → SimConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SimConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    # Lifetimes are short-able so tests can watch tokens expire.
    esia_token_lifetime_s: int = 3600
    refresh_token_lifetime_s: int = 86400
    auth_code_lifetime_s: int = 300
    provider_token_lifetime_s: int = 86400
    # How long a requested document (справка) stays "pending" before it is ready.
    document_ready_after_s: float = 1.0
    # Signing algorithm of the simulator's ESIA keys: "gost" (GOST R 34.10-2012 via the gost engine) or "rsa".
    esia_key_type: str = "gost"
    admin_token: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch_records: int = 50_000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "info"
    issuer: str = "http://esia-sim.schoolgate.test/"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "sim.db"
