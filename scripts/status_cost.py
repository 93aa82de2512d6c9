"""What the status page costs the coordinator's loop: time to build each answer of the
JSON API and /metrics for one job of N map tasks (all done) and R reduce tasks, and the
size of the job's JSON. The loop builds an answer at most once per 0.5 s per route
while someone is looking, and never when nobody is.

    python scripts/status_cost.py [--maps 10000] [--reduces 100]
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

from pymr import scheduler as sched
from pymr import status
from pymr.report import job_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=10_000)
    parser.add_argument("--reduces", type=int, default=100)
    args = parser.parse_args()
    splits = [{"path": f"/in/{i}", "start": 0, "end": 64 << 20, "compressed": False} for i in range(args.maps)]
    run = sched.new_job("job_cost", "cost", splits, args.reduces)
    for i in range(args.maps):
        picked = sched.assign(run, f"w{i % 50}", float(i))
        assert picked is not None
        sched.finish(run, picked[1].attempt_id, {"counters": {"pymr": {"map input records": 1000}},
                                                 "map_output": {"path": "/x"}}, float(i) + 1)
    active = SimpleNamespace(run=run, started_s=time.monotonic(), committer=SimpleNamespace(output_dir="/out"),
                             spec={}, submitted_unix_s=time.time(), excluded_workers=[])
    timings = {
        "summary (/api/jobs, per job)": lambda: status.job_summary(active),
        "detail (/api/jobs/<id>)": lambda: status.job_detail(active, job_report(active)),
        "metrics (/metrics)": lambda: status.metrics_text([active], [], status.Totals()),
    }
    print(f"one job: {args.maps:,} maps, {args.reduces:,} reduces")
    for name, build in timings.items():
        start = time.perf_counter()
        value = build()
        took = time.perf_counter() - start
        size = len(value) if isinstance(value, str) else len(json.dumps(value))
        print(f"  {name:<30} {took * 1000:8.1f} ms  {size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
