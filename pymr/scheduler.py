"""Job and task state, changed only by the transition functions below (no sockets, no files).

What is tracked, per job (``JobRun``):

* ``maps``: one ``Task`` per input split; ``reduces``: one per partition (none for a
  map-only job);
* per task, its ``attempts`` (each ``Attempt`` runs on one worker), the number of
  ``failures``, the workers it failed on (``failed_on``) and, once done, the winning
  attempt and its result;
* per phase (``Phase``), the queue of pending tasks, the number done, a running median
  of the winners' durations and the queue of stragglers worth a backup attempt;
* per job, the running attempts in the order they started, the failed attempts per
  worker and the workers ``excluded`` from the job.

Every transition costs O(1) (or O(log n) for the median), whatever the number of tasks:
a cluster of thousands of workers sends thousands of events a second.

How a task moves::

    PENDING --assign--> RUNNING --finish--> DONE
       ^                   |
       +------fail---------+   (failures < max_attempts; else the job FAILS)
       +------kill---------+   (not the task's fault: its worker was lost or restarted)
       +---lose_worker-----+   (also DONE maps whose output lived on the lost worker)

An attempt ends ``succeeded``, ``failed`` (counts toward ``max_attempts``) or ``killed``
(it does not: a lost worker, a cancelled backup, a reduce that lost its input); a DONE
map whose output is lost has its winner marked ``lost``. As Hadoop tells KILLED from
FAILED, losing a worker is never a task's failure. An error with ``fatal`` set (the
job's code cannot load, an input changed under the job) fails the job at once: no retry
can succeed.

Reduce tasks are assigned only when every map is DONE. A retry prefers a worker the
task has not failed on, and a worker with ``exclude_after`` failed attempts in a job
gets no more of its tasks, each while some other live worker can take them (Hadoop's
per-tracker task failures, Spark's excludeOnFailure): one broken machine never fails a
job that healthy ones can run. When a phase has no pending task left, a worker with a
free slot gets a *backup* attempt of a straggler: ``find_stragglers`` (run on a timer)
queues each task whose only attempt has run longer than ``SPECULATION_FACTOR`` times
the median time of the phase's finished tasks (and at least ``SPECULATION_MIN_S``);
MapReduce §3.6. A reduce that cannot fetch a map output (``fetch_failed``) goes back to
pending without counting as a failure, and that map runs again. A task is DONE exactly
once: a second successful attempt of the same task is reported as a duplicate and its
output is discarded, so output is never duplicated. Every transition returns a list of
``Effect`` values that the coordinator carries out (commit a task, end the job ...).
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_EXCLUDE_AFTER = 2  # failed attempts of one job on one worker before it gets no more of them
SPECULATION_FACTOR = 2.0
SPECULATION_MIN_S = 3.0
RETRY_SCAN = 64  # retries looked at for one that did not fail on the asking worker
STRAGGLER_SCAN = 1000  # running attempts looked at per find_stragglers call


class TaskState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class JobState(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(slots=True, eq=False)
class Attempt:
    attempt_id: str
    worker_id: str
    started_s: float
    state: str = "running"  # running | succeeded | failed | killed | lost
    finished_s: float | None = None
    backup: bool = False
    error: dict[str, Any] | None = None
    progress: float = 0.0  # how far it has got while it runs (0 to 1), as its worker last said


@dataclass(slots=True, eq=False)
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
    failed_on: set[str] = field(default_factory=set)
    queued: bool = False  # in its phase's pending queue
    backup_queued: bool = False  # in its phase's straggler queue

    @property
    def task_id(self) -> str:
        return f"{self.kind[0]}{self.index:05d}"

    def running(self) -> list[Attempt]:
        return [a for a in self.attempts if a.state == "running"]

    def furthest_progress(self) -> float:
        """How far its furthest running attempt has got (0 to 1), as their workers last said."""
        return max((a.progress for a in self.attempts if a.state == "running"), default=0.0)

    @property
    def input_bytes(self) -> int:
        """The bytes of input a map reads (0 for a reduce)."""
        if not self.split:
            return 0
        return max(0, int(self.split.get("end", 0)) - int(self.split.get("start", 0)))


class RunningMedian:
    """The median of numbers added one at a time, in O(log n) per number (two heaps)."""

    def __init__(self) -> None:
        self._low: list[float] = []  # max-heap (negated) of the smaller half
        self._high: list[float] = []  # min-heap of the larger half

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def add(self, value: float) -> None:
        if self._low and value > -self._low[0]:
            heapq.heappush(self._high, value)
        else:
            heapq.heappush(self._low, -value)
        if len(self._low) > len(self._high) + 1:
            heapq.heappush(self._high, -heapq.heappop(self._low))
        elif len(self._high) > len(self._low):
            heapq.heappush(self._low, -heapq.heappop(self._high))

    def median(self) -> float | None:
        if not self:
            return None
        if len(self._low) > len(self._high):
            return -self._low[0]
        return (-self._low[0] + self._high[0]) / 2


@dataclass(eq=False)
class Phase:
    """One phase's tasks and the queues that make picking the next one O(1)."""

    tasks: list[Task]
    fresh: deque[Task] = field(default_factory=deque)  # pending, never failed
    retries: deque[Task] = field(default_factory=deque)  # pending again after a failure or kill
    backups: deque[Task] = field(default_factory=deque)  # stragglers worth a backup attempt
    done: int = 0
    durations: RunningMedian = field(default_factory=RunningMedian)

    @property
    def complete(self) -> bool:
        return self.done == len(self.tasks)

    def has_pending(self) -> bool:
        return bool(self.fresh or self.retries)


@dataclass(slots=True, eq=False)
class Effect:
    """Something the coordinator must do after a transition."""

    kind: str  # commit_task | discard | job_succeeded | job_failed | cancel_attempt | worker_excluded
    task: Task | None = None
    attempt: Attempt | None = None
    detail: dict[str, Any] | None = None


@dataclass(eq=False)
class JobRun:
    job_id: str
    name: str
    maps: list[Task]
    reduces: list[Task]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    speculative: bool = True
    exclude_after: int = DEFAULT_EXCLUDE_AFTER
    state: JobState = JobState.RUNNING
    error: str | None = None
    error_detail: dict[str, Any] | None = None
    attempts_by_id: dict[str, tuple[Task, Attempt]] = field(default_factory=dict)
    running_attempts: dict[str, tuple[Task, Attempt]] = field(default_factory=dict)  # in the order they started
    worker_failures: dict[str, int] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)
    failed_attempts: int = 0
    attempt_offset: int = 0  # added to attempt numbers: a resumed job's never reuse an earlier coordinator's
    outputs_on: dict[str, set[Task]] = field(default_factory=dict)  # worker -> its DONE maps, whose output it holds
    map_bytes_total: int = 0
    map_bytes_done: int = 0

    def __post_init__(self) -> None:
        self.map_phase = Phase(self.maps)
        self.reduce_phase = Phase(self.reduces)
        for task in self.maps + self.reduces:
            _queue(self, task)
        self.map_bytes_total = sum(t.input_bytes for t in self.maps)

    @property
    def map_only(self) -> bool:
        return not self.reduces

    def all_tasks(self) -> list[Task]:
        return self.maps + self.reduces

    def maps_done(self) -> bool:
        return self.map_phase.complete

    def phase_of(self, task: Task) -> Phase:
        return self.map_phase if task.kind == "map" else self.reduce_phase

    def current_phase(self) -> Phase:
        return self.map_phase if not self.map_phase.complete else self.reduce_phase

    def has_work(self) -> bool:
        """Whether a worker asking now might get a task (pending or a backup)."""
        if self.state != JobState.RUNNING:
            return False
        phase = self.current_phase()
        return phase.has_pending() or bool(phase.backups)

    def counts(self) -> dict[str, int]:
        return {
            "maps_total": len(self.maps),
            "maps_done": self.map_phase.done,
            "reduces_total": len(self.reduces),
            "reduces_done": self.reduce_phase.done,
            "running": len(self.running_attempts),
            "failed_attempts": self.failed_attempts,
            "map_bytes_total": self.map_bytes_total,
            "map_bytes_done": self.map_bytes_done,
            "map_bytes_read": self.map_bytes_done + round(sum(
                task.input_bytes * share for task, share in self.running_progress("map").items())),
            "reduce_fraction": round((self.reduce_phase.done + sum(self.running_progress("reduce").values()))
                                     / len(self.reduces), 4) if self.reduces else 1.0,
        }

    def running_progress(self, kind: str) -> dict[Task, float]:
        """How far each unfinished task of ``kind`` that runs has got (O(running attempts))."""
        return {task: task.furthest_progress() for task, _ in self.running_attempts.values()
                if task.kind == kind and task.state != TaskState.DONE}


def new_job(job_id: str, name: str, splits: list[dict[str, Any]], num_reducers: int,
            max_attempts: int = DEFAULT_MAX_ATTEMPTS, speculative: bool = True,
            exclude_after: int = DEFAULT_EXCLUDE_AFTER) -> JobRun:
    maps = [Task("map", i, split=s) for i, s in enumerate(splits)]
    reduces = [Task("reduce", p) for p in range(num_reducers)]
    return JobRun(job_id, name, maps, reduces, max_attempts=max_attempts, speculative=speculative,
                  exclude_after=exclude_after)


# -- assignment -----------------------------------------------------------------------------
def assign(job: JobRun, worker_id: str, now_s: float, live: Collection[str] = ()) -> tuple[Task, Attempt] | None:
    """Start an attempt of the next runnable task on ``worker_id``, or return None.

    Maps come first; reduces only once every map is done. ``live`` holds the ids of the
    workers that could take tasks: a worker the job excluded, or a retry that failed on
    this worker, is skipped while another of them is a better choice.
    """
    if job.state != JobState.RUNNING:
        return None
    if worker_id in job.excluded and _someone_else(job, worker_id, live, set()):
        return None
    phase = job.current_phase()
    task = _next_pending(job, phase, worker_id, live)
    if task is not None:
        return _start_attempt(job, task, worker_id, now_s, backup=False)
    if job.speculative:
        task = _next_backup(phase, worker_id)
        if task is not None:
            return _start_attempt(job, task, worker_id, now_s, backup=True)
    return None


def _someone_else(job: JobRun, worker_id: str, live: Collection[str], failed_on: set[str]) -> bool:
    """Whether a live worker other than ``worker_id`` is neither excluded nor in ``failed_on``.
    Stops at the first one found, so it is O(1) unless the cluster is mostly broken."""
    return any(w != worker_id and w not in job.excluded and w not in failed_on for w in live)


def _next_pending(job: JobRun, phase: Phase, worker_id: str, live: Collection[str]) -> Task | None:
    """A retry that did not fail on this worker, else a fresh task, else a retry that
    failed here if no other worker could take it. Looks at most ``RETRY_SCAN`` retries."""
    for i, task in enumerate(phase.retries):
        if i >= RETRY_SCAN:
            break
        if task.state != TaskState.PENDING:  # restored as done meanwhile
            del phase.retries[i]
            task.queued = False
            break
        if worker_id not in task.failed_on:
            del phase.retries[i]
            return task
    while phase.fresh:
        task = phase.fresh.popleft()
        if task.state == TaskState.PENDING:
            return task
        task.queued = False
    for i, task in enumerate(phase.retries):
        if i >= RETRY_SCAN:
            break
        if not _someone_else(job, worker_id, live, task.failed_on):
            del phase.retries[i]
            return task
    return None


def _next_backup(phase: Phase, worker_id: str) -> Task | None:
    for _ in range(len(phase.backups)):
        task = phase.backups.popleft()
        running = task.running()
        if task.state != TaskState.RUNNING or len(running) != 1:
            task.backup_queued = False
            continue
        if running[0].worker_id == worker_id:  # not beside itself: try the next one, keep this one
            phase.backups.append(task)
            continue
        task.backup_queued = False
        return task
    return None


def _start_attempt(job: JobRun, task: Task, worker_id: str, now_s: float, backup: bool) -> tuple[Task, Attempt]:
    task.queued = False
    number = job.attempt_offset + len(task.attempts)
    attempt = Attempt(f"{job.job_id}-{task.task_id}-{number}", worker_id, now_s, backup=backup)
    task.attempts.append(attempt)
    task.state = TaskState.RUNNING
    job.attempts_by_id[attempt.attempt_id] = (task, attempt)
    job.running_attempts[attempt.attempt_id] = (task, attempt)
    return task, attempt


def _queue(job: JobRun, task: Task) -> None:
    """Put a task that became PENDING in its phase's queue."""
    task.state = TaskState.PENDING
    if task.queued:
        return
    task.queued = True
    phase = job.phase_of(task)
    (phase.retries if task.attempts else phase.fresh).append(task)


def _end_attempt(job: JobRun, attempt: Attempt, state: str, now_s: float | None = None) -> None:
    attempt.state = state
    attempt.finished_s = now_s
    job.running_attempts.pop(attempt.attempt_id, None)


def find_stragglers(job: JobRun, now_s: float) -> int:
    """Queue a backup of each running task of the current phase that has run much longer
    than its phase's median; returns how many were queued. Meant for a timer (it looks
    at the oldest running attempts only, at most ``STRAGGLER_SCAN`` of them)."""
    if not job.speculative or job.state != JobState.RUNNING:
        return 0
    phase = job.current_phase()
    median = phase.durations.median()
    if median is None:
        return 0
    threshold = max(SPECULATION_MIN_S, SPECULATION_FACTOR * median)
    queued = 0
    for looked, (task, attempt) in enumerate(job.running_attempts.values()):
        if looked >= STRAGGLER_SCAN or now_s - attempt.started_s <= threshold:
            break  # in start order: the rest started later
        if job.phase_of(task) is not phase or task.backup_queued or any(a.backup for a in task.attempts):
            continue
        if len(task.running()) == 1:
            task.backup_queued = True
            phase.backups.append(task)
            queued += 1
    return queued


def restore(job: JobRun, task: Task, attempt_id: str, worker_id: str, result: dict[str, Any]) -> bool:
    """Mark a PENDING task DONE as an earlier coordinator committed it (recovery), with no
    effects: nothing is to be done about it. Returns whether it was restored."""
    if task.state != TaskState.PENDING or job.state != JobState.RUNNING:
        return False
    attempt = Attempt(attempt_id, worker_id, 0.0, state="succeeded", finished_s=0.0)
    task.attempts.append(attempt)
    job.attempts_by_id[attempt_id] = (task, attempt)
    task.state, task.winner, task.result = TaskState.DONE, attempt, result
    job.phase_of(task).done += 1
    if task.kind == "map":
        job.map_bytes_done += task.input_bytes
        job.outputs_on.setdefault(worker_id, set()).add(task)
    return True


def finish_restored(job: JobRun) -> list[Effect]:
    """After recovery: a job whose last phase is all restored has succeeded."""
    if job.state == JobState.RUNNING and (job.reduce_phase if job.reduces else job.map_phase).complete:
        job.state = JobState.SUCCEEDED
        return [Effect("job_succeeded")]
    return []


def note_progress(job: JobRun, attempt_id: str, worker_id: str, fraction: float) -> None:
    """A running attempt's worker says how far it has got (for people to see: nothing is
    scheduled by it). Figures for attempts that ended, or that run elsewhere, are ignored."""
    found = job.running_attempts.get(attempt_id)
    if found is not None and found[1].worker_id == worker_id:
        found[1].progress = fraction


# -- ends of attempts -----------------------------------------------------------------------
def finish(job: JobRun, attempt_id: str, result: dict[str, Any], now_s: float = 0.0) -> list[Effect]:
    """An attempt succeeded: the first success of a task wins, later ones are discarded."""
    found = job.attempts_by_id.get(attempt_id)
    if found is None:
        return []
    task, attempt = found
    if attempt.state != "running" or task.state == TaskState.DONE or job.state != JobState.RUNNING:
        if attempt.state == "running":
            _end_attempt(job, attempt, "killed", now_s)
        return [Effect("discard", task, attempt, result)]
    _end_attempt(job, attempt, "succeeded", now_s)
    task.state = TaskState.DONE
    task.winner = attempt
    task.result = result
    phase = job.phase_of(task)
    phase.done += 1
    phase.durations.add(now_s - attempt.started_s)
    if task.kind == "map":
        job.map_bytes_done += task.input_bytes
        job.outputs_on.setdefault(attempt.worker_id, set()).add(task)
    effects = [Effect("commit_task", task, attempt, result)]
    for other in task.running():
        _end_attempt(job, other, "killed", now_s)
        effects.append(Effect("cancel_attempt", task, other))
    # The output is complete once the last phase is: a map rerun nobody reads is not awaited.
    if (job.reduce_phase if job.reduces else job.map_phase).complete:
        job.state = JobState.SUCCEEDED
        effects += _cancel_running(job)
        effects.append(Effect("job_succeeded"))
    return effects


def fail(job: JobRun, attempt_id: str, error: dict[str, Any]) -> list[Effect]:
    """An attempt failed: retry the task elsewhere, or fail the job after ``max_attempts``
    failures (at once if the error is ``fatal``). The worker's failures in this job are
    counted; at ``exclude_after`` it is excluded from the job (a ``worker_excluded`` effect)."""
    found = _running_attempt(job, attempt_id)
    if found is None:
        return []
    task, attempt = found
    _end_attempt(job, attempt, "failed")
    attempt.error = error
    task.last_error = error
    task.failures += 1
    task.failed_on.add(attempt.worker_id)
    job.failed_attempts += 1
    effects = [Effect("discard", task, attempt)]
    if task.state == TaskState.DONE or job.state != JobState.RUNNING:
        return effects
    effects += _count_worker_failure(job, attempt.worker_id)
    if error.get("fatal") or task.failures >= job.max_attempts:
        return effects + _fail_job(job, task, error)
    if not task.running():
        _queue(job, task)
    return effects


def _running_attempt(job: JobRun, attempt_id: str) -> tuple[Task, Attempt] | None:
    found = job.attempts_by_id.get(attempt_id)
    return found if found is not None and found[1].state == "running" else None


def _count_worker_failure(job: JobRun, worker_id: str) -> list[Effect]:
    count = job.worker_failures.get(worker_id, 0) + 1
    job.worker_failures[worker_id] = count
    if count >= job.exclude_after and worker_id not in job.excluded:
        job.excluded.add(worker_id)
        return [Effect("worker_excluded", detail={"worker_id": worker_id, "failures": count})]
    return []


def kill(job: JobRun, attempt_id: str, reason: str, now_s: float | None = None) -> list[Effect]:
    """An attempt ended through no fault of its task (its worker was lost, restarted or
    lost track of it): the task runs again, and the attempt does not count as a failure."""
    found = _running_attempt(job, attempt_id)
    if found is None:
        return []
    task, attempt = found
    _end_attempt(job, attempt, "killed", now_s)
    attempt.error = {"type": "Killed", "message": reason}
    effects = [Effect("discard", task, attempt)]
    if task.state != TaskState.DONE and job.state == JobState.RUNNING and not task.running():
        _queue(job, task)
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
    effects = kill(job, attempt_id, f"cannot fetch the output of map task {map_index}")
    attempt.error = error
    task.last_error = error
    lost = job.maps[map_index]
    stale = lost.winner is not None and (lost.winner.finished_s or 0.0) > attempt.started_s
    if lost.state == TaskState.DONE and job.state == JobState.RUNNING and not stale:
        # (a reduce that started before the map's rerun finished was given the old location)
        _undo_map(job, lost)
    return effects


def _undo_map(job: JobRun, task: Task) -> None:
    """A DONE map's output is gone: it runs again."""
    if task.winner is not None:
        job.outputs_on.get(task.winner.worker_id, set()).discard(task)
        task.winner.state = "lost"
    task.winner = None
    task.result = None
    job.map_phase.done -= 1
    job.map_bytes_done -= task.input_bytes
    _queue(job, task)


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
    for task, attempt in list(job.running_attempts.values()):
        _end_attempt(job, attempt, "killed")
        effects.append(Effect("cancel_attempt", task, attempt))
    return effects


def cancel(job: JobRun, reason: str) -> list[Effect]:
    """Stop the job at the user's request."""
    return _stop(job, JobState.CANCELLED, reason)


def abort(job: JobRun, reason: str) -> list[Effect]:
    """Fail the job for a cause outside its tasks (a task's output could not be committed)."""
    return _stop(job, JobState.FAILED, reason)


def _stop(job: JobRun, state: JobState, reason: str) -> list[Effect]:
    if job.state != JobState.RUNNING:
        return []
    job.state = state
    job.error = reason
    return [Effect("job_failed")] + _cancel_running(job)


def lose_worker(job: JobRun, worker_id: str, reason: str = "its worker was lost") -> list[Effect]:
    """A worker is gone: its running attempts are killed, and done maps whose output it
    held run again. Reduces that are running then need an output that no longer exists:
    they are killed at once (not left to time out fetching it) and run again after
    those maps. O(running attempts + the maps whose output the worker held)."""
    effects: list[Effect] = []
    for task, attempt in list(job.running_attempts.values()):
        if attempt.worker_id == worker_id:
            effects += kill(job, attempt.attempt_id, reason)
    if job.state != JobState.RUNNING or job.map_only or job.reduce_phase.complete:
        return effects
    lost = sorted(job.outputs_on.pop(worker_id, ()), key=lambda t: t.index)
    for task in lost:
        _undo_map(job, task)
    if lost:
        for task, attempt in list(job.running_attempts.values()):
            if task.kind == "reduce":
                effects += kill(job, attempt.attempt_id, f"map outputs on worker {worker_id} were lost")
                effects.append(Effect("cancel_attempt", task, attempt))
    return effects
