"""Fast unit tests of the agent's parts (no processes)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from uuid import uuid4

import pytest

from schoolgate.agent import auth, config, logs
from schoolgate.agent.delivery import CircuitBreaker, batch_key, retry_after_s, select_batch
from schoolgate.agent.store import Outbox, Prepared, QueuedRecord, RecordConflict, prepared


def rec(seq: int, pupil: str, kind: str = "grade") -> QueuedRecord:
    return QueuedRecord(seq, f"id-{seq}", kind, pupil, b"{}", 0.0, 0)


def test_select_batch_never_lets_a_pupil_overtake_itself() -> None:
    window = [
        rec(1, "a"),
        rec(2, "b", "attendance"),
        rec(3, "b"),
        rec(4, "c"),
        rec(5, "a", "attendance"),
        rec(6, "a"),
    ]
    batch = select_batch(window, 100)
    # b's grade (3) waits behind b's attendance (2); a's grade (6) waits behind a's attendance (5).
    assert [r.seq for r in batch] == [1, 4]
    assert [r.seq for r in select_batch(window, 1)] == [1]
    assert select_batch([], 10) == []


def test_batch_key_is_deterministic_for_the_same_record_set() -> None:
    a = [rec(1, "a"), rec(2, "b")]
    assert batch_key("grade", a) == batch_key("grade", list(a))
    assert batch_key("grade", a) != batch_key("grade", a[:1])
    assert batch_key("grade", a) != batch_key("attendance", a)


def test_circuit_breaker_opens_after_failures_and_half_opens() -> None:
    async def run() -> None:
        b = CircuitBreaker(failures=2, reset_s=0.05)
        b.failure()
        assert b.state == "closed"
        b.failure()
        assert b.state == "open" and b.wait_s() > 0
        await asyncio.sleep(0.06)
        assert b.state == "half-open"
        b.failure()  # the probe failed: open again
        assert b.state == "open"
        b.success()
        assert b.state == "closed"

    asyncio.run(run())


def test_retry_after_parsing() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) is None
    from email.utils import formatdate

    assert 8 <= (retry_after_s(formatdate(time.time() + 10, usegmt=True)) or 0) <= 10.5
    assert retry_after_s("soon") is None


def test_hmac_roundtrip_and_window() -> None:
    secret = b"s" * 32
    h = auth.sign(secret, "POST", "/v1/records/grade", b"{}")
    auth.verify(
        secret, "POST", "/v1/records/grade", b"{}", h[auth.TS_HEADER], h[auth.SIG_HEADER], window_s=300
    )
    with pytest.raises(auth.AuthError, match="window"):
        auth.verify(
            secret,
            "POST",
            "/v1/records/grade",
            b"{}",
            h[auth.TS_HEADER],
            h[auth.SIG_HEADER],
            window_s=300,
            now=time.time() + 1000,
        )
    with pytest.raises(auth.AuthError, match="mismatch"):
        auth.verify(
            secret, "POST", "/v1/records/grade", b"{ }", h[auth.TS_HEADER], h[auth.SIG_HEADER], window_s=300
        )


def test_secret_file_must_not_be_readable_by_others(tmp_path: Path) -> None:
    p = tmp_path / "k"
    auth.generate_secret_file(p)
    assert (p.stat().st_mode & 0o777) == 0o600
    assert len(auth.load_secret(p)) == 64
    os.chmod(p, 0o644)
    with pytest.raises(ValueError, match="chmod 0600"):
        auth.load_secret(p)


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    p = tmp_path / "agent.json"
    p.write_text(
        json.dumps(
            {
                "listen": {"port": 99999},
                "outbox": {"partitons": 2},
                "auth": {"mode": "hmac"},
                "delivery": {"enabled": True, "batch_size": "big"},
            }
        )
    )
    with pytest.raises(config.ConfigError) as err:
        config.load(p)
    text = str(err.value)
    assert "outbox.partitons: unknown key (did you mean 'outbox.partitions'?)" in text
    assert "delivery.batch_size: expected int" in text
    p.write_text(
        json.dumps({"listen": {"port": 99999}, "auth": {"mode": "hmac"}, "delivery": {"enabled": True}})
    )
    with pytest.raises(config.ConfigError) as err:
        config.load(p)
    text = str(err.value)
    assert "listen.port" in text and "auth.hmac_secret_file: required" in text
    assert "provider.base_url: required" in text and "esia.client_id: required" in text
    p.write_text(json.dumps({"services": {"max_connections": 0}}))
    with pytest.raises(config.ConfigError, match=r"services\.max_connections: must be between 1 and 512"):
        config.load(p)
    p.write_text("{not json")
    with pytest.raises(config.ConfigError, match="cannot parse"):
        config.load(p)


def test_yaml_config_is_accepted(tmp_path: Path) -> None:
    auth.generate_secret_file(tmp_path / "k")
    p = tmp_path / "agent.yaml"
    p.write_text(
        f"auth:\n  hmac_secret_file: {tmp_path / 'k'}\noutbox:\n  path: {tmp_path / 'o.db'}\n"
        "delivery:\n  enabled: false\n"
    )
    cfg = config.load(p)
    assert cfg.outbox.path == str(tmp_path / "o.db") and cfg.delivery.enabled is False


def test_logs_refuse_personal_data_fields() -> None:
    with pytest.raises(ValueError, match="personal data"):
        logs.event(40, "x", payload={"grade": 5})


def _prepared(n: int, pupil: str = "p1") -> list[Prepared]:
    import uuid

    out = []
    for _ in range(n):
        rid = str(uuid.uuid4())
        out.append(prepared(rid, "grade", pupil, json.dumps({"record_id": rid}).encode()))
    return out


def test_group_commit_shares_commits_and_isolates_a_conflicting_request(tmp_path: Path) -> None:
    async def run() -> None:
        box = Outbox(tmp_path / "o.db", partitions=4)
        box.start(asyncio.get_running_loop())
        first = _prepared(1)
        await box.ingest(first)
        commits_before = box.commits
        conflicting = [prepared(first[0].record_id, "grade", "p1", b'{"changed":1}')]
        batches = [_prepared(3) for _ in range(300)]
        results = await asyncio.gather(
            *(box.ingest(b) for b in batches), box.ingest(conflicting), return_exceptions=True
        )
        assert isinstance(results[-1], RecordConflict)
        assert all(r.accepted == 3 for r in results[:-1])
        # 301 concurrent requests, far fewer fsynced commits.
        assert box.commits - commits_before < 100, box.commits - commits_before
        seqs = sorted(s for r in results[:-1] for s in range(r.first_seq, r.last_seq + 1))
        assert seqs == list(range(seqs[0], seqs[0] + 900))
        assert box.queue_depth == 901
        dup = await box.ingest([first[0]])
        assert (dup.accepted, dup.duplicates) == (0, 1)
        # Survives a reopen (the commit really happened).
        await box.close()
        box2 = Outbox(tmp_path / "o.db", partitions=8)
        assert box2.partitions == 4 and box2.queue_depth == 901
        await box2.close()

    asyncio.run(run())


def test_openapi_documents_every_route(tmp_path: Path) -> None:
    import yaml

    from schoolgate.agent.app import OPENAPI_FILE, build_app
    from schoolgate.agent.esia_login import EsiaLogin
    from schoolgate.agent.metrics import Registry
    from schoolgate.agent.services import Services

    cfg = config.AgentConfig()
    box = Outbox(tmp_path / "o.db")
    app = build_app(
        cfg,
        box,
        Registry(),
        hmac_secret=b"s" * 32,
        delivery=None,
        esia_login=EsiaLogin(cfg, b"s" * 32, None),
        services=Services(cfg, box, None, None, None),
    )
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    with open(OPENAPI_FILE) as fh:
        documented = set(yaml.safe_load(fh)["paths"])
    assert len(routes) >= 15
    assert routes <= documented, routes - documented


V1_RECORDS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    part INTEGER NOT NULL, pupil_id TEXT NOT NULL, digest BLOB NOT NULL, payload BLOB,
    accepted_at REAL NOT NULL, state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    done_at REAL
);
CREATE INDEX records_queue ON records(part, seq) WHERE state = 0;
INSERT INTO meta VALUES ('partitions', '1'), ('schema', '1');
"""


def test_a_schema_1_outbox_is_upgraded_in_place_keeping_order_and_ids(tmp_path: Path) -> None:
    import sqlite3

    from schoolgate.agent.records import parse_batch

    ids = ["0B8E5C1E-5A4C-4B7E-9D0E-6F1C2E3D4A5B", "1b8e5c1e-5a4c-4b7e-9d0e-6f1c2e3d4a5b"]
    with sqlite3.connect(tmp_path / "o.db") as c:
        c.executescript(V1_RECORDS)
        for seq, (rid, state) in enumerate(zip(ids, (0, 1), strict=True), start=7):
            c.execute(
                "INSERT INTO records(seq, record_id, kind, part, pupil_id, digest, payload, accepted_at,"
                " state) VALUES (?, ?, 'grade', 0, 'p1', ?, ?, 1.0, ?)",
                (seq, rid, b"d" * 16, b'{"x":1}', state),
            )

    async def run() -> None:
        box = Outbox(tmp_path / "o.db", partitions=4)
        box.start(asyncio.get_running_loop())
        assert box.partitions == 1 and box.queue_depth == 1
        queued = await box.fetch_queue(0, 10)
        assert [(q.seq, q.record_id, q.payload) for q in queued] == [(7, ids[0].lower(), b'{"x":1}')]
        status = await box.record_status(ids[1].upper())
        assert status is not None and (status["seq"], status["status"]) == (8, "delivered")
        assert await box.record_status("not-a-uuid") is None
        # The migrated id still guards its record: the same id (in upper case) with other content conflicts.
        body = json.dumps({"records": [grade_rec(ids[1].upper())]}).encode()
        with pytest.raises(RecordConflict):
            await box.ingest(parse_batch("grade", body, "application/json", 10, 10**6))
        fresh = await box.ingest([prepared("2B8E5C1E-5A4C-4B7E-9D0E-6F1C2E3D4A5B", "grade", "p1", b"{}")])
        assert fresh.first_seq == 9  # acceptance order continues after the migrated rows
        await box.close()

    asyncio.run(run())
    with sqlite3.connect(tmp_path / "o.db") as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)
        assert c.execute("SELECT typeof(record_id), length(record_id) FROM records LIMIT 1").fetchone() == (
            "blob",
            16,
        )


def grade_rec(record_id: str) -> dict[str, object]:
    return {
        "record_id": record_id,
        "school_id": "school-001",
        "pupil_id": "p1",
        "subject": "Математика",
        "grade": 5,
        "date": "2026-10-01",
        "teacher_id": "t1",
    }


def test_record_ids_are_stored_lower_case_and_a_case_variant_is_the_same_record(tmp_path: Path) -> None:
    from schoolgate.agent.records import parse_batch, parse_single

    rid = "ABCDEF01-5A4C-4B7E-9D0E-6F1C2E3D4A5B"

    async def run() -> None:
        box = Outbox(tmp_path / "o.db", partitions=2)
        box.start(asyncio.get_running_loop())
        first = parse_single("grade", json.dumps(grade_rec(rid)).encode())
        assert first[0].record_id == rid.lower() and rid.lower().encode() in first[0].payload
        # The parser's inlined key/lane/digest are exactly what the store's helpers compute.
        assert first[0] == prepared(rid, "grade", "p1", first[0].payload)
        assert (await box.ingest(first)).accepted == 1
        body = json.dumps({"records": [grade_rec(rid.lower()), grade_rec(str(uuid4()))]}).encode()
        res = await box.ingest(parse_batch("grade", body, "application/json", 10, 10**6))
        assert (res.accepted, res.duplicates, res.duplicate_ids) == (1, 1, [rid.lower()])
        (queued,) = [q for q in await box.fetch_queue(0, 10) + await box.fetch_queue(1, 10) if q.seq == 1]
        assert queued.record_id == rid.lower() and json.loads(queued.payload)["record_id"] == rid.lower()
        await box.close()

    asyncio.run(run())


def test_a_write_lock_held_elsewhere_delays_commits_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    import sqlite3

    async def run() -> None:
        box = Outbox(tmp_path / "o.db", partitions=1)
        box.start(asyncio.get_running_loop())
        cli = sqlite3.connect(tmp_path / "o.db", isolation_level=None)  # like `schoolgate agent dlq replay`
        cli.execute("BEGIN IMMEDIATE")
        push = asyncio.ensure_future(box.ingest(_prepared(2)))
        t0 = time.monotonic()
        await asyncio.sleep(0.3)
        assert time.monotonic() - t0 < 0.5  # the loop kept running while the group waited for the lock
        assert not push.done() and box.queue_depth == 0
        cli.execute("COMMIT")
        result = await asyncio.wait_for(push, 5)
        assert (result.accepted, result.first_seq) == (2, 1)
        cli.close()
        await box.close()

    asyncio.run(run())


def test_batches_parsed_in_a_worker_process_equal_inline_parsing_and_errors_survive_the_trip() -> None:
    import signal

    from schoolgate.agent.parsing import INLINE_BELOW_BYTES, BatchParser
    from schoolgate.agent.records import InputError, parse_batch

    records = [grade_rec(str(uuid4())) for _ in range(400)]
    body = json.dumps({"records": records}).encode()
    assert len(body) >= INLINE_BELOW_BYTES  # big enough to go to the worker
    bad = json.loads(body)
    bad["records"][123]["grade"] = 7
    bad_body = json.dumps(bad).encode()

    async def run() -> None:
        parser = BatchParser(1)
        try:
            got = await parser.parse("grade", body, "application/json", 10_000, 10**7)
            assert got == parse_batch("grade", body, "application/json", 10_000, 10**7)
            with pytest.raises(InputError) as err:
                await parser.parse("grade", bad_body, "application/json", 10_000, 10**7)
            assert err.value.status == 422 and [e.field for e in err.value.errors] == ["records[123].grade"]
            # A worker that dies (OOM killer) fails that request only; the next batch gets a fresh pool.
            pool = parser._get_pool()
            for pid in list(pool._processes):  # type: ignore[union-attr]
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool or the killed worker's error
                await parser.parse("grade", body, "application/json", 10_000, 10**7)
            assert len(await parser.parse("grade", body, "application/json", 10_000, 10**7)) == 400
        finally:
            parser.close()

    asyncio.run(run())


def test_a_failed_commit_fails_its_whole_group_stores_nothing_and_the_outbox_goes_on(tmp_path: Path) -> None:
    import sqlite3

    async def run() -> None:
        box = Outbox(tmp_path / "o.db", partitions=1)
        box.start(asyncio.get_running_loop())
        real_commit = box._commit

        def disk_full() -> None:
            raise sqlite3.OperationalError("database or disk is full")

        box._commit = disk_full  # type: ignore[method-assign]
        failed = await asyncio.gather(*(box.ingest(_prepared(2)) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, sqlite3.OperationalError) for r in failed)
        box._commit = real_commit  # type: ignore[method-assign]
        ok = await box.ingest(_prepared(1))
        assert (ok.accepted, ok.first_seq) == (1, 1) and box.writer_alive and box.queue_depth == 1
        await box.close()

    asyncio.run(run())
