#!/usr/bin/env python
"""Measure the coordinator at cluster size: a real `pymr coordinator` process (with CURVE)
and thousands of fake workers that speak pymr's protocol, in a few processes.

The fake workers register, heartbeat every second (listing what they run and the last
ASSIGN's sequence number, as `pymr worker` does), finish each task the moment it is
assigned (or after ``--task-s``), and reconnect and register again after 10 s without
a word from the coordinator, as `pymr worker` does. No user code runs and no data
moves: this measures the coordinator alone. A job of M maps is planned from a sparse
file of M KiB split 1 KiB apiece.

    python scripts/simulate_cluster.py --workers 200 --maps 2000 --reduces 100
    python scripts/simulate_cluster.py --workers 2000 --heartbeat-only 30

It prints one JSON object: the job's outcome and wall time, task events per second,
heartbeat round trips (p50/p99/max), workers the coordinator declared lost, fake
workers that had to register again, and the coordinator's CPU and peak memory.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing
import os
import random
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402

from pymr import locations  # noqa: E402,F401  (imported so a broken install fails here, not in a child)
from pymr import protocol as proto  # noqa: E402
from pymr.security import ClusterKey, Security, generate_key, write_key_file  # noqa: E402

WORKER_TIMEOUT_S = 10.0
WARMUP_S = 15.0  # measurements start once every fake worker has connected (CURVE handshakes) and registered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- fake workers -------------------------------------------------------------------------------
class FakeWorker:
    def __init__(self, context: zmq.Context, security: Security, address: str, worker_id: str, slots: int):
        self.context, self.security, self.address = context, security, address
        self.worker_id, self.slots = worker_id, slots
        self.incarnation = uuid.uuid4().hex
        self.running: dict[str, tuple[float, dict]] = {}  # attempt -> (finish at, task)
        self.map_outputs: list[str] = []  # attempts whose (pretend) map output this worker holds
        self.last_seq = 0
        self.sent_heartbeats: list[float] = []
        self.last_heard = time.monotonic()
        self.registrations = 0
        self.socket: zmq.Socket | None = None
        self.connect()

    def connect(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        self.socket = self.security.client(proto.configure(self.context.socket(zmq.DEALER)))
        self.socket.setsockopt(zmq.IDENTITY, self.worker_id.encode())
        self.socket.connect(self.address)
        self.sent_heartbeats.clear()
        self.last_heard = time.monotonic()
        self.registrations += 1
        self.send(proto.REGISTER, {"slots": self.slots, "versions": proto.versions(), "host": "127.0.0.1",
                                   "shuffle_address": "tcp://127.0.0.1:9", "incarnation": self.incarnation,
                                   "running": list(self.running), "seq": self.last_seq, "jobs": [],
                                   "jobs_loaded": [], "map_outputs": self.map_outputs[-10_000:]})

    def send(self, kind: str, body: dict) -> None:
        try:
            self.socket.send_multipart(proto.pack(kind, body), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def heartbeat(self) -> None:
        self.sent_heartbeats.append(time.monotonic())
        self.send(proto.HEARTBEAT, {"running": list(self.running), "seq": self.last_seq})


def finish(worker: FakeWorker, task: dict) -> None:
    if task["kind"] == "map":
        worker.map_outputs.append(task["attempt_id"])
        result = {"map_output": {"path": f"/sim/{task['job_id']}/{task['attempt_id']}/map.arrow",
                                 "host": "127.0.0.1", "address": "tcp://127.0.0.1:9"},
                  "counters": {"pymr": {"map input records": 1, "map output records": 1}}, "max_rss_kb": 1}
    else:  # an empty part, where the real reduce would write it: the job commit publishes it
        name = f"part-{task['partition']:05d}"
        os.makedirs(task["attempt_dir"], exist_ok=True)
        open(os.path.join(task["attempt_dir"], name), "wb").close()
        result = {"files": [name], "counters": {"pymr": {"reduce input records": 1}}, "max_rss_kb": 1}
    worker.send(proto.TASK_DONE, {"job_id": task["job_id"], "attempt_id": task["attempt_id"], "result": result})


def run_fake_workers(address: str, key: dict, ids: list[str], slots: int, task_s: float, seconds: float,
                     stop, results: multiprocessing.Queue) -> None:
    """Run these fake workers in one process until `seconds` pass or `stop` is set.

    Sockets are watched through their ZeroMQ file descriptors in one epoll, so a wake-up
    costs O(sockets with something to read), not O(all sockets) as zmq.Poller does: the
    fake workers must stay cheaper than the coordinator they measure.
    """
    context = zmq.Context()
    security = Security(context, ClusterKey.from_dict(key))
    workers = [FakeWorker(context, security, address, worker_id, slots) for worker_id in ids]
    epoll = select.epoll()
    by_fd: dict[int, FakeWorker] = {}
    for w in workers:
        _watch(w, epoll, by_fd)
    beats = [(time.monotonic() + random.random(), i) for i in range(len(workers))]  # spread over a second
    heapq.heapify(beats)
    finishing: list[tuple[float, int, str]] = []  # (when, worker index, attempt) of tasks that take --task-s
    index_of = {w.worker_id: i for i, w in enumerate(workers)}
    seen = {"rtts": [], "welcomes": [], "assign_times": [], "assigned": 0, "table_bytes": 0}
    reconnects = 0
    measure_from = time.monotonic() + WARMUP_S  # after every worker connected and registered
    deadline = time.monotonic() + seconds
    next_silence_check = time.monotonic() + 1.0

    def drain(worker: FakeWorker) -> None:
        """Read all the worker's socket holds: after a wake-up *and* after every send, since
        a send can consume the descriptor's signal while a message waits."""
        while worker.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = worker.socket.recv_multipart(zmq.NOBLOCK)
            worker.last_heard = time.monotonic()
            if not _handle(worker, proto.unpack(frames), seen, measure_from, task_s, finishing, index_of):
                _unwatch(worker, epoll, by_fd)
                worker.connect()
                _watch(worker, epoll, by_fd)

    while time.monotonic() < deadline and not stop.is_set():
        wait_s = max(0.0, min(0.05, beats[0][0] - time.monotonic())) if beats else 0.05
        for fd, _ in epoll.poll(wait_s):
            worker = by_fd.get(fd)  # None: closed by a reconnect earlier in this loop
            if worker is not None:
                drain(worker)
        now = time.monotonic()
        while finishing and finishing[0][0] <= now:
            _, i, attempt_id = heapq.heappop(finishing)
            entry = workers[i].running.pop(attempt_id, None)
            if entry is not None:
                finish(workers[i], entry[1])
                drain(workers[i])
        while beats and beats[0][0] <= now:
            _, i = heapq.heappop(beats)
            workers[i].heartbeat()
            drain(workers[i])
            heapq.heappush(beats, (now + proto.HEARTBEAT_INTERVAL_S, i))
        if now >= next_silence_check:
            next_silence_check = now + 1.0
            for worker in workers:
                if now - worker.last_heard > WORKER_TIMEOUT_S:
                    _unwatch(worker, epoll, by_fd)
                    worker.connect()
                    _watch(worker, epoll, by_fd)
                    reconnects += now >= measure_from
    results.put({**seen, "reregistered": reconnects,
                 "unanswered": sum(len(w.sent_heartbeats) for w in workers)})
    for w in workers:
        w.socket.close(linger=0)
    context.destroy(linger=0)


def _handle(worker: FakeWorker, msg, seen: dict, measure_from: float, task_s: float,
            finishing: list, index_of: dict) -> bool:
    """Act on one message from the coordinator; False when the worker must register again."""
    now = time.monotonic()
    if msg.kind == proto.HEARTBEAT and worker.sent_heartbeats:
        sent = worker.sent_heartbeats.pop(0)
        if sent >= measure_from:
            seen["rtts"].append(now - sent)
    elif msg.kind == proto.ASSIGN:
        seen["assigned"] += 1
        seen["assign_times"].append(now)
        seen["table_bytes"] += sum(len(blob) for name, blob in zip(msg.body.get("blobs", []), msg.blobs)
                                   if name == "map_outputs")
        worker.last_seq = max(worker.last_seq, msg.body["seq"])
        if task_s <= 0:
            finish(worker, msg.body)
        else:
            worker.running[msg.body["attempt_id"]] = (now + task_s, msg.body)
            heapq.heappush(finishing, (now + task_s, index_of[worker.worker_id], msg.body["attempt_id"]))
    elif msg.kind == proto.REFUSED and msg.body.get("reregister"):
        return False
    elif msg.kind == proto.WELCOME:
        if now >= measure_from:
            seen["welcomes"].append((now, worker.worker_id))
        for attempt_id in msg.body.get("kill", []):
            worker.running.pop(attempt_id, None)
    return True


def _watch(worker: FakeWorker, epoll: select.epoll, by_fd: dict) -> None:
    fd = worker.socket.getsockopt(zmq.FD)
    epoll.register(fd, select.EPOLLIN)
    by_fd[fd] = worker


def _unwatch(worker: FakeWorker, epoll: select.epoll, by_fd: dict) -> None:
    fd = worker.socket.getsockopt(zmq.FD)
    epoll.unregister(fd)
    del by_fd[fd]


# -- the coordinator and a client ---------------------------------------------------------------
def cpu_and_peak(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    return cpu_s, peak / 1024


def submit_and_wait(address: str, key: ClusterKey, folder: Path, maps: int, reduces: int, timeout_s: float):
    import pymr
    from pymr.code import dump_job
    from pymr.runners import Client, job_spec

    class Sim(pymr.Job):
        def map(self, key, line):
            yield line, 1

        def reduce(self, key, values):
            yield key, sum(values)

    data = folder / "input.txt"
    with open(data, "wb") as f:
        f.truncate(maps * 1024)  # sparse: planned into `maps` splits, never read
    spec = job_spec(Sim, [str(data)], str(folder / "out"), reducers=reduces, split_size=1024)
    progress = []
    with Client(address, key, connect_timeout_s=60) as client:
        started = time.monotonic()
        report = client.run(spec, dump_job(Sim, {}, []), progress.append)
        return report, time.monotonic() - started, len(progress)


def fake_cpus() -> set[int]:
    return (os.sched_getaffinity(0) - {0}) or {0}


def pin(enabled: bool, cpu: int):
    """A preexec_fn that runs the child on ``cpu`` alone (or does nothing)."""
    return (lambda: os.sched_setaffinity(0, {cpu})) if enabled else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--maps", type=int, default=2000)
    parser.add_argument("--reduces", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4, help="processes the fake workers are spread over")
    parser.add_argument("--task-s", type=float, default=0.0, help="how long each fake task takes")
    parser.add_argument("--heartbeat-only", type=float, default=0.0, metavar="SECONDS",
                        help="no job: only heartbeats, for this long")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--state-dir", action="store_true", help="run the coordinator with a --state-dir")
    parser.add_argument("--restart-after", type=float, default=0.0, metavar="SECONDS",
                        help="kill -9 the coordinator this long into the job and start it again (needs --state-dir)")
    parser.add_argument("--pin", action="store_true",
                        help="run the coordinator on CPU 0 and the fake workers on the others, as on a "
                             "cluster where workers are other machines (their work then does not count "
                             "against the coordinator's CPU through a shared core's caches)")
    parser.add_argument("--keep-log", metavar="FILE", help="copy the coordinator's log here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pymr-sim-") as tmp:
        folder = Path(tmp)
        key = generate_key()
        write_key_file(str(folder / "cluster.key"), key)
        address = f"tcp://127.0.0.1:{free_port()}"
        log = open(folder / "coordinator.log", "w+")
        command = [sys.executable, "-m", "pymr", "coordinator", "--bind", address, "--secret-file",
                   str(folder / "cluster.key"), "--worker-timeout", str(WORKER_TIMEOUT_S),
                   *(["--state-dir", str(folder / "state")] if args.state_dir else [])]
        coordinator = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT, preexec_fn=pin(args.pin, 0))
        results: multiprocessing.Queue = multiprocessing.Queue()
        stop = multiprocessing.Event()
        ids = [f"sim-{i:05d}" for i in range(args.workers)]
        seconds = WARMUP_S + (args.heartbeat_only or args.timeout)
        procs = [multiprocessing.Process(target=run_fake_workers,
                                         args=(address, key.to_dict(), ids[p::args.procs], args.slots, args.task_s,
                                               seconds + 5, stop, results), daemon=True)
                 for p in range(args.procs)]
        try:
            for p in procs:
                p.start()
                if args.pin:
                    os.sched_setaffinity(p.pid, fake_cpus())
            time.sleep(WARMUP_S)
            cpu_before, _ = cpu_and_peak(coordinator.pid)
            started = time.monotonic()
            outcome: dict = {"workers": args.workers, "slots": args.slots}
            if args.heartbeat_only:
                time.sleep(args.heartbeat_only)
            else:
                finished: dict = {}
                client = threading.Thread(target=lambda: finished.update(zip(
                    ("report", "wall_s", "progress"),
                    submit_and_wait(address, key, folder, args.maps, args.reduces, args.timeout))), daemon=True)
                client.start()
                if args.restart_after:
                    time.sleep(args.restart_after)
                    cpu_before -= sum(cpu_and_peak(coordinator.pid)[:1])  # count the first process's CPU too
                    coordinator.kill()
                    coordinator.wait()
                    restarted_at = time.monotonic()
                    coordinator = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT,
                                                   preexec_fn=pin(args.pin, 0))
                    outcome["restarted"] = True
                client.join(args.timeout)
                report, wall_s, progress = finished["report"], finished["wall_s"], finished["progress"]
                tasks = args.maps + args.reduces
                outcome.update(maps=args.maps, reduces=args.reduces, state=report["state"], error=report.get("error"),
                               job_wall_s=round(wall_s, 2), tasks_per_s=round(tasks / wall_s),
                               events_per_s=round(2 * tasks / wall_s), attempts=report["attempts"],
                               failed_attempts=report["failed_attempts"],
                               killed_attempts=report.get("killed_attempts"), progress_messages=progress,
                               resumed=report.get("resumed"))
            elapsed = time.monotonic() - started
            cpu_after, peak_mib = cpu_and_peak(coordinator.pid)
            outcome.update(coordinator_cpu_s=round(cpu_after - cpu_before, 2),
                           coordinator_cores=round((cpu_after - cpu_before) / elapsed, 3),
                           coordinator_peak_mib=round(peak_mib))
        finally:
            stop.set()
            parts = []
            for _ in procs:
                try:
                    parts.append(results.get(timeout=30))
                except Exception:
                    pass
            coordinator.terminate()
            coordinator.wait(30)
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
        rtts = sorted(r for part in parts for r in part["rtts"])
        if rtts:
            outcome.update(heartbeat_rtt_ms={"p50": round(1000 * rtts[len(rtts) // 2], 1),
                                             "p99": round(1000 * rtts[int(len(rtts) * 0.99)], 1),
                                             "max": round(1000 * rtts[-1], 1)}, heartbeats=len(rtts))
        outcome["reregistered"] = sum(part["reregistered"] for part in parts)
        if outcome.get("restarted"):
            back = {}
            for part in parts:
                for at, worker_id in part["welcomes"]:
                    if at >= restarted_at:
                        back.setdefault(worker_id, at)
            assigns = [t for part in parts for t in part["assign_times"] if t >= restarted_at]
            outcome["after_restart_s"] = {
                "workers_back": len(back),
                "all_registered": round(max(back.values()) - restarted_at, 2) if len(back) == args.workers else None,
                "first_task_assigned": round(min(assigns) - restarted_at, 2) if assigns else None}
        outcome["map_table_bytes_sent"] = sum(part["table_bytes"] for part in parts)
        log.seek(0)
        text = log.read()
        if args.keep_log:
            Path(args.keep_log).write_text(text)
        outcome["declared_lost"] = len(re.findall(r"lost worker", text))
        outcome["coordinator_errors"] = len(re.findall(r"Traceback|ERROR", text))
        print(json.dumps(outcome, indent=1))


if __name__ == "__main__":
    main()
