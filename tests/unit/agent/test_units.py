"""Fast unit tests of the agent's parts (no processes)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from schoolgate.agent import auth, config, logs
from schoolgate.agent.delivery import CircuitBreaker, batch_key, retry_after_s, select_batch
from schoolgate.agent.store import Outbox, Prepared, QueuedRecord, RecordConflict


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
        out.append(Prepared(rid, "grade", pupil, json.dumps({"record_id": rid}).encode()))
    return out


def test_group_commit_shares_commits_and_isolates_a_conflicting_request(tmp_path: Path) -> None:
    async def run() -> None:
        box = Outbox(tmp_path / "o.db", partitions=4)
        box.start(asyncio.get_running_loop())
        first = _prepared(1)
        await box.ingest(first)
        commits_before = box.commits
        conflicting = [Prepared(first[0].record_id, "grade", "p1", b'{"changed":1}')]
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
