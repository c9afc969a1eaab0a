"""Audit trail benchmark: what recording costs a request, and how long verifying the chain takes.

    python -m benchmarks.audit [--events 20000] [--writers 4] [--database-url URL]

Without ``--database-url`` it uses a fresh SQLite file in a temporary folder (the embedded
default, WAL, ``synchronous=FULL``: one fsync per commit). Prints one table:

* record, 1 writer: one event per transaction, as a request records its read or change.
* record, N writers: the same from N threads at once (they take turns on the head row).
* verify: ``serving.audit.verify`` over the whole chain (read, re-hash, link check).

This is a script to run on demand, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from serving import audit
from serving.audit import AuditActor
from serving.db.session import Database

READER = AuditActor("dr-bernard", "first_reader")


def _record(database: Database, count: int, latencies: list[float], name: str) -> None:
    actor = AuditActor(name, "first_reader")
    for i in range(count):
        start = time.perf_counter()
        with database.session() as session:
            audit.record(session, actor, audit.CASE_READ, case_id=i, details={"via": "bench"})
        latencies.append(time.perf_counter() - start)


def _bulk_fill(database: Database, count: int, batch: int = 1000) -> None:
    """Many events per transaction: only to give ``verify`` a long chain quickly."""
    done = 0
    while done < count:
        with database.session() as session:
            for i in range(min(batch, count - done)):
                audit.record(session, READER, audit.CASE_READ, case_id=done + i)
        done += batch


def run(database_url: str, events: int, writers: int) -> list[tuple[str, str]]:
    database = Database(database_url)
    database.upgrade()
    rows: list[tuple[str, str]] = []
    try:
        per_writer = 300
        latencies: list[float] = []
        start = time.perf_counter()
        _record(database, per_writer, latencies, "solo")
        elapsed = time.perf_counter() - start
        p50 = statistics.median(latencies) * 1000
        p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
        rows.append(
            ("record, 1 writer", f"{per_writer / elapsed:,.0f} events/s, "
             f"p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        )  # fmt: skip

        latencies = []
        threads = [
            threading.Thread(target=_record, args=(database, per_writer, latencies, f"w{w}"))
            for w in range(writers)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
        rows.append(
            (f"record, {writers} writers", f"{writers * per_writer / elapsed:,.0f} events/s, "
             f"p95 {p95:.1f} ms")
        )  # fmt: skip

        _bulk_fill(database, max(0, events - (writers + 1) * per_writer))
        with database.session() as session:
            start = time.perf_counter()
            status = audit.verify(session)
            elapsed = time.perf_counter() - start
        assert status.intact, status.first_break
        rows.append(
            ("verify", f"{status.count:,} events in {elapsed:.2f} s "
             f"({status.count / elapsed:,.0f} events/s), intact")
        )  # fmt: skip
    finally:
        database.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="chain length for verify")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'audit-bench.db'}"
        rows = run(url, args.events, args.writers)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
