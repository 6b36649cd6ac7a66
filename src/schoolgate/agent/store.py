"""The agent's durable outbox: SQLite in WAL mode with group commit.

Every change goes through ONE write connection. Callers on the event loop
hand the outbox small operations and await a future; a group task takes
everything that queued up while the previous commit was being fsynced, runs
each operation inside its own SAVEPOINT (so one bad request never spoils its
neighbours) and commits them all with one fsync. That is what lets hundreds
of concurrent requests share one durable commit instead of paying one fsync
each.

Where the work runs matters as much as how much there is (measured): the
B-tree inserts of a group run on the event loop thread, and only COMMIT -
writing the WAL pages, the fsync and any checkpoint, one long C call with
the GIL released - runs on a commit thread. A writer thread doing the
inserts itself released and re-took the GIL once per row and queued behind
the loop's request parsing for the interpreter's switch interval each time
(a 1,000-row insert went from 12 ms to 60-110 ms while the loop was busy).

A record is "accepted" only after the commit that holds it returned: the
future is resolved after COMMIT, never before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA_VERSION = 2
# How long a group waits for the write lock held by another process (the CLI's `dlq replay`).
WRITE_LOCK_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per accepted record. seq is the acceptance order; record_id the
-- idempotency key as the 16 bytes of the UUID (a third of the text form's
-- index, -23 % CPU per insert). pupil_id is an opaque id (never a name).
-- payload is the canonical JSON of the record; it is dropped once the
-- provider took it. Rows are never deleted, so the plain rowid (max + 1)
-- is monotonic without AUTOINCREMENT's extra sqlite_sequence write per row.
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    record_id BLOB NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    part INTEGER NOT NULL,
    pupil_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    payload BLOB,
    accepted_at REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS records_queue ON records(part, seq) WHERE state = 0;
-- справки requested for the portal (agent/services.py); oid is an ESIA id, never logged.
CREATE TABLE IF NOT EXISTS documents (
    request_id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    oid TEXT NOT NULL,
    status TEXT NOT NULL,
    document BLOB,
    signature BLOB,
    signature_verified INTEGER,
    error TEXT,
    webhook_status TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- "родитель подписывает документ": signing sessions started for the portal (agent/services.py).
CREATE TABLE IF NOT EXISTS signing_sessions (
    session_id TEXT PRIMARY KEY,
    document_name TEXT NOT NULL,
    document BLOB NOT NULL,
    signer_oid TEXT NOT NULL,
    sign_url TEXT NOT NULL,
    status TEXT NOT NULL,
    cms BLOB,
    signer_certificate TEXT,
    signature_verified INTEGER,
    error TEXT,
    webhook_status TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    http_status INTEGER,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""

QUEUED, DELIVERED, DEAD = 0, 1, 2
STATE_NAMES = {QUEUED: "queued", DELIVERED: "delivered", DEAD: "dead"}


class RecordConflict(Exception):
    """A record_id that is already stored with different content."""

    def __init__(self, record_id: str, index: int) -> None:
        super().__init__(f"record_id {record_id} was already accepted with different content")
        self.record_id = record_id
        self.index = index


class StoreClosed(Exception):
    pass


class Prepared(NamedTuple):
    """A validated record ready to be stored (built by records.py, one tuple: no per-record object)."""

    record_id: str  # the UUID in canonical (lower-case) text form
    kind: str
    pupil_id: str
    payload: bytes  # canonical JSON, sent to the provider verbatim
    digest: bytes  # blake2b-128 of payload: the same record_id with other content is a conflict
    key: bytes  # record_key(record_id)
    lane: int  # pupil_lane(pupil_id); the partition is lane % partitions
    # key and lane are computed where the record is parsed (a worker process for big batches), so the
    # event loop only builds the row.


# Prepared's layout as a plain tuple: what parsing workers send back (a NamedTuple unpickles through one
# Python-level constructor call per record: 3x the cost of a tuple, measured).
Row = tuple[str, str, str, bytes, bytes, bytes, int]


def prepared(record_id: str, kind: str, pupil_id: str, payload: bytes) -> Prepared:
    rid = record_id.lower()
    return Prepared(
        rid, kind, pupil_id, payload, payload_digest(payload), record_key(rid), pupil_lane(pupil_id)
    )


def pupil_lane(pupil_id: str) -> int:
    # Stable across processes and restarts (unlike hash()), so a pupil always maps to the same partition.
    return zlib.crc32(pupil_id.encode())


def payload_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def record_key(record_id: str) -> bytes:
    """The 16 bytes of a UUID record_id (the contract guarantees the 8-4-4-4-12 hex form).
    Raises ValueError for anything else."""
    key = bytes.fromhex(record_id.replace("-", ""))
    if len(key) != 16:
        raise ValueError(f"not a UUID: {len(key)} bytes")
    return key


def record_id_text(key: bytes) -> str:
    h = key.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    duplicate_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class QueuedRecord:
    seq: int
    record_id: str
    kind: str
    pupil_id: str
    payload: bytes
    accepted_at: float
    attempts: int


def partition_of(pupil_id: str, partitions: int) -> int:
    return pupil_lane(pupil_id) % partitions


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def open_database(path: str | Path, partitions: int) -> tuple[sqlite3.Connection, int]:
    """Create or open the outbox; returns (connection, partitions actually used).

    The partition count is fixed when the database is created: records already
    queued were assigned to a lane, and changing the count would let a pupil's
    later records overtake earlier ones.
    """
    path = str(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise RuntimeError(f"outbox {path}: could not switch SQLite to WAL mode (got {mode!r})")
    # FULL: a commit is fsynced before we answer 2xx, so an accepted record survives power loss too.
    conn.execute("PRAGMA synchronous=FULL")
    # Checkpoint every 16,000 pages (64 MB of WAL) rather than 4,000: random record_id keys dirty index pages
    # all over the file, and a rarer checkpoint writes each of them back once for more commits (measured at
    # 300k-600k rows: −25 % CPU per COMMIT, −8 % per insert). Crash recovery replays at most that much WAL.
    conn.execute("PRAGMA wal_autocheckpoint=16000")
    # Random record_id keys touch a different index page per row: a 16 MB page cache keeps the hot part of
    # the index in memory (measured: −7% CPU per row at 200k rows) and still leaves RSS far below 200 MB.
    conn.execute("PRAGMA cache_size=-16384")
    if _schema_version(conn) == 1:
        _migrate_v1(conn, path)
    conn.executescript(SCHEMA)
    row = conn.execute("SELECT value FROM meta WHERE key='partitions'").fetchone()
    if row is None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO meta(key, value) VALUES('partitions', ?)", (str(partitions),))
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
        used = partitions
    else:
        used = int(row[0])
    return conn, used


def _schema_version(conn: sqlite3.Connection) -> int | None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    return int(row[0]) if row else None


def _migrate_v1(conn: sqlite3.Connection, path: str) -> None:
    """Schema 1 (text record_id, AUTOINCREMENT) → 2, in one transaction: all or nothing, seqs kept."""
    records_ddl = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS records") :]
    records_ddl = records_ddl[: records_ddl.index(";") + 1]
    conn.create_function("sg_record_key", 1, lambda rid: record_key(str(rid).lower()), deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DROP INDEX IF EXISTS records_queue")
        conn.execute("ALTER TABLE records RENAME TO records_v1")
        conn.execute(records_ddl)
        conn.execute(
            "INSERT INTO records(seq, record_id, kind, part, pupil_id, digest, payload, accepted_at, state,"
            " attempts, done_at) SELECT seq, sg_record_key(record_id), kind, part, pupil_id, digest, payload,"
            " accepted_at, state, attempts, done_at FROM records_v1 ORDER BY seq"
        )
        conn.execute("DROP TABLE records_v1")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
        conn.execute("COMMIT")
    except Exception as exc:
        conn.execute("ROLLBACK")
        raise RuntimeError(f"outbox {path}: upgrading the schema from version 1 failed: {exc}") from exc


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    rows: int
    insert_rows: list[tuple[Any, ...]] | None = None  # set for ingest ops (eligible for the merged fast path)


class Outbox:
    """Durable queue of accepted records: one write connection, group commit."""

    def __init__(
        self,
        path: str | Path,
        *,
        partitions: int = 4,
        group_max_rows: int = 50_000,
        group_linger_s: float = 0.0,
    ) -> None:
        self.path = str(path)
        self._conn, self.partitions = open_database(self.path, partitions)
        # The group task polls for the write lock (asyncio.sleep) instead of blocking the loop in SQLite's
        # busy handler while the CLI holds it.
        self._conn.execute("PRAGMA busy_timeout=0")
        self._group_max_rows = group_max_rows
        self._linger = group_linger_s
        self._pending: list[_Op] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._closed = False
        self.writer_alive = False
        # Observability: kept here so /metrics never has to scan the table.
        self.queue_depth = self._count_queued()
        self.commits = 0
        self.committed_ops = 0
        self.last_commit_s = 0.0
        self.listeners: list[
            Callable[[int], None]
        ] = []  # called (on the loop) with a partition that got work

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = _connect(self.path)
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-commit")
        self._task = loop.create_task(self._groups(), name="outbox-groups")
        self.writer_alive = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task  # commits what was already submitted, then stops
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
        self._conn.close()

    def _count_queued(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM records WHERE state = 0").fetchone()[0])

    # -- group commit ---------------------------------------------------------------------------------
    async def _groups(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if self._linger > 0:
                    await asyncio.sleep(self._linger)
                try:
                    await self._begin()
                except Exception as exc:  # locked too long / I/O error: nobody of this group was stored
                    ops, self._pending = self._pending, []
                    _resolve_all([(op, None, exc) for op in ops])
                    continue
                ops = self._take()
                try:
                    results = self._apply(ops)  # inserts on this thread: no GIL hand-off per row
                    await loop.run_in_executor(self._committer, self._commit)
                    self.commits += 1
                    self.committed_ops += len(ops)
                except Exception as exc:  # the group itself failed (disk full, I/O error): nobody was stored
                    with contextlib.suppress(Exception):
                        self._conn.execute("ROLLBACK")
                    results = [(op, None, exc) for op in ops]
                _resolve_all(results)
        finally:
            self.writer_alive = False
            ops, self._pending = self._pending, []
            _resolve_all([(op, None, StoreClosed("the outbox writer stopped")) for op in ops])

    async def _begin(self) -> None:
        deadline = time.monotonic() + WRITE_LOCK_TIMEOUT_S
        delay = 0.001
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _take(self) -> list[_Op]:
        pending = self._pending
        rows = 0
        for n, op in enumerate(pending):
            rows += op.rows
            if rows >= self._group_max_rows:
                self._pending = pending[n + 1 :]
                return pending[: n + 1]
        self._pending = []
        return pending

    def _commit(self) -> None:
        t0 = time.perf_counter()
        self._conn.execute("COMMIT")
        self.last_commit_s = time.perf_counter() - t0

    def _apply(self, ops: list[_Op]) -> list[tuple[_Op, Any, BaseException | None]]:
        conn = self._conn
        results: list[tuple[_Op, Any, BaseException | None]] = []
        ingests = [op for op in ops if op.insert_rows is not None]
        rest = [op for op in ops if op.insert_rows is None]
        if len(ingests) > 1 and _merged_insert(conn, ingests, results):
            ingests = []
        for op in ingests + rest:
            conn.execute("SAVEPOINT op")
            try:
                value = op.fn(conn)
            except Exception as exc:  # the op's own failure: undo only its part of the group
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((op, None, exc))
            else:
                conn.execute("RELEASE op")
                results.append((op, value, None))
        return results

    async def _submit(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        rows: int = 1,
        insert_rows: list[tuple[Any, ...]] | None = None,
    ) -> Any:
        if self._closed or not self.writer_alive:
            raise StoreClosed("the outbox writer is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(fn, fut, rows, insert_rows))
        self._wake.set()
        return await fut

    # -- ingest ---------------------------------------------------------------------------------------
    async def ingest(self, records: Sequence[Row]) -> IngestResult:
        """Store records durably (all or nothing). Duplicates with the same content are acknowledged;
        a known record_id with different content raises RecordConflict and stores nothing."""
        partitions = self.partitions
        now = time.time()
        rows = [(r[5], r[1], r[6] % partitions, r[2], r[4], r[3], now) for r in records]
        result: IngestResult = await self._submit(
            lambda c: _insert_records(c, rows), rows=len(rows), insert_rows=rows
        )
        if result.accepted:
            self.queue_depth += result.accepted
            touched = {row[2] for row in rows}
            for listener in self.listeners:
                for part in touched:
                    listener(part)
        return result

    # -- delivery bookkeeping --------------------------------------------------------------------------
    async def mark_delivered(self, seqs: Sequence[int]) -> int:
        now = time.time()

        def op(c: sqlite3.Connection) -> int:
            cur = c.executemany(
                "UPDATE records SET state = 1, done_at = ?, payload = NULL WHERE seq = ? AND state = 0",
                [(now, s) for s in seqs],
            )
            return cur.rowcount

        n = await self._submit(op, rows=len(seqs))
        self.queue_depth -= n
        return n

    async def dead_letter(self, items: Sequence[tuple[int, str, str, int | None, str, str]]) -> int:
        """items: (seq, record_id, kind, http_status, code, message)."""
        now = time.time()

        def op(c: sqlite3.Connection) -> int:
            cur = c.executemany(
                "UPDATE records SET state = 2, done_at = ? WHERE seq = ? AND state = 0",
                [(now, it[0]) for it in items],
            )
            c.executemany(
                "INSERT OR REPLACE INTO dead_letters"
                "(seq, record_id, kind, http_status, code, message, dead_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*it, now) for it in items],
            )
            return cur.rowcount

        n = await self._submit(op, rows=len(items))
        self.queue_depth -= n
        return n

    async def bump_attempts(self, seqs: Sequence[int]) -> None:
        await self._submit(
            lambda c: c.executemany(
                "UPDATE records SET attempts = attempts + 1 WHERE seq = ?", [(s,) for s in seqs]
            ),
            rows=len(seqs),
        )

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a small write in the next group commit (on the event loop thread: keep it short)."""
        return await self._submit(fn, rows=1)

    async def ping(self) -> None:
        """A no-op through the group commit: proves the writer and a commit work (readiness)."""
        await self._submit(lambda c: None, rows=0)

    # -- reads (a separate connection; WAL readers never block the writer) ---------------------------
    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self._reader is not None
        with self._reader_lock:
            return fn(self._reader)

    async def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self._read, fn)

    async def fetch_queue(self, part: int, limit: int) -> list[QueuedRecord]:
        return await self.read(lambda c: fetch_queue(c, part, limit))

    async def record_status(self, record_id: str) -> dict[str, Any] | None:
        return await self.read(lambda c: record_status(c, record_id))

    async def oldest_queued_age(self) -> float:
        return await self.read(lambda c: oldest_queued_age(c, self.partitions))

    async def recount(self) -> int:
        """Re-read the queue depth (the CLI may have replayed dead letters behind our back)."""
        n = await self.read(
            lambda c: int(c.execute("SELECT COUNT(*) FROM records WHERE state = 0").fetchone()[0])
        )
        self.queue_depth = n
        return n


def _resolve_all(results: Iterable[tuple[_Op, Any, BaseException | None]]) -> None:
    for op, value, exc in results:
        if op.future.done():  # the request was cancelled (client went away); the data is still committed
            continue
        if exc is not None:
            op.future.set_exception(exc)
        else:
            op.future.set_result(value)


_INSERT = (
    "INSERT INTO records(record_id, kind, part, pupil_id, digest, payload, accepted_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(record_id) DO NOTHING"
)


def _last_seq(c: sqlite3.Connection) -> int:
    return int(c.execute("SELECT max(seq) FROM records").fetchone()[0] or 0)


def _merged_insert(
    conn: sqlite3.Connection, ops: list[_Op], results: list[tuple[_Op, Any, BaseException | None]]
) -> bool:
    """Many concurrent pushes of new records: one executemany for all of them. If any id was known
    already, undo and let the per-op path sort out duplicates and conflicts."""
    conn.execute("SAVEPOINT merged")
    seq = _last_seq(conn)
    total = sum(len(op.insert_rows or ()) for op in ops)
    cur = conn.executemany(_INSERT, [row for op in ops for row in (op.insert_rows or ())])
    if cur.rowcount != total:
        conn.execute("ROLLBACK TO merged")
        conn.execute("RELEASE merged")
        return False
    conn.execute("RELEASE merged")
    for op in ops:
        n = len(op.insert_rows or ())
        res = IngestResult(accepted=n)
        if n:
            res.first_seq, res.last_seq = seq + 1, seq + n
        seq += n
        results.append((op, res, None))
    return True


def _insert_records(c: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> IngestResult:
    result = IngestResult()
    base = _last_seq(c)
    cur = c.executemany(_INSERT, rows)
    if cur.rowcount == len(rows):  # fast path: all new, seqs are base+1 .. base+n in request order
        result.accepted = len(rows)
        if rows:
            result.first_seq, result.last_seq = base + 1, base + len(rows)
        return result
    # Some ids were known already: redo row by row (inside this op's savepoint) to tell which.
    c.execute("ROLLBACK TO op")
    for index, row in enumerate(rows):
        cur = c.execute(_INSERT, row)
        if cur.rowcount == 1:
            result.accepted += 1
            seq = cur.lastrowid
            if result.first_seq is None:
                result.first_seq = seq
            result.last_seq = seq
            continue
        known = c.execute("SELECT digest FROM records WHERE record_id = ?", (row[0],)).fetchone()
        if known is None or bytes(known[0]) != row[4]:
            raise RecordConflict(record_id_text(row[0]), index)
        result.duplicates += 1
        result.duplicate_ids.append(record_id_text(row[0]))
    return result


def fetch_queue(c: sqlite3.Connection, part: int, limit: int) -> list[QueuedRecord]:
    cur = c.execute(
        "SELECT seq, record_id, kind, pupil_id, payload, accepted_at, attempts FROM records"
        " WHERE part = ? AND state = 0 ORDER BY seq LIMIT ?",
        (part, limit),
    )
    return [QueuedRecord(r[0], record_id_text(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in cur]


def record_status(c: sqlite3.Connection, record_id: str) -> dict[str, Any] | None:
    try:
        key = record_key(record_id)
    except ValueError:
        return None  # not a UUID: never accepted here
    row = c.execute(
        "SELECT seq, kind, state, accepted_at, done_at, attempts FROM records WHERE record_id = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    out: dict[str, Any] = {
        "record_id": record_id_text(key),
        "seq": row[0],
        "kind": row[1],
        "status": STATE_NAMES.get(row[2], str(row[2])),
        "accepted_at": row[3],
        "done_at": row[4],
        "attempts": row[5],
    }
    if row[2] == DEAD:
        dl = c.execute(
            "SELECT http_status, code, message FROM dead_letters WHERE seq = ?", (row[0],)
        ).fetchone()
        if dl:
            out["provider_status"], out["provider_code"], out["provider_message"] = dl
    return out


def oldest_queued_age(c: sqlite3.Connection, partitions: int) -> float:
    oldest: float | None = None
    for part in range(partitions):
        row = c.execute(
            "SELECT accepted_at FROM records WHERE part = ? AND state = 0 ORDER BY seq LIMIT 1", (part,)
        ).fetchone()
        if row and (oldest is None or row[0] < oldest):
            oldest = row[0]
    return 0.0 if oldest is None else max(0.0, time.time() - oldest)


# -- synchronous helpers for the CLI (a separate process; WAL lets it read while the agent runs) ----------
def cli_status(path: str) -> dict[str, Any]:
    c = _connect(path, readonly=True)
    try:
        counts = {
            STATE_NAMES[s]: n for s, n in c.execute("SELECT state, COUNT(*) FROM records GROUP BY state")
        }
        parts = int(c.execute("SELECT value FROM meta WHERE key='partitions'").fetchone()[0])
        return {
            "database": path,
            "queued": counts.get("queued", 0),
            "delivered": counts.get("delivered", 0),
            "dead": counts.get("dead", 0),
            "oldest_queued_age_s": round(oldest_queued_age(c, parts), 3),
            "partitions": parts,
        }
    finally:
        c.close()


def cli_dlq_list(path: str, limit: int) -> list[dict[str, Any]]:
    c = _connect(path, readonly=True)
    try:
        cur = c.execute(
            "SELECT seq, record_id, kind, http_status, code, message, dead_at FROM dead_letters"
            " ORDER BY seq LIMIT ?",
            (limit,),
        )
        keys = ("seq", "record_id", "kind", "http_status", "code", "message", "dead_at")
        return [dict(zip(keys, row, strict=True)) for row in cur]
    finally:
        c.close()


def cli_dlq_replay(path: str, record_ids: Sequence[str] | None) -> int:
    """Put dead letters back in the queue (all, or the given ids). They keep their original place in
    acceptance order."""
    c = _connect(path)
    try:
        c.execute("BEGIN IMMEDIATE")
        if record_ids:
            seqs = [
                r[0]
                for rid in record_ids
                for r in c.execute("SELECT seq FROM dead_letters WHERE record_id = ?", (rid.lower(),))
            ]
        else:
            seqs = [r[0] for r in c.execute("SELECT seq FROM dead_letters")]
        c.executemany(
            "UPDATE records SET state = 0, attempts = 0, done_at = NULL WHERE seq = ? AND state = 2",
            [(s,) for s in seqs],
        )
        c.executemany("DELETE FROM dead_letters WHERE seq = ?", [(s,) for s in seqs])
        c.execute("COMMIT")
        return len(seqs)
    finally:
        c.close()
