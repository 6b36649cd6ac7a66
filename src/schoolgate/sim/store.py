"""SQLite state of the provider simulator.

One connection, used from the event loop thread only (aiohttp runs handlers on
one thread), WAL journal so readers never block the writer and the state
survives restarts. Every multi-row change runs in one transaction so nothing
is ever half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS dossiers (
    dossier_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    documents TEXT NOT NULL,
    access_code_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    service_id TEXT PRIMARY KEY,
    dossier_id TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    api_url TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    certificate_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS provider_tokens (
    token_id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at REAL NOT NULL,
    revoked_at REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_codes (
    code TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    oid TEXT NOT NULL,
    scope TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pending_logins (
    login_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    access_type TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    oid TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    idempotency_key TEXT NOT NULL,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    batch_id TEXT NOT NULL UNIQUE,
    response TEXT NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    table_name TEXT NOT NULL,
    client_id TEXT NOT NULL,
    rows INTEGER NOT NULL,
    body_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS doc_requests (
    request_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    service_code TEXT NOT NULL,
    oid TEXT NOT NULL,
    status TEXT NOT NULL,
    ready_at REAL NOT NULL,
    document BLOB,
    signature BLOB,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_sessions (
    session_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    signer_oid TEXT NOT NULL,
    document_name TEXT NOT NULL,
    document BLOB NOT NULL,
    callback_url TEXT,
    status TEXT NOT NULL,
    cms BLOB,
    signer_certificate TEXT,
    callback_status TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS issued_certificates (
    serial TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    not_after TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


class Store:
    """Thin typed wrapper around the simulator's SQLite database."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one batch is one transaction.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        os.chmod(self.path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)

        # A second connection used only by the intake's writer thread: SQLite releases the GIL while it
        # writes, so batches are stored on one core while the event loop parses the next on the other.
        self.writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.writer.execute("PRAGMA synchronous=NORMAL")
        self.writer.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        self.writer.close()
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return self.db.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.tx() as db:
            return db.execute(sql, params).rowcount

    # -- key/value (simulator settings that must survive restarts) ------------------------------
    def get_kv(self, key: str, default: Any = None) -> Any:
        row = self.one("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(row["value"]) if row else default

    def set_kv(self, key: str, value: Any) -> None:
        self.execute(
            "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    # -- intake -----------------------------------------------------------------------------------
    def find_batch(self, client_id: str, key: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM batches WHERE client_id = ? AND idempotency_key = ?", (client_id, key))

    def mark_replay(self, client_id: str, key: str) -> None:
        self.execute(
            "UPDATE batches SET replays = replays + 1 WHERE client_id = ? AND idempotency_key = ?",
            (client_id, key),
        )

    def store_batch(
        self,
        *,
        client_id: str,
        key: str,
        kind: str,
        body_hash: str,
        batch_id: str,
        rows: Sequence[tuple[str, str, str, str, str, str, float]],
        response_for: Callable[[int], dict[str, Any]],
    ) -> tuple[str, dict[str, Any]]:
        """Store a batch exactly once, in ONE transaction on the writer connection (call it from the single
        writer thread). record_id is the primary key, so a stored record is never stored twice.

        Returns ("stored", response), ("replayed", original response) when the key was stored meanwhile
        by a concurrent request with the same body, or ("conflict", original response) for another body.
        """
        db = self.writer
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT body_hash, response FROM batches WHERE client_id = ? AND idempotency_key = ?",
                (client_id, key),
            ).fetchone()
            if row is not None:
                outcome = "replayed" if row[0] == body_hash else "conflict"
                if outcome == "replayed":
                    db.execute(
                        "UPDATE batches SET replays = replays + 1"
                        " WHERE client_id = ? AND idempotency_key = ?",
                        (client_id, key),
                    )
                db.execute("COMMIT")
                return outcome, json.loads(row[1])
            cur = db.executemany(
                "INSERT OR IGNORE INTO records(record_id, kind, client_id, batch_id, school_id, payload,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            response = response_for(max(cur.rowcount, 0))
            db.execute(
                "INSERT INTO batches(idempotency_key, client_id, kind, body_hash, batch_id, response,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, client_id, kind, body_hash, batch_id, json.dumps(response), time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return "stored", response

    def intake_stats(self) -> dict[str, Any]:
        by_kind = {
            r["kind"]: r["n"] for r in self.all("SELECT kind, COUNT(*) AS n FROM records GROUP BY kind")
        }
        b = self.one("SELECT COUNT(*) AS n, COALESCE(SUM(replays), 0) AS r FROM batches")
        u = self.one("SELECT COUNT(*) AS n, COALESCE(SUM(rows), 0) AS r FROM uploads")
        return {
            "records": by_kind,
            "records_total": sum(by_kind.values()),
            "batches": b["n"] if b else 0,
            "replays": b["r"] if b else 0,
            "uploads": u["n"] if u else 0,
            "upload_rows": u["r"] if u else 0,
        }
