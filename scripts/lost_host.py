#!/usr/bin/env python
"""Time to finish a job when a worker host dies during its reduces, over the no-fault time.

Runs the same job twice on a fresh loopback cluster of real processes (a coordinator and
three workers that fetch map outputs from each other over ZeroMQ, as on three hosts):
once without a fault, once with a worker killed (SIGKILL) as soon as the reduces are
running. The job is tests/jobs/slow_reduce.py over one book: each reduce waits
--reduce-delay seconds before it reads its input, as a reduce with real work would.

    python scripts/lost_host.py [--reduce-delay 3] [--worker-timeout 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cluster import Cluster  # noqa: E402

BOOK = ROOT / "sample_data" / "books" / "kjv-pentateuch.txt"
JOB = ROOT / "tests" / "jobs" / "slow_reduce.py"


def run(folder: Path, reduce_delay: float, worker_timeout: float, kill: bool) -> float:
    cluster = Cluster(folder, workers=3, worker_timeout_s=worker_timeout)
    try:
        for name in cluster.workers:
            cluster.shuffle_address(name)
        markers = folder / "markers"
        markers.mkdir()
        started = time.monotonic()
        submit = cluster.popen_submit(JOB, BOOK, "-o", folder / "out", "-r", "3", "--split-size", "128K",
                                      "--marker-dir", markers, "--reduce-delay", str(reduce_delay))
        if kill:
            while len(list(markers.iterdir())) < 3 and submit.poll() is None:
                time.sleep(0.02)
            cluster.kill_worker("w2")
        _, stderr = submit.communicate(timeout=600)
        if submit.returncode != 0:
            raise SystemExit(f"the job failed:\n{stderr}")
        return time.monotonic() - started
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduce-delay", type=float, default=3.0)
    parser.add_argument("--worker-timeout", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pymr-lost-host-") as tmp:
        (Path(tmp) / "clean").mkdir()
        (Path(tmp) / "fault").mkdir()
        clean = run(Path(tmp) / "clean", args.reduce_delay, args.worker_timeout, kill=False)
        fault = run(Path(tmp) / "fault", args.reduce_delay, args.worker_timeout, kill=True)
    print(json.dumps({"no_fault_s": round(clean, 2), "host_lost_during_reduces_s": round(fault, 2),
                      "ratio": round(fault / clean, 2), "reduce_delay_s": args.reduce_delay,
                      "worker_timeout_s": args.worker_timeout}, indent=1))


if __name__ == "__main__":
    main()
