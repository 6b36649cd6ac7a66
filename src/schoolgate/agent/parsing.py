"""Batch parsing in worker processes, so validation uses a second core.

A batch of 1,000 records costs the event loop ~5 µs a record to decode, validate (the ESIA core's
compiled contract) and canonicalise, and ~6 µs to insert; the loop is the agent's one serial part.
Python threads cannot share that work (the GIL), so with `limits.parse_workers` > 0 bodies of batches go
to a small process pool and come back as prepared rows (pickled tuples: ~0.3 µs a record to load). Small
bodies (single records, small batches) are always parsed on the loop: the hand-off costs more than it
saves. Off by default in the agent's own config (a 1-CPU host gains nothing: the pipe and the pickling only
add CPU); the agent role turns one worker on for hosts with two or more CPUs (agent_parse_workers: -1, auto),
where bench/bench_agent.py measured batch intake ~15 % higher for ~40 MB more RSS.

Nothing is acknowledged by a worker: it only turns bytes into rows. Storing (and the 2xx after the
fsync) stays with the outbox in the agent process, so durability is exactly as without workers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from . import logs
from .records import parse_batch
from .store import Row

# Below this many body bytes (~200 records) a batch is parsed on the loop.
INLINE_BELOW_BYTES = 32 * 1024


def _watch_parent(parent: int) -> None:
    # A worker must not outlive an agent that was kill -9ed (no cleanup runs then).
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _init_worker(parent: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    from schoolgate.esia import contracts

    for kind in ("grade", "attendance", "performance"):  # compile the validators once, up front
        contracts.is_valid_record(kind, {})


def _parse_rows(kind: str, body: bytes, content_type: str, max_records: int, max_bytes: int) -> list[Row]:
    # Runs in the worker. Plain tuples: they pickle and unpickle 3x faster than the Prepared NamedTuple.
    return [tuple(p) for p in parse_batch(kind, body, content_type, max_records, max_bytes)]  # type: ignore[misc]


class BatchParser:
    """parse_batch() on `workers` processes (0 = always on the event loop)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._restarts = 0

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the agent has threads (outbox commit, executors) and open SQLite handles.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def start(self, timeout: float = 60.0) -> None:
        """Start the workers now (they take ~1 s to import and compile the contracts), not on the first big
        batch. If they cannot start, parse on the event loop: slower, never down."""
        if self.workers <= 0:
            return
        try:
            pool = self._get_pool()
            warmups = [asyncio.wrap_future(pool.submit(os.getpid)) for _ in range(self.workers)]
            await asyncio.wait_for(asyncio.gather(*warmups), timeout)
        except Exception as exc:
            logs.warning("parsing.workers_unavailable", reason=f"{type(exc).__name__}: {exc}"[:300])
            self.close(wait=False)
            self.workers = 0

    async def parse(
        self, kind: str, body: bytes, content_type: str, max_records: int, max_bytes: int
    ) -> list[Row]:
        if self.workers <= 0 or len(body) < INLINE_BELOW_BYTES:
            return parse_batch(kind, body, content_type, max_records, max_bytes)
        pool = self._get_pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, _parse_rows, kind, body, content_type, max_records, max_bytes
            )
        except BrokenProcessPool:
            # A worker died (killed, out of memory). Nothing was stored; the portal gets a 5xx and
            # retries. The next batch gets a fresh pool.
            self._restarts += 1
            logs.warning("parsing.worker_died", restarts=self._restarts)
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self, *, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
