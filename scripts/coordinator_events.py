#!/usr/bin/env python
"""The coordinator's own cost per event, without sockets' or fake workers' noise.

A real ``Coordinator`` (scheduler, validation, state store: everything but the socket
sends, which are counted instead) is driven through the entry its loop calls for each
message (``_handle_frames``) and its timers and dispatch, by W registered workers that
finish every task the moment it is assigned. It reports task events (assignments plus
completions) per second of coordinator CPU, with and without ``--state-dir``, and the
coordinator's memory at the end of the map phase. No timing is asserted anywhere.

    python scripts/coordinator_events.py --maps 200000 --reduces 5000 --workers 2000
    python scripts/coordinator_events.py --maps 10000 --reduces 10 --workers 100 --compare-state
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pymr import protocol as proto  # noqa: E402
from pymr.coordinator import Coordinator  # noqa: E402


def frames(identity: bytes, kind: str, body: dict, *blobs: bytes) -> list[bytes]:
    return [identity, *proto.pack(kind, body, *blobs)]


def measure(maps: int, reduces: int, workers: int, state: bool) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="pymr-events-"))
    data = folder / "input.txt"
    with open(data, "wb") as f:
        f.truncate(maps * 1024)  # sparse: planned into `maps` splits, never read
    coordinator = Coordinator("tcp://127.0.0.1:*", state_dir=str(folder / "state") if state else None)
    sent: list[tuple[bytes, str, dict]] = []

    def record(identity: bytes, kind: str, body: dict | None = None, *blobs: bytes) -> bool:
        if kind == proto.ASSIGN:
            sent.append((identity, kind, body))
        return True
    coordinator._send = record  # every send "succeeds"; the ASSIGNs are kept to answer them
    ids = [f"w{i:05d}".encode() for i in range(workers)]
    for identity in ids:
        coordinator._handle_frames(frames(identity, proto.REGISTER, {
            "slots": 1, "versions": proto.versions(), "host": "127.0.0.1", "shuffle_address": "tcp://127.0.0.1:9",
            "incarnation": "x", "running": [], "seq": 0}))
    spec = {"name": "Events", "inputs": [str(data)], "output": str(folder / "out"), "reducers": reduces,
            "has_reducer": True, "split_size": 1024, "output_format": "text"}
    coordinator._handle_frames(frames(b"client", proto.SUBMIT, {"spec": spec, "request_id": "r",
                                                                 "versions": proto.versions()}, b"code"))
    while not coordinator.jobs:  # planned on the background thread
        time.sleep(0.01)
        coordinator._run_completions()
    run = next(iter(coordinator.jobs.values())).run
    cpu0, wall0 = time.process_time(), time.perf_counter()
    events = 0
    rss_after_maps = None
    while coordinator.jobs and next(iter(coordinator.jobs.values())).ended_s is None:
        coordinator._dispatch_wanted = True
        coordinator._dispatch()
        batch, sent[:] = list(sent), []
        events += len(batch)
        for identity, _, body in batch:
            result = ({"map_output": {"path": f"/d/{body['job_id']}/{body['attempt_id']}/map.arrow",
                                      "host": "127.0.0.1", "address": "tcp://127.0.0.1:9"},
                       "counters": {"pymr": {"map input records": 1, "map output records": 1}}, "max_rss_kb": 1}
                      if body["kind"] == "map" else {"files": [], "counters": {"pymr": {"reduce input records": 1}}})
            coordinator._handle_frames(frames(identity, proto.TASK_DONE, {
                "job_id": body["job_id"], "attempt_id": body["attempt_id"], "result": result}))
            events += 1
        coordinator._run_completions()
        coordinator._run_timers()
        if rss_after_maps is None and run.maps_done():
            rss_after_maps = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    coordinator.stop()
    coordinator._shutdown()
    return {"maps": maps, "reduces": reduces, "workers": workers, "state_dir": state, "events": events,
            "cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "events_per_cpu_s": round(events / cpu),
            "peak_rss_mib": round(rss_after_maps or 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=10_000)
    parser.add_argument("--reduces", type=int, default=100)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--state-dir", action="store_true")
    parser.add_argument("--compare-state", action="store_true", help="run without and with --state-dir, 3 times each")
    args = parser.parse_args()
    if not args.compare_state:
        print(json.dumps(measure(args.maps, args.reduces, args.workers, args.state_dir), indent=1))
        return
    rows = [measure(args.maps, args.reduces, args.workers, state) for _ in range(3) for state in (False, True)]
    cpu = {state: sorted(r["cpu_s"] for r in rows if r["state_dir"] == state)[1] for state in (False, True)}
    print(json.dumps({"runs": rows, "median_cpu_s": {"memory only": cpu[False], "state dir": cpu[True]},
                      "state_dir_cost": f"{100 * (cpu[True] / cpu[False] - 1):+.0f}%"}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
