"""Benchmark: contract validation throughput (records/s) for the agent's ingest path.

Target (agent): >= 50,000 records/s on 2 cores. Prints the machine, then records/s for:
compiled fast path (all valid; 1 % invalid with full error collection), 2 worker processes, the reference
jsonschema validator, and the XML and CSV forms.  Usage: .venv/bin/python bench/bench_contracts.py [N]
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import time
import uuid

from schoolgate.esia.contracts import (
    _reference_validator,
    records_to_csv,
    records_to_xml,
    validate,
    validate_records,
)


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.node()} | {model} | {os.cpu_count()} cores | Python {platform.python_version()} | "
        f"{platform.system()} {platform.release()}"
    )


def make_records(n: int, invalid_every: int = 0) -> list[dict]:
    records = []
    for i in range(n):
        record = {
            "record_id": str(uuid.uuid4()),
            "school_id": "school-001",
            "pupil_id": f"p-{i % 900:06d}",
            "subject": "Математика",
            "grade": 1 + i % 5,
            "date": "2026-09-15",
            "teacher_id": "t-042",
        }
        if invalid_every and i % invalid_every == 0:
            record["grade"] = 9
        records.append(record)
    return records


def rate(label: str, n: int, func) -> float:
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    per_s = n / elapsed
    print(f"{label:<58} {per_s:>12,.0f} records/s  ({n:,} in {elapsed:.2f} s; {result} errors)")
    return per_s


def _worker(chunk: list[dict]) -> int:
    return len(validate_records("grade", chunk))


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"machine: {machine()}")
    valid = make_records(n)
    mixed = make_records(n, invalid_every=100)
    validate_records("grade", valid[:10])  # compile once outside the timing
    single = rate(
        "JSON records, compiled fast path, 1 process", n, lambda: len(validate_records("grade", valid))
    )
    rate(
        "JSON records, 1 % invalid (all errors collected), 1 process",
        n,
        lambda: len(validate_records("grade", mixed)),
    )
    with multiprocessing.Pool(2) as pool:
        chunks = [valid[i : i + 10_000] for i in range(0, n, 10_000)]
        pool.map(_worker, chunks[:2])
        double = rate(
            "JSON records, compiled fast path, 2 processes", n, lambda: sum(pool.map(_worker, chunks))
        )
    ref = _reference_validator("grade")
    small = valid[: n // 10]
    rate(
        "JSON records, reference jsonschema (for comparison)",
        len(small),
        lambda: sum(1 for r in small for _ in ref.iter_errors(r)),
    )
    xml = records_to_xml("grade", small)
    rate(
        f"XML document ({len(xml) / 1e6:.1f} MB), parse + validate",
        len(small),
        lambda: len(validate("grade", xml, "xml", max_bytes=len(xml) + 1)),
    )
    csv_bytes = records_to_csv("grade", small)
    rate(
        f"CSV edu-upload ({len(csv_bytes) / 1e6:.1f} MB), parse + validate",
        len(small),
        lambda: len(validate("grade", csv_bytes, "csv", max_bytes=len(csv_bytes) + 1)),
    )
    target = 50_000
    best = max(single, double)
    print(
        f"target {target:,} records/s on 2 cores: {'MET' if best >= target else 'NOT MET'} "
        f"(best {best:,.0f} records/s)"
    )
    return 0 if best >= target else 1


if __name__ == "__main__":
    sys.exit(main())
