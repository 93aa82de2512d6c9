"""Job and task state, changed only by the transition functions below (no sockets, no files).

What is tracked, per job (``JobRun``):

* ``maps``: one ``Task`` per input split; ``reduces``: one per partition (none for a
  map-only job);
* per task, its ``attempts`` (each ``Attempt`` runs on one worker), the number of
  ``failures`` and, once done, the winning attempt and its result.

How a task moves::

    PENDING --assign--> RUNNING --finish--> DONE
       ^                   |
       +------fail---------+   (failures < max_attempts; else the job FAILS)
       +---lose_worker-----+   (also DONE maps whose output lived on the lost worker)

Reduce tasks are assigned only when every map is DONE. When a phase has no pending
task left, a worker with a free slot gets a *backup* attempt of a straggler: a task
whose only attempt has run longer than ``SPECULATION_FACTOR`` times the median time of
the phase's finished tasks (and at least ``SPECULATION_MIN_S``); MapReduce §3.6. A
reduce that cannot fetch a map output (``fetch_failed``) goes back to pending without
counting as a failure, and that map runs again. A task is DONE exactly once:
a second successful attempt of the same task is reported as a duplicate and its output
is discarded, so output is never duplicated. Every transition returns a list of
``Effect`` values that the coordinator carries out (commit a task, end the job ...).
"""

from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_ATTEMPTS = 4
SPECULATION_FACTOR = 2.0
SPECULATION_MIN_S = 3.0


class TaskState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class JobState(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Attempt:
    attempt_id: str
    worker_id: str
    started_s: float
    state: str = "running"  # running | succeeded | failed | lost | killed
    finished_s: float | None = None
    backup: bool = False


@dataclass
class Task:
    kind: str  # "map" | "reduce"
    index: int
    split: dict[str, Any] | None = None
    state: TaskState = TaskState.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    failures: int = 0
    fetch_failures: int = 0
    result: dict[str, Any] | None = None
    winner: Attempt | None = None
    last_error: dict[str, Any] | None = None

    @property
    def task_id(self) -> str:
        return f"{self.kind[0]}{self.index:05d}"

    def running(self) -> list[Attempt]:
        return [a for a in self.attempts if a.state == "running"]


@dataclass
class Effect:
    """Something the coordinator must do after a transition."""

    kind: str  # commit_task | discard | job_succeeded | job_failed | cancel_attempt
    task: Task | None = None
    attempt: Attempt | None = None
    detail: dict[str, Any] | None = None


@dataclass
class JobRun:
    job_id: str
    name: str
    maps: list[Task]
    reduces: list[Task]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    speculative: bool = True
    state: JobState = JobState.RUNNING
    error: str | None = None
    error_detail: dict[str, Any] | None = None
    attempts_by_id: dict[str, tuple[Task, Attempt]] = field(default_factory=dict)

    @property
    def map_only(self) -> bool:
        return not self.reduces

    def all_tasks(self) -> list[Task]:
        return self.maps + self.reduces

    def maps_done(self) -> bool:
        return all(t.state == TaskState.DONE for t in self.maps)

    def counts(self) -> dict[str, int]:
        def done(tasks):
            return sum(t.state == TaskState.DONE for t in tasks)

        return {
            "maps_total": len(self.maps),
            "maps_done": done(self.maps),
            "reduces_total": len(self.reduces),
            "reduces_done": done(self.reduces),
            "running": sum(len(t.running()) for t in self.all_tasks()),
            "failed_attempts": sum(t.failures for t in self.all_tasks()),
            "map_bytes_total": sum(_split_bytes(t) for t in self.maps),
            "map_bytes_done": sum(_split_bytes(t) for t in self.maps if t.state == TaskState.DONE),
        }


def _split_bytes(task: Task) -> int:
    """Input bytes of a map task's split (its byte range; a compressed file's whole size)."""
    split = task.split or {}
    return max(0, int(split.get("end", 0)) - int(split.get("start", 0)))


def new_job(job_id: str, name: str, splits: list[dict[str, Any]], num_reducers: int,
            max_attempts: int = DEFAULT_MAX_ATTEMPTS, speculative: bool = True) -> JobRun:
    maps = [Task("map", i, split=s) for i, s in enumerate(splits)]
    reduces = [Task("reduce", p) for p in range(num_reducers)]
    return JobRun(job_id, name, maps, reduces, max_attempts=max_attempts, speculative=speculative)


def assign(job: JobRun, worker_id: str, now_s: float) -> tuple[Task, Attempt] | None:
    """Start an attempt of the next runnable task on ``worker_id``, or return None.

    Maps come first; reduces only once every map is done. Among pending tasks, one
    that has not failed on this worker is preferred, so a retry lands elsewhere.
    """
    if job.state != JobState.RUNNING:
        return None
    phase = job.maps if not job.maps_done() else job.reduces
    pending = [t for t in phase if t.state == TaskState.PENDING]
    if pending:
        fresh = [t for t in pending if all(a.worker_id != worker_id for a in t.attempts if a.state != "running")]
        return _start_attempt(job, (fresh or pending)[0], worker_id, now_s, backup=False)
    straggler = _straggler(job, phase, worker_id, now_s) if job.speculative else None
    if straggler is not None:
        return _start_attempt(job, straggler, worker_id, now_s, backup=True)
    return None


def _start_attempt(job: JobRun, task: Task, worker_id: str, now_s: float, backup: bool) -> tuple[Task, Attempt]:
    attempt = Attempt(f"{job.job_id}-{task.task_id}-{len(task.attempts)}", worker_id, now_s, backup=backup)
    task.attempts.append(attempt)
    task.state = TaskState.RUNNING
    job.attempts_by_id[attempt.attempt_id] = (task, attempt)
    return task, attempt


def _straggler(job: JobRun, phase: list[Task], worker_id: str, now_s: float) -> Task | None:
    """The slowest running task of the phase worth a backup attempt on ``worker_id``, if any."""
    durations = [t.winner.finished_s - t.winner.started_s for t in phase
                 if t.state == TaskState.DONE and t.winner and t.winner.finished_s is not None]
    if not durations:
        return None
    threshold = max(SPECULATION_MIN_S, SPECULATION_FACTOR * statistics.median(durations))
    candidates = []
    for task in phase:
        running = task.running()
        if task.state != TaskState.RUNNING or len(running) != 1 or any(a.backup for a in task.attempts):
            continue
        if running[0].worker_id != worker_id and now_s - running[0].started_s > threshold:
            candidates.append((running[0].started_s, task))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def finish(job: JobRun, attempt_id: str, result: dict[str, Any], now_s: float = 0.0) -> list[Effect]:
    """An attempt succeeded: the first success of a task wins, later ones are discarded."""
    found = job.attempts_by_id.get(attempt_id)
    if found is None:
        return []
    task, attempt = found
    if attempt.state != "running" or task.state == TaskState.DONE or job.state != JobState.RUNNING:
        attempt.state = "killed" if attempt.state == "running" else attempt.state
        return [Effect("discard", task, attempt, result)]
    attempt.state = "succeeded"
    attempt.finished_s = now_s
    task.state = TaskState.DONE
    task.winner = attempt
    task.result = result
    effects = [Effect("commit_task", task, attempt, result)]
    effects += [Effect("cancel_attempt", task, other) for other in task.running()]
    for other in task.running():
        other.state = "killed"
    # The output is complete once the last phase is: a map rerun nobody reads is not awaited.
    if all(t.state == TaskState.DONE for t in (job.reduces or job.maps)):
        job.state = JobState.SUCCEEDED
        effects += _cancel_running(job)
        effects.append(Effect("job_succeeded"))
    return effects


def fail(job: JobRun, attempt_id: str, error: dict[str, Any], counts_as_failure: bool = True) -> list[Effect]:
    """An attempt failed: retry the task, or fail the job after ``max_attempts`` failures."""
    found = job.attempts_by_id.get(attempt_id)
    if found is None:
        return []
    task, attempt = found
    if attempt.state != "running":
        return []
    attempt.state = "failed" if counts_as_failure else "lost"
    task.last_error = error
    if counts_as_failure:
        task.failures += 1
    if task.state == TaskState.DONE or job.state != JobState.RUNNING:
        return [Effect("discard", task, attempt)]
    effects = [Effect("discard", task, attempt)]
    if task.failures >= job.max_attempts:
        return effects + _fail_job(job, task, error)
    if not task.running():
        task.state = TaskState.PENDING
    return effects


def fetch_failed(job: JobRun, attempt_id: str, map_index: int, error: dict[str, Any]) -> list[Effect]:
    """A reduce could not read a map's output: rerun that map, retry the reduce later."""
    found = job.attempts_by_id.get(attempt_id)
    if found is None or not 0 <= map_index < len(job.maps) or found[1].state != "running":
        return []
    task, attempt = found
    task.fetch_failures += 1
    if task.fetch_failures > 2 * job.max_attempts:
        return fail(job, attempt_id, error)  # counts: this reduce cannot get its input at all
    effects = fail(job, attempt_id, error, counts_as_failure=False)
    lost = job.maps[map_index]
    stale = lost.winner is not None and (lost.winner.finished_s or 0.0) > attempt.started_s
    if lost.state == TaskState.DONE and job.state == JobState.RUNNING and not stale:
        # (a reduce that started before the map's rerun finished was given the old location)
        lost.state = TaskState.PENDING
        if lost.winner is not None:
            lost.winner.state = "lost"
        lost.winner = None
        lost.result = None
    return effects


def _fail_job(job: JobRun, task: Task, error: dict[str, Any]) -> list[Effect]:
    job.state = JobState.FAILED
    where = task_description(task)
    job.error = f"{where} failed after {task.failures} attempt(s): {error.get('type', 'Error')}: {error.get('message', '')}"
    job.error_detail = dict(error, task=task.task_id, kind=task.kind, where=where)
    return [Effect("job_failed")] + _cancel_running(job)


def task_description(task: Task) -> str:
    if task.kind == "map" and task.split:
        split = task.split
        extent = "whole file" if split.get("compressed") else f"bytes {split['start']}-{split['end']}"
        return f"map task {task.index} (input {split['path']} {extent})"
    return f"{task.kind} task {task.index}"


def _cancel_running(job: JobRun) -> list[Effect]:
    effects = []
    for task in job.all_tasks():
        for attempt in task.running():
            attempt.state = "killed"
            effects.append(Effect("cancel_attempt", task, attempt))
    return effects


def cancel(job: JobRun, reason: str) -> list[Effect]:
    """Stop the job at the user's request."""
    if job.state != JobState.RUNNING:
        return []
    job.state = JobState.CANCELLED
    job.error = reason
    return [Effect("job_failed")] + _cancel_running(job)


def lose_worker(job: JobRun, worker_id: str) -> list[Effect]:
    """A worker is gone: its running attempts fail, and done maps whose output it held rerun."""
    effects: list[Effect] = []
    for task in job.all_tasks():
        for attempt in task.running():
            if attempt.worker_id == worker_id:
                effects += fail(job, attempt.attempt_id, {"type": "WorkerLost",
                                                          "message": f"worker {worker_id} died while running it"})
    if job.state != JobState.RUNNING or job.map_only:
        return effects
    if all(t.state == TaskState.DONE for t in job.reduces):
        return effects
    for task in job.maps:
        if task.state == TaskState.DONE and task.winner and task.winner.worker_id == worker_id:
            task.state = TaskState.PENDING
            task.winner.state = "lost"
            task.winner = None
            task.result = None
    return effects
