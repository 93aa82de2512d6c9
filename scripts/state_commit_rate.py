"""How fast the coordinator's state store records task commits, one per transaction or batched.

Every ``commit_tasks`` call is one durable transaction (WAL, ``synchronous=FULL``: one
fsync of the WAL), so the batch size decides how many commits share an fsync. Also
times opening a store that holds a full history of ended jobs (``PRAGMA quick_check``
runs at every open), since that is part of what a restart costs.

    python scripts/state_commit_rate.py [--dir DIR] [--seconds 3]

``--dir`` should be on the disk a real state dir would use (the default is a temporary
folder, often tmpfs or the system disk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pymr.state import KEEP_JOBS, StateStore, TaskCommit  # noqa: E402


def task(index: int) -> TaskCommit:
    result = {"map_output": {"path": f"/var/lib/pymr/data/job/map-{index}.arrow", "host": "10.0.0.7",
                             "address": "tcp://10.0.0.7:41234"},
              "partition_rows": [100] * 8, "counters": {"pymr": {"map input records": 1000, "map output records": 800}}}
    return TaskCommit("map", index, f"job-m{index}-0", "worker-7", result)


def commit_rate(folder: str, batch: int, seconds: float) -> float:
    with StateStore(folder) as store:
        job_id = f"job_batch_{batch}"
        store.add_job(job_id, {"name": "bench"}, b"code", "client", time.time())
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            store.commit_tasks(job_id, [task(done + i) for i in range(batch)])
            done += batch
        return done / (time.perf_counter() - started)


def open_time(folder: str) -> float:
    with StateStore(folder) as store:
        report = {"counters": {"pymr": {f"counter {i}": i for i in range(20)}}, "phases": {}, "state": "succeeded"}
        for i in range(KEEP_JOBS):
            store.add_job(f"old_{i}", {"name": "old", "inputs": ["/data/in"] * 5}, b"c" * 20_000, "client", i)
            store.end_job(f"old_{i}", "succeeded", None, report)
    started = time.perf_counter()
    StateStore(folder).close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where to create the test stores")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per batch size")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pymr-state-bench-", dir=args.dir)
    try:
        print(f"state stores in {root} (sqlite3 {sqlite3.sqlite_version})")
        for batch in (1, 10, 100, 1000):
            rate = commit_rate(os.path.join(root, f"batch-{batch}"), batch, args.seconds)
            print(f"batch {batch:>4}: {rate:>10,.0f} task commits/s  ({rate / batch:,.0f} transactions/s)")
        print(f"open with {KEEP_JOBS} ended jobs: {open_time(os.path.join(root, 'history')) * 1000:.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
