"""What a coordinator shows about its jobs and workers: the JSON API objects, built from
its state, and the bounded history of finished jobs.

These functions read the coordinator's state and must run on the coordinator's own
loop (``StatusBoard.answer`` and the ``_on_*`` query handlers do); the HTTP server's
threads never call them directly. Every object is plain JSON (str, int, float,
lists, dicts), the same for the web page, ``pymr jobs/status/workers --json`` and
tests. Times: ``submitted`` is ISO 8601 UTC; durations are float seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("pymr.status")
FINISHED_KEPT = 1000  # finished jobs listed (summaries)
FINISHED_DETAILED = 50  # of those, the most recent keep their task lists too
ANSWER_TTL_S = 0.5  # a query's answer is reused this long, however many browsers ask,
LOOP_SHARE = 0.05  # or longer for costly answers: at most this share of the loop's time goes to one
ANSWER_WAIT_S = 5.0
TASKS_LISTED = 1000  # a job's detail lists at most this many tasks: those that failed or run first
DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

SUMMARY_FIELDS = ("job_id", "name", "state", "submitted", "elapsed_s", "maps_done", "maps_total", "reduces_done",
                  "reduces_total", "reduce_fraction", "running", "failed_attempts", "map_bytes_done", "map_bytes_read",
                  "map_bytes_total", "error")


def iso_time(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="seconds")


def _wall_clock(monotonic_s: float) -> float:
    return time.time() - (time.monotonic() - monotonic_s)


# -- running jobs ---------------------------------------------------------------------------
def job_summary(active: Any) -> dict[str, Any]:
    """One line of ``/api/jobs``: identity, state and progress of a job."""
    run = active.run
    counts = run.counts()
    counts.setdefault("map_bytes_total", 0)
    counts.setdefault("map_bytes_done", 0)
    counts.setdefault("map_bytes_read", counts["map_bytes_done"])
    return {
        "job_id": run.job_id,
        "name": run.name,
        "state": run.state.value,
        "submitted": iso_time(getattr(active, "submitted_unix_s", None) or _wall_clock(active.started_s)),
        "elapsed_s": round(time.monotonic() - active.started_s, 3),
        "error": run.error,
        **counts,
    }


def job_detail(active: Any, report: dict[str, Any]) -> dict[str, Any]:
    """``/api/jobs/<job_id>``: the summary, each phase's progress, every task and its
    attempts, the counters so far (from the job's ``report``), the largest partitions
    and the failed attempts."""
    run = active.run
    now = time.monotonic()
    detail = job_summary(active)
    detail.update(
        ended=False,  # True once the job's output is committed or removed and it is listed as finished
        output=report.get("output"),
        error_detail=run.error_detail,
        phases={"map": phase_progress(run.maps, now, by_bytes=True), "reduce": phase_progress(run.reduces, now)},
        counters=report["counters"],
        largest_partitions=report["largest_reduce_partitions"],
        tasks=[task_view(task, now) for task in listed_tasks(run.all_tasks())],
        tasks_total=len(run.maps) + len(run.reduces),
    )
    detail["failed"] = [dict(attempt, task_id=task["task_id"]) for task in detail["tasks"]
                        for attempt in task["attempts"] if attempt["state"] == "failed"][-20:]
    return detail


def listed_tasks(tasks: list[Any], limit: int = TASKS_LISTED) -> list[Any]:
    """The tasks a job's detail shows: all of them up to ``limit``; beyond, those with
    failed attempts, then running ones, then the rest in order, ``limit`` in all (so
    building a detail stays cheap for the coordinator's loop however large the job)."""
    if len(tasks) <= limit:
        return tasks
    failed = [t for t in tasks if t.failures]
    running = [t for t in tasks if not t.failures and _value(t.state) == "running"]
    chosen = {id(t) for t in (failed + running)[:limit]}
    rest = [t for t in tasks if id(t) not in chosen][:max(0, limit - len(chosen))]
    chosen.update(id(t) for t in rest)
    return [t for t in tasks if id(t) in chosen]


def task_view(task: Any, now: float) -> dict[str, Any]:
    error = task.last_error or None
    attempts = []
    for attempt in task.attempts:
        end = attempt.finished_s if attempt.finished_s is not None else (now if attempt.state == "running" else None)
        own = getattr(attempt, "error", None)  # each attempt's own error, else the task's last one
        failed = attempt.state == "failed" and (own is not None or (error is not None and attempt is _last_failed(task)))
        attempt_error = own if own is not None else error
        attempts.append({
            "attempt_id": attempt.attempt_id,
            "worker_id": attempt.worker_id,
            "state": attempt.state,
            "backup": attempt.backup,
            "seconds": round(end - attempt.started_s, 3) if end is not None else None,
            "error": _error_view(attempt_error) if failed else None,
            "progress": (getattr(attempt, "progress", 0.0) or None) if attempt.state == "running" else None,
        })
    counters = framework_counters(task)
    return {"task_id": task.task_id, "kind": task.kind, "index": task.index, "state": _value(task.state),
            "input": _describe(task), "attempts": attempts,
            "records_in": counters.get("map input records", counters.get("reduce input records"))}


def framework_counters(task: Any) -> dict[str, int]:
    """The ``pymr`` counters of a done task: its result keeps them as {group: {name: n}}, or
    packed flat as (group, name, n, group, name, n, ...)."""
    counters = (task.result or {}).get("counters") or {}
    if isinstance(counters, (tuple, list)):
        return {counters[i + 1]: counters[i + 2] for i in range(0, len(counters) - 2, 3) if counters[i] == "pymr"}
    return dict(counters.get("pymr", {}))


def _last_failed(task: Any) -> Any:
    return next((a for a in reversed(task.attempts) if a.state == "failed"), None)


def _error_view(error: dict[str, Any]) -> dict[str, Any]:
    return {name: error.get(name) for name in ("type", "message", "traceback", "log_tail", "worker_id")}


def _describe(task: Any) -> str | None:
    split = task.split or {}
    return f"{split['path']} {split.get('start', 0)}-{split.get('end', 0)}" if split.get("path") else None


def _value(state: Any) -> str:
    return getattr(state, "value", state)


def phase_progress(tasks: list[Any], now: float, by_bytes: bool = False) -> dict[str, Any]:
    """Done/total by tasks (and input bytes: those of finished tasks, and those read so far
    with what running attempts have read); the fraction done, counting how far running
    tasks have got; the rate since the phase's first attempt started, and the time left
    at that rate (None until something finished or moved)."""
    total = len(tasks)
    done = [t for t in tasks if _value(t.state) == "done"]
    starts = [a.started_s for t in tasks for a in t.attempts]
    ends = [a.finished_s for t in tasks for a in t.attempts if a.finished_s is not None]
    if len(done) == total and ends:  # a finished phase took until its last attempt ended
        now = max(ends)
    elapsed = now - min(starts) if starts else 0.0
    progress: dict[str, Any] = {"tasks_done": len(done), "tasks_total": total,
                                "running": sum(a.state == "running" for t in tasks for a in t.attempts),
                                "elapsed_s": round(elapsed, 3)}
    if by_bytes:
        size = [max(0, int((t.split or {}).get("end", 0)) - int((t.split or {}).get("start", 0))) for t in tasks]
        done_bytes = sum(s for s, t in zip(size, tasks) if _value(t.state) == "done")
        read_bytes = done_bytes + round(sum(s * t.furthest_progress() for s, t in zip(size, tasks)
                                            if _value(t.state) != "done"))
        progress.update(bytes_done=done_bytes, bytes_read=read_bytes, bytes_total=sum(size))
        amount, left = read_bytes, sum(size) - read_bytes
        progress["bytes_per_s"] = round(read_bytes / elapsed, 1) if elapsed > 0 else None
        progress["fraction"] = round(read_bytes / (sum(size) or 1), 4) if total else 1.0
    else:
        amount = len(done) + sum(t.furthest_progress() for t in tasks if _value(t.state) != "done")
        left = total - amount
        progress["fraction"] = round(amount / total, 4) if total else 1.0
    progress["eta_s"] = round(elapsed * left / amount, 1) if amount and elapsed > 0 else (0.0 if not left else None)
    return progress


# -- workers --------------------------------------------------------------------------------
def worker_view(worker: Any, now: float) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "host": getattr(worker, "host", None),
        "slots": worker.slots,
        "running": sorted(worker.running),
        "last_heartbeat_s": round(now - worker.last_seen_s, 3),
        "failed_attempts": int(getattr(worker, "failed_attempts", 0) or 0),
        "excluded": bool(getattr(worker, "excluded", False)),
    }


def workers_view(workers: Iterable[Any]) -> list[dict[str, Any]]:
    now = time.monotonic()
    return [worker_view(w, now) for w in sorted(workers, key=lambda w: w.worker_id)]


# -- finished jobs --------------------------------------------------------------------------
class FinishedJobs:
    """The last ``FINISHED_KEPT`` finished jobs, newest last: their summaries, and for the
    most recent ``FINISHED_DETAILED`` their full detail. ``add`` takes a detail dict as
    ``job_detail`` makes it, so a state store's rows can feed it the same way."""

    def __init__(self, kept: int = FINISHED_KEPT, detailed: int = FINISHED_DETAILED):
        self.kept, self.detailed = kept, detailed
        self.jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, detail: dict[str, Any]) -> None:
        self.jobs[detail["job_id"]] = detail
        self.jobs.move_to_end(detail["job_id"])
        while len(self.jobs) > self.kept:
            self.jobs.popitem(last=False)
        if len(self.jobs) > self.detailed:  # the one that just fell out of the detailed window
            older = self.jobs[list(self.jobs)[-self.detailed - 1]]
            older.pop("tasks", None)

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)

    def summaries(self) -> list[dict[str, Any]]:
        return [{name: d.get(name) for name in SUMMARY_FIELDS} for d in self.jobs.values()]


def stored_detail(record: dict[str, Any]) -> dict[str, Any]:
    """A finished job's detail from the state store's record of it (``StateStore.finished_jobs``):
    its report, without the task list (a job from before the coordinator restarted)."""
    report = record["report"]
    maps, reduces = int(report.get("map_tasks", 0)), int(report.get("reduce_tasks", 0))
    done = report.get("state") == "succeeded"  # else how far it got is not in the report: shown as 0
    return {
        "job_id": record["job_id"], "name": record.get("name") or report.get("name"), "state": report.get("state"),
        "submitted": iso_time(record["submitted_unix_s"]) if record.get("submitted_unix_s") else None,
        "elapsed_s": report.get("elapsed_s"), "error": report.get("error"), "error_detail": report.get("error_detail"),
        "maps_total": maps, "maps_done": maps if done else 0, "reduces_total": reduces,
        "reduces_done": reduces if done else 0, "reduce_fraction": 1.0 if done else 0.0, "running": 0,
        "failed_attempts": report.get("failed_attempts", 0),
        "map_bytes_total": 0, "map_bytes_done": 0, "map_bytes_read": 0, "output": report.get("output"),
        "counters": report.get("counters", {}), "largest_partitions": report.get("largest_reduce_partitions", []),
        "bytes": report.get("bytes"), "ended": True, "phases": {}, "failed": [],
    }


def finished_detail(active: Any, report: dict[str, Any]) -> dict[str, Any]:
    """A job's detail as it ended, with its final state, error and time from ``report``."""
    detail = job_detail(active, report)
    detail.update(state=report["state"], error=report.get("error"), error_detail=report.get("error_detail"),
                  elapsed_s=report.get("elapsed_s"), bytes=report.get("bytes"), running=0, ended=True)
    for task in detail["tasks"]:
        for attempt in task["attempts"]:
            if attempt["state"] == "running":
                attempt["state"], attempt["progress"] = "killed", None
    return detail


# -- answering the HTTP server --------------------------------------------------------------
class StatusBoard:
    """Where the HTTP server's threads get answers from the coordinator's loop.

    A thread asks with ``query(key)``; the loop calls ``answer(build)`` once per
    iteration (every 100 ms at most) and builds each asked key on its own thread, so the
    server never reads the coordinator's state while the loop changes it and never
    holds the loop up. An answer is reused for ``ANSWER_TTL_S``, or longer if it took
    long to build (a job of many thousand tasks): a wall of browsers costs the loop at
    most ``LOOP_SHARE`` of its time per query.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._asked: set[str] = set()
        self._answers: dict[str, tuple[float, Any]] = {}  # key -> (good until, answer)

    def query(self, key: str, timeout_s: float = ANSWER_WAIT_S) -> Any:
        """The loop's answer for ``key``; raises TimeoutError if the loop does not answer."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                found = self._answers.get(key)
                if found is not None and time.monotonic() < found[0]:
                    if isinstance(found[1], BuildFailed):
                        raise found[1]
                    return found[1]
                self._asked.add(key)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the coordinator did not answer {key!r} within {timeout_s:g} s")
                self._lock.wait(left)

    def answer(self, build: Callable[[str], Any]) -> None:
        """Build every asked key (on the coordinator's loop) and wake the askers."""
        with self._lock:
            asked, self._asked = self._asked, set()
        if not asked:
            return
        built = {}
        for key in asked:
            start = time.monotonic()
            value = _built(build, key)
            now = time.monotonic()
            built[key] = (now + max(ANSWER_TTL_S, (now - start) / LOOP_SHARE), value)
        with self._lock:
            self._answers.update(built)
            for key in [k for k, (until, _) in self._answers.items() if now - until > 10 * ANSWER_TTL_S]:
                del self._answers[key]  # bounded: only recently asked keys stay
            self._lock.notify_all()


class BuildFailed(Exception):
    """Building an answer raised: the asker gets this, the coordinator's loop goes on."""


def _built(build: Callable[[str], Any], key: str) -> Any:
    try:
        return build(key)
    except Exception as exc:  # a bug here must not take the coordinator down
        log.exception("status: building %r failed", key)
        return BuildFailed(f"building {key!r} failed: {type(exc).__name__}: {exc}")


# -- metrics --------------------------------------------------------------------------------
class Totals:
    """Monotonic counts over finished jobs, for ``/metrics`` (the history itself is bounded)."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.failed_attempts = 0
        self.bytes: dict[str, int] = {"read": 0, "shuffled": 0, "written": 0}
        self.durations = Histogram()

    def add(self, active: Any, report: dict[str, Any]) -> None:
        self.jobs[report["state"]] = self.jobs.get(report["state"], 0) + 1
        self.failed_attempts += int(report.get("failed_attempts", 0))
        for kind, amount in (report.get("bytes") or {}).items():
            self.bytes[kind] = self.bytes.get(kind, 0) + int(amount)
        self.durations.add_attempts(active.run.all_tasks())


class Histogram:
    def __init__(self) -> None:
        self.counts = {(kind, bound): 0 for kind in ("map", "reduce") for bound in (*DURATION_BUCKETS_S, "+Inf")}
        self.sums = {"map": 0.0, "reduce": 0.0}

    def add_attempts(self, tasks: Iterable[Any]) -> None:
        for task in tasks:
            for attempt in task.attempts:
                if attempt.finished_s is not None:
                    seconds = attempt.finished_s - attempt.started_s
                    self.sums[task.kind] += seconds
                    for bound in (*DURATION_BUCKETS_S, "+Inf"):
                        if bound == "+Inf" or seconds <= bound:
                            self.counts[(task.kind, bound)] += 1


def metrics_text(jobs: Iterable[Any], workers: Iterable[Any], totals: Totals) -> str:
    """The Prometheus text exposition format (version 0.0.4) of the coordinator's state."""
    jobs = list(jobs)
    workers = list(workers)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            label_text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{suffix}{{{label_text}}} {_number(value)}" if labels else f"{name}{suffix} {_number(value)}")

    running_by_state = {"running": sum(1 for a in jobs if _value(a.run.state) == "running")}
    family("pymr_jobs", "gauge", "Jobs the coordinator holds, by state (finished ones since it started).",
           [("", {"state": s}, running_by_state.get(s, 0) + totals.jobs.get(s, 0))
            for s in ("running", "succeeded", "failed", "cancelled")])
    tasks = {(kind, state): 0 for kind in ("map", "reduce") for state in ("done", "remaining")}
    running = failed = read = 0
    for active in jobs:  # from each job's counts: O(jobs), whatever their size
        counts = active.run.counts()
        for kind in ("map", "reduce"):
            tasks[(kind, "done")] += counts[f"{kind}s_done"]
            tasks[(kind, "remaining")] += counts[f"{kind}s_total"] - counts[f"{kind}s_done"]
        running += counts["running"]
        failed += counts["failed_attempts"]
        read += counts.get("map_bytes_done", 0)
    family("pymr_tasks", "gauge", "Tasks of running jobs, by kind and state.",
           [("", {"kind": k, "state": s}, n) for (k, s), n in sorted(tasks.items())])
    family("pymr_running_attempts", "gauge", "Task attempts running now.", [("", {}, running)])
    family("pymr_workers", "gauge", "Workers registered and heard from recently.", [("", {}, len(workers))])
    family("pymr_worker_slots", "gauge", "Task slots of the registered workers.",
           [("", {}, sum(w.slots for w in workers))])
    family("pymr_failed_attempts_total", "counter", "Task attempts that failed.",
           [("", {}, totals.failed_attempts + failed)])
    live_bytes = {"read": read, "shuffled": 0, "written": 0}
    family("pymr_bytes_total", "counter", "Bytes read by maps (as their tasks finish), shuffled and written "
                                          "(as their jobs end).",
           [("", {"kind": k}, totals.bytes.get(k, 0) + live_bytes[k]) for k in ("read", "shuffled", "written")])
    histogram = totals.durations
    samples: list[tuple[str, dict[str, str], float]] = []
    for kind in ("map", "reduce"):
        for bound in (*DURATION_BUCKETS_S, "+Inf"):
            samples.append(("_bucket", {"kind": kind, "le": bound if bound == "+Inf" else repr(float(bound))},
                            histogram.counts[(kind, bound)]))
        samples.append(("_sum", {"kind": kind}, histogram.sums[kind]))
        samples.append(("_count", {"kind": kind}, histogram.counts[(kind, "+Inf")]))
    family("pymr_task_duration_seconds", "histogram", "Time task attempts of finished jobs ran.", samples)
    return "\n".join(lines) + "\n"


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def log_place(detail: dict[str, Any] | None, attempt_id: str, addresses: dict[str, str | None]) -> dict | None:
    """Where one attempt's log is (for the page), or None if the job or attempt is unknown."""
    for task in (detail or {}).get("tasks", []):
        for entry in task["attempts"]:
            if entry["attempt_id"] == attempt_id:
                return {"worker_id": entry["worker_id"], "address": addresses.get(entry["worker_id"])}
    return None


# -- where attempt logs are -----------------------------------------------------------------
def log_places(detail: dict[str, Any] | None, task_id: str | None, attempt: int | None,
               addresses: dict[str, str | None]) -> list[dict[str, Any]]:
    """The attempts whose logs ``pymr logs`` asked for, each with the address of the
    worker holding the log (None if that worker is gone). Without ``task_id``: the
    failed attempts. Raises LookupError naming what is unknown."""
    if detail is None:
        raise LookupError("unknown job (not running and not among the finished jobs listed)")
    if "tasks" not in detail:
        raise LookupError(f"job {detail['job_id']} ended too long ago: its attempts are no longer listed")
    tasks = detail["tasks"]
    if task_id is not None:
        tasks = [t for t in tasks if t["task_id"] == task_id]
        if not tasks:
            raise LookupError(f"job {detail['job_id']} has no task {task_id} (tasks are named like m00000, r00000)")
    places = []
    for task in tasks:
        for number, entry in enumerate(task["attempts"]):
            wanted = (number == attempt) if attempt is not None else (task_id is not None or entry["state"] == "failed")
            if wanted:
                places.append({"task_id": task["task_id"], "attempt": number, "attempt_id": entry["attempt_id"],
                               "worker_id": entry["worker_id"], "state": entry["state"],
                               "address": addresses.get(entry["worker_id"])})
    if attempt is not None and not places:
        raise LookupError(f"task {task_id} of job {detail['job_id']} has no attempt {attempt}")
    return places
