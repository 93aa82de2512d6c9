"""Job and task state transitions (pymr/scheduler.py), without sockets, processes or files.

Every test builds a ``JobRun`` with ``new_job`` and drives it only through the public
transitions (``assign``, ``finish``, ``fail``, ``fetch_failed``, ``cancel``,
``lose_worker``), with explicit ``now_s`` values so speculation is deterministic. The
last test runs random sequences of transitions and checks the invariants the module
docstring promises after every step.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymr.scheduler import (
    DEFAULT_MAX_ATTEMPTS,
    RunningMedian,
    abort,
    SPECULATION_FACTOR,
    SPECULATION_MIN_S,
    Attempt,
    JobRun,
    JobState,
    Task,
    TaskState,
    assign,
    cancel,
    fail,
    fetch_failed,
    find_stragglers,
    finish,
    kill,
    lose_worker,
    new_job,
    note_progress,
    task_description,
)

BOOM = {"type": "ValueError", "message": "boom"}


# -- helpers -------------------------------------------------------------------------------
def splits(n: int) -> list[dict]:
    return [{"path": f"/in/{i}", "start": 0, "end": 10, "compressed": False} for i in range(n)]


def make_job(maps: int = 3, reducers: int = 2, **options) -> JobRun:
    return new_job("j1", "test", splits(maps), reducers, **options)


def kinds(effects) -> list[str]:
    return [e.kind for e in effects]


def result(attempt: Attempt) -> dict:
    return {"files": [f"part-{attempt.attempt_id}"]}


def start(job: JobRun, worker_id: str, now_s: float = 0.0) -> tuple[Task, Attempt]:
    """``assign`` that must give something, after the coordinator's straggler timer has run."""
    find_stragglers(job, now_s)
    picked = assign(job, worker_id, now_s)
    assert picked is not None, f"nothing assigned to {worker_id} at {now_s}"
    return picked


def done(job: JobRun, attempt: Attempt, now_s: float) -> list:
    return finish(job, attempt.attempt_id, result(attempt), now_s)


def run_all_maps(job: JobRun, workers=("w1",), now_s: float = 0.0, took_s: float = 1.0) -> dict[int, Attempt]:
    """Assign every map round-robin over ``workers`` and finish each after ``took_s``."""
    started = {}
    i = 0
    while not job.maps_done():
        task, attempt = start(job, workers[i % len(workers)], now_s)
        assert task.kind == "map"
        started[task.index] = attempt
        done(job, attempt, now_s + took_s)
        i += 1
    return started


def running_attempts(job: JobRun) -> list[Attempt]:
    return [a for t in job.all_tasks() for a in t.attempts if a.state == "running"]


# -- new_job, counts, task_description --------------------------------------------------
def test_new_job_has_one_map_per_split_and_one_reduce_per_partition():
    job = make_job(maps=3, reducers=2, max_attempts=7, speculative=False)
    assert [t.task_id for t in job.maps] == ["m00000", "m00001", "m00002"]
    assert [t.task_id for t in job.reduces] == ["r00000", "r00001"]
    assert [t.split["path"] for t in job.maps] == ["/in/0", "/in/1", "/in/2"]
    assert all(t.state == TaskState.PENDING and not t.attempts for t in job.all_tasks())
    assert job.state == JobState.RUNNING and job.error is None
    assert job.max_attempts == 7 and job.speculative is False
    assert not job.map_only and make_job(reducers=0).map_only
    assert job.counts() == {"maps_total": 3, "maps_done": 0, "reduces_total": 2, "reduces_done": 0,
                            "running": 0, "failed_attempts": 0, "map_bytes_total": 30, "map_bytes_done": 0,
                            "map_bytes_read": 0, "reduce_fraction": 0.0}


def test_new_job_defaults():
    job = make_job()
    assert job.max_attempts == DEFAULT_MAX_ATTEMPTS
    assert job.speculative is True


def test_counts_follow_the_job():
    job = make_job(maps=3, reducers=1)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    _, a2 = start(job, "w3")
    assert job.counts()["running"] == 3
    done(job, a0, 1.0)
    fail(job, a1.attempt_id, BOOM)
    assert job.counts() == {"maps_total": 3, "maps_done": 1, "reduces_total": 1, "reduces_done": 0,
                            "running": 1, "failed_attempts": 1, "map_bytes_total": 30, "map_bytes_done": 10,
                            "map_bytes_read": 10, "reduce_fraction": 0.0}
    _, a3 = start(job, "w2", 2.0)  # the failed map, retried
    done(job, a3, 3.0)
    done(job, a2, 3.0)
    _, r = start(job, "w1", 4.0)
    assert r.attempt_id == "j1-r00000-0"
    assert job.counts() == {"maps_total": 3, "maps_done": 3, "reduces_total": 1, "reduces_done": 0,
                            "running": 1, "failed_attempts": 1, "map_bytes_total": 30, "map_bytes_done": 30,
                            "map_bytes_read": 30, "reduce_fraction": 0.0}
    done(job, r, 5.0)
    assert job.counts() == {"maps_total": 3, "maps_done": 3, "reduces_total": 1, "reduces_done": 1,
                            "running": 0, "failed_attempts": 1, "map_bytes_total": 30, "map_bytes_done": 30,
                            "map_bytes_read": 30, "reduce_fraction": 1.0}


def test_counts_take_in_how_far_running_tasks_have_got_as_their_workers_say():
    job = make_job(maps=3, reducers=2)
    t0, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    note_progress(job, a0.attempt_id, "w1", 0.4)
    note_progress(job, a1.attempt_id, "w9", 0.7)  # not the worker that runs it: ignored
    assert job.counts()["map_bytes_read"] == 4 and job.counts()["map_bytes_done"] == 0
    note_progress(job, a1.attempt_id, "w2", 1.0)
    assert job.counts()["map_bytes_read"] == 4 + 10
    backup = Attempt("j1-m00000-9", "w3", 0.0, backup=True)  # a backup of t0 that has got further
    t0.attempts.append(backup)
    job.running_attempts[backup.attempt_id] = (t0, backup)
    note_progress(job, backup.attempt_id, "w3", 0.6)
    assert job.counts()["map_bytes_read"] == 6 + 10  # a task counts its furthest attempt once
    fail(job, a1.attempt_id, BOOM)  # how far a failed attempt got no longer counts
    assert job.counts()["map_bytes_read"] == 6
    done(job, a0, 1.0)  # a finished map counts its whole split, once
    assert job.counts()["map_bytes_done"] == 10 and job.counts()["map_bytes_read"] == 10
    note_progress(job, a0.attempt_id, "w1", 0.9)  # a late figure for an ended attempt: ignored
    assert a0.progress == 0.4 and job.counts()["map_bytes_read"] == 10
    _, a2 = start(job, "w1", 2.0)
    done(job, a2, 3.0)
    _, a3 = start(job, "w2", 4.0)  # the failed map again
    done(job, a3, 5.0)
    _, r0 = start(job, "w1", 6.0)
    _, r1 = start(job, "w2", 6.0)
    note_progress(job, r0.attempt_id, "w1", 0.5)
    assert job.counts()["reduce_fraction"] == 0.25  # half of one of two reduces
    done(job, r1, 7.0)
    assert job.counts()["reduce_fraction"] == 0.75


def test_task_description_names_the_input_of_a_map():
    job = new_job("j1", "test", [{"path": "/data/a.txt", "start": 100, "end": 250, "compressed": False},
                                 {"path": "/data/b.gz", "start": 0, "end": 999, "compressed": True}], 1)
    assert task_description(job.maps[0]) == "map task 0 (input /data/a.txt bytes 100-250)"
    assert task_description(job.maps[1]) == "map task 1 (input /data/b.gz whole file)"
    assert task_description(job.reduces[0]) == "reduce task 0"
    assert task_description(Task("map", 3)) == "map task 3"


# -- assignment order --------------------------------------------------------------------
def test_maps_are_assigned_in_order_before_any_reduce():
    job = make_job(maps=3, reducers=2)
    picked = [start(job, f"w{i}") for i in range(3)]
    assert [(t.kind, t.index) for t, _ in picked] == [("map", 0), ("map", 1), ("map", 2)]
    assert [a.attempt_id for _, a in picked] == ["j1-m00000-0", "j1-m00001-0", "j1-m00002-0"]
    assert all(t.state == TaskState.RUNNING and a.state == "running" and not a.backup for t, a in picked)
    assert [a.worker_id for _, a in picked] == ["w0", "w1", "w2"]
    # Every map is running: nothing else to give (and nothing has finished to speculate on).
    assert assign(job, "w9", 0.5) is None


def test_no_reduce_is_assigned_until_every_map_is_done():
    job = make_job(maps=3, reducers=2, speculative=False)
    attempts = [start(job, "w1")[1] for _ in range(3)]
    done(job, attempts[0], 1.0)
    done(job, attempts[2], 1.0)
    assert assign(job, "w2", 2.0) is None
    assert all(t.state == TaskState.PENDING and not t.attempts for t in job.reduces)
    done(job, attempts[1], 3.0)
    task, attempt = start(job, "w2", 4.0)
    assert (task.kind, task.index) == ("reduce", 0)
    task, attempt = start(job, "w3", 4.0)
    assert (task.kind, task.index) == ("reduce", 1)
    assert assign(job, "w4", 4.0) is None


def test_a_failed_map_blocks_reduces_until_it_is_done():
    job = make_job(maps=2, reducers=1, speculative=False)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    done(job, a0, 1.0)
    fail(job, a1.attempt_id, BOOM)
    task, _ = start(job, "w1", 2.0)
    assert (task.kind, task.index) == ("map", 1)
    assert assign(job, "w3", 2.0) is None


def test_map_only_job_succeeds_when_all_maps_are_done():
    job = make_job(maps=2, reducers=0)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    effects = done(job, a0, 1.0)
    assert kinds(effects) == ["commit_task"]
    assert job.state == JobState.RUNNING
    effects = done(job, a1, 2.0)
    assert kinds(effects) == ["commit_task", "job_succeeded"]
    assert effects[0].task is job.maps[1] and effects[0].attempt is a1
    assert effects[0].detail == result(a1)
    assert job.state == JobState.SUCCEEDED
    assert assign(job, "w3", 3.0) is None


def test_job_with_reducers_succeeds_after_its_last_reduce():
    job = make_job(maps=2, reducers=2)
    run_all_maps(job)
    assert job.state == JobState.RUNNING
    _, r0 = start(job, "w1", 5.0)
    _, r1 = start(job, "w2", 5.0)
    assert kinds(done(job, r0, 6.0)) == ["commit_task"]
    assert job.state == JobState.RUNNING
    assert kinds(done(job, r1, 6.0)) == ["commit_task", "job_succeeded"]
    assert job.state == JobState.SUCCEEDED
    assert job.reduces[1].winner is r1 and job.reduces[1].result == result(r1)


# -- finish: exactly one commit per task --------------------------------------------------
def speculated_map(job: JobRun) -> tuple[Task, Attempt, Attempt]:
    """Map 0 is slow on w1; map 1 finished in 1 s; w2 gets a backup of map 0 at t=10."""
    task, slow = start(job, "w1", 0.0)
    _, fast = start(job, "w2", 0.0)
    done(job, fast, 1.0)
    backup_task, backup = start(job, "w2", 10.0)
    assert backup_task is task and backup.backup
    return task, slow, backup


def test_first_success_commits_and_cancels_the_other_attempt():
    job = make_job(maps=2, reducers=1)
    task, slow, backup = speculated_map(job)
    effects = done(job, backup, 11.0)
    assert kinds(effects) == ["commit_task", "cancel_attempt"]
    assert effects[0].task is task and effects[0].attempt is backup
    assert effects[1].task is task and effects[1].attempt is slow
    assert task.state == TaskState.DONE and task.winner is backup and task.result == result(backup)
    assert slow.state == "killed" and backup.state == "succeeded" and backup.finished_s == 11.0


def test_a_second_success_of_the_same_task_is_discarded_never_committed():
    job = make_job(maps=2, reducers=1)
    task, slow, backup = speculated_map(job)
    done(job, slow, 11.0)
    late = {"files": ["late-part"]}
    effects = finish(job, backup.attempt_id, late, 12.0)
    assert kinds(effects) == ["discard"]
    assert effects[0].attempt is backup and effects[0].detail == late
    assert task.winner is slow and task.result == result(slow)
    assert backup.state == "killed"
    # Reported again: still nothing committed.
    assert kinds(finish(job, backup.attempt_id, late, 13.0)) == ["discard"]
    assert kinds(finish(job, slow.attempt_id, late, 13.0)) == ["discard"]
    assert task.winner is slow and task.result == result(slow)


def test_a_duplicate_of_the_last_task_does_not_end_the_job_twice():
    job = make_job(maps=2, reducers=0)
    task, slow, backup = speculated_map(job)
    assert kinds(done(job, slow, 11.0)) == ["commit_task", "cancel_attempt", "job_succeeded"]
    assert kinds(done(job, backup, 12.0)) == ["discard"]
    assert job.state == JobState.SUCCEEDED


# -- fail and retry ----------------------------------------------------------------------
def test_fail_puts_the_task_back_to_pending_and_counts_it():
    job = make_job(maps=1, reducers=1)
    task, attempt = start(job, "w1")
    effects = fail(job, attempt.attempt_id, BOOM)
    assert kinds(effects) == ["discard"] and effects[0].attempt is attempt
    assert task.state == TaskState.PENDING
    assert task.failures == 1 and task.last_error == BOOM
    assert attempt.state == "failed"
    assert job.state == JobState.RUNNING
    # Reporting the same failure twice does not count twice.
    assert fail(job, attempt.attempt_id, BOOM) == []
    assert task.failures == 1


def test_a_retry_prefers_a_worker_where_the_task_has_not_failed():
    job = make_job(maps=2, reducers=1)
    _, a0 = start(job, "w1")
    fail(job, a0.attempt_id, BOOM)
    # Map 0 failed on w1 and map 1 is fresh: w1 takes map 1, map 0 waits for another worker.
    task, _ = start(job, "w1", 1.0)
    assert task.index == 1
    task, retry = start(job, "w2", 1.0)
    assert task.index == 0 and retry.worker_id == "w2" and retry.attempt_id == "j1-m00000-1"


def test_a_retry_takes_the_same_worker_when_nothing_else_is_pending():
    job = make_job(maps=1, reducers=1)
    _, a0 = start(job, "w1")
    fail(job, a0.attempt_id, BOOM)
    task, retry = start(job, "w1", 1.0)
    assert task.index == 0 and retry.worker_id == "w1"


def test_a_failed_attempt_leaves_the_task_running_while_another_attempt_runs():
    job = make_job(maps=2, reducers=1)
    task, slow, backup = speculated_map(job)
    assert kinds(fail(job, slow.attempt_id, BOOM)) == ["discard"]
    assert task.state == TaskState.RUNNING and task.failures == 1
    assert assign(job, "w3", 11.0) is None  # not pending: no second attempt
    assert kinds(done(job, backup, 12.0)) == ["commit_task"]
    assert task.state == TaskState.DONE


def test_a_map_failing_max_attempts_times_fails_the_job_naming_its_input():
    job = make_job(maps=3, reducers=1, max_attempts=3)
    _, other0 = start(job, "w8")  # map 0
    t = 0.0
    # Map 1 fails on every try; map 2 runs meanwhile on w9.
    task, attempt = start(job, "w1", t)
    _, other2 = start(job, "w9", t)
    assert task.index == 1
    for n in range(1, 3):
        assert kinds(fail(job, attempt.attempt_id, BOOM)) == ["discard"]
        assert task.failures == n and job.state == JobState.RUNNING
        t += 1
        task, attempt = start(job, f"w{n + 1}", t)
        assert task.index == 1
    effects = fail(job, attempt.attempt_id, {"type": "KeyError", "message": "'x'"})
    assert job.state == JobState.FAILED
    assert job.error == "map task 1 (input /in/1 bytes 0-10) failed after 3 attempt(s): KeyError: 'x'"
    assert job.error_detail["task"] == "m00001" and job.error_detail["kind"] == "map"
    assert job.error_detail["where"] == "map task 1 (input /in/1 bytes 0-10)"
    assert job.error_detail["type"] == "KeyError"
    assert kinds(effects) == ["discard", "job_failed", "cancel_attempt", "cancel_attempt"]
    assert {e.attempt.attempt_id for e in effects if e.kind == "cancel_attempt"} == {
        other0.attempt_id, other2.attempt_id}
    assert other0.state == "killed" and other2.state == "killed"
    assert running_attempts(job) == [] and job.counts()["running"] == 0
    assert assign(job, "w1", t + 1) is None


def test_a_reduce_failing_max_attempts_times_fails_the_job():
    job = make_job(maps=1, reducers=2, max_attempts=2)
    run_all_maps(job)
    task, attempt = start(job, "w1", 2.0)
    _, other = start(job, "w2", 2.0)
    assert task.index == 0
    fail(job, attempt.attempt_id, BOOM)
    task, attempt = start(job, "w3", 3.0)
    assert task.index == 0
    effects = fail(job, attempt.attempt_id, BOOM)
    assert job.state == JobState.FAILED
    assert job.error == "reduce task 0 failed after 2 attempt(s): ValueError: boom"
    assert kinds(effects) == ["discard", "job_failed", "cancel_attempt"]
    assert effects[2].attempt is other and other.state == "killed"


def test_the_error_of_a_compressed_map_says_whole_file():
    job = new_job("j1", "test", [{"path": "/in/x.gz", "start": 0, "end": 50, "compressed": True}], 0,
                  max_attempts=1)
    _, attempt = start(job, "w1")
    fail(job, attempt.attempt_id, BOOM)
    assert job.state == JobState.FAILED
    assert job.error.startswith("map task 0 (input /in/x.gz whole file) failed after 1 attempt(s)")


# -- lose_worker -------------------------------------------------------------------------
def test_losing_a_worker_kills_its_running_attempts_without_counting_them():
    job = make_job(maps=3, reducers=1)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    _, a2 = start(job, "w1")
    effects = lose_worker(job, "w1", "w1 stopped answering")
    assert kinds(effects) == ["discard", "discard"]
    assert {e.attempt.attempt_id for e in effects} == {a0.attempt_id, a2.attempt_id}
    assert a0.state == "killed" and a2.state == "killed" and a1.state == "running"
    assert a0.error == {"type": "Killed", "message": "w1 stopped answering"}
    assert [t.state for t in job.maps] == [TaskState.PENDING, TaskState.RUNNING, TaskState.PENDING]
    assert job.maps[0].failures == 0 and not job.maps[0].failed_on  # not the task's fault
    assert job.counts()["failed_attempts"] == 0 and job.counts()["running"] == 1
    assert job.state == JobState.RUNNING


def test_losing_workers_any_number_of_times_never_fails_the_job():
    job = make_job(maps=1, reducers=1, max_attempts=2)
    for i in range(5):
        start(job, f"w{i}", float(i))
        assert not any(e.kind == "job_failed" for e in lose_worker(job, f"w{i}"))
    task, attempt = start(job, "w9", 9.0)
    assert task.index == 0 and attempt.attempt_id == "j1-m00000-5"
    assert job.state == JobState.RUNNING


def test_losing_a_worker_reruns_the_done_maps_it_held_while_reduces_need_them():
    job = make_job(maps=4, reducers=2, speculative=False)
    attempts = run_all_maps(job, workers=("w1", "w2"))
    assert [attempts[i].worker_id for i in range(4)] == ["w1", "w2", "w1", "w2"]
    _, r0 = start(job, "w3", 5.0)
    done(job, r0, 6.0)  # reduce 0 done, reduce 1 not started yet
    effects = lose_worker(job, "w1")
    assert effects == []  # nothing was running on w1
    assert [t.state for t in job.maps] == [TaskState.PENDING, TaskState.DONE, TaskState.PENDING, TaskState.DONE]
    assert job.maps[0].winner is None and job.maps[0].result is None
    assert attempts[0].state == "lost" and attempts[1].state == "succeeded"
    assert job.maps[0].failures == 0  # the map itself did nothing wrong
    assert job.reduces[0].state == TaskState.DONE  # its output is committed: keep it
    # The lost maps run again before the remaining reduce.
    assert [start(job, "w2", 7.0)[0].index for _ in range(2)] == [0, 2]
    assert assign(job, "w3", 7.0) is None
    for task in job.maps:
        if task.state == TaskState.RUNNING:
            done(job, task.running()[0], 8.0)
    task, r1 = start(job, "w3", 9.0)
    assert (task.kind, task.index) == ("reduce", 1)
    assert kinds(done(job, r1, 10.0)) == ["commit_task", "job_succeeded"]


def test_losing_a_worker_in_the_map_phase_reruns_its_done_maps():
    job = make_job(maps=3, reducers=1, speculative=False)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    done(job, a0, 1.0)
    lose_worker(job, "w1")
    assert job.maps[0].state == TaskState.PENDING and job.maps[1].state == TaskState.RUNNING
    assert a1.state == "running"


def test_losing_a_worker_after_every_reduce_is_done_reruns_nothing():
    job = make_job(maps=2, reducers=1)
    run_all_maps(job, workers=("w1",))
    _, r0 = start(job, "w2", 5.0)
    done(job, r0, 6.0)
    assert job.state == JobState.SUCCEEDED
    assert lose_worker(job, "w1") == []
    assert all(t.state == TaskState.DONE for t in job.maps)
    assert job.state == JobState.SUCCEEDED


def lost_map_under_a_running_reduce() -> tuple[JobRun, Attempt, list]:
    """Maps 0 (w1) and 1 (w2) done, the only reduce running on w3, then w1 is lost."""
    job = make_job(maps=2, reducers=1, speculative=False)
    run_all_maps(job, workers=("w1", "w2"))
    _, r0 = start(job, "w3", 5.0)
    effects = lose_worker(job, "w1")
    assert job.maps[0].state == TaskState.PENDING
    return job, r0, effects


def test_a_running_reduce_is_killed_at_once_when_a_map_output_it_needs_is_lost():
    """It would only wait out its fetch timeouts: it runs again once the map has."""
    job, r0, effects = lost_map_under_a_running_reduce()
    assert kinds(effects) == ["discard", "cancel_attempt"] and effects[1].attempt is r0
    assert r0.state == "killed" and job.reduces[0].state == TaskState.PENDING and job.reduces[0].failures == 0
    assert kinds(done(job, r0, 6.0)) == ["discard"]  # its late result is not used
    assert assign(job, "w3", 6.0)[0].kind == "map"  # map 0 first, then the reduce
    done(job, job.maps[0].running()[0], 7.0)
    task, r0_again = start(job, "w3", 8.0)
    assert (task.kind, task.index) == ("reduce", 0)
    assert kinds(done(job, r0_again, 9.0)) == ["commit_task", "job_succeeded"]


def test_once_every_reduce_is_done_losing_a_worker_reruns_no_map():
    job = make_job(maps=2, reducers=1)
    run_all_maps(job, workers=("w1", "w2"))
    _, r0 = start(job, "w3", 5.0)
    done(job, r0, 6.0)
    assert lose_worker(job, "w1") == [] and lose_worker(job, "w2") == []
    assert all(t.state == TaskState.DONE and t.winner.state == "succeeded" for t in job.maps)
    assert job.state == JobState.SUCCEEDED


def test_losing_a_worker_keeps_the_committed_maps_of_a_map_only_job():
    job = make_job(maps=3, reducers=0)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    _, a2 = start(job, "w1")
    done(job, a0, 1.0)
    effects = lose_worker(job, "w1")
    assert kinds(effects) == ["discard"] and effects[0].attempt is a2
    assert job.maps[0].state == TaskState.DONE and job.maps[0].winner is a0 and a0.state == "succeeded"
    assert job.maps[2].state == TaskState.PENDING
    task, retry = start(job, "w2", 2.0)
    assert task.index == 2
    done(job, a1, 3.0)
    assert kinds(done(job, retry, 3.0)) == ["commit_task", "job_succeeded"]


def test_losing_an_unknown_worker_changes_nothing():
    job = make_job(maps=2, reducers=1)
    run_all_maps(job, workers=("w1",))
    assert lose_worker(job, "nobody") == []
    assert job.maps_done()


# -- fetch_failed ------------------------------------------------------------------------
def test_fetch_failure_reruns_the_map_without_counting_against_the_reduce():
    job = make_job(maps=3, reducers=2, speculative=False)
    attempts = run_all_maps(job, workers=("w1", "w2"))
    task, r0 = start(job, "w3", 5.0)
    _, r1 = start(job, "w4", 5.0)
    error = {"type": "FetchError", "message": "no route", "fetch_failed": 1}
    effects = fetch_failed(job, r0.attempt_id, 1, error)
    assert kinds(effects) == ["discard"] and effects[0].attempt is r0
    assert task.state == TaskState.PENDING and task.failures == 0 and task.fetch_failures == 1
    assert r0.state == "killed" and r0.error == error
    assert job.counts()["failed_attempts"] == 0
    lost = job.maps[1]
    assert lost.state == TaskState.PENDING and lost.winner is None and lost.result is None
    assert attempts[1].state == "lost"
    assert job.maps[0].state == TaskState.DONE and job.maps[2].state == TaskState.DONE
    assert r1.state == "running"  # the other reduce keeps going
    # The map runs again; no reduce is handed out until it is done.
    m, rerun = start(job, "w5", 6.0)
    assert (m.kind, m.index) == ("map", 1)
    assert assign(job, "w3", 6.0) is None
    assert assign(job, "w6", 6.0) is None
    assert kinds(done(job, rerun, 7.0)) == ["commit_task"]
    task2, r0_again = start(job, "w6", 8.0)
    assert (task2.kind, task2.index) == ("reduce", 0)
    done(job, r1, 9.0)
    assert kinds(done(job, r0_again, 9.0)) == ["commit_task", "job_succeeded"]


def test_two_reduces_failing_to_fetch_the_same_map_rerun_it_once():
    job = make_job(maps=2, reducers=2, speculative=False)
    run_all_maps(job)
    _, r0 = start(job, "w2", 5.0)
    _, r1 = start(job, "w3", 5.0)
    fetch_failed(job, r0.attempt_id, 0, BOOM)
    _, rerun = start(job, "w4", 6.0)
    fetch_failed(job, r1.attempt_id, 0, BOOM)
    assert job.maps[0].state == TaskState.RUNNING and job.maps[0].running() == [rerun]
    assert len(job.maps[0].attempts) == 2
    assert assign(job, "w5", 6.0) is None
    done(job, rerun, 7.0)
    assert {start(job, w, 8.0)[0].index for w in ("w2", "w3")} == {0, 1}


def test_fetch_failure_with_a_bad_map_index_or_unknown_attempt_is_ignored():
    job = make_job(maps=2, reducers=1)
    run_all_maps(job)
    task, r0 = start(job, "w2", 5.0)
    assert fetch_failed(job, r0.attempt_id, 2, BOOM) == []
    assert fetch_failed(job, r0.attempt_id, -1, BOOM) == []
    assert fetch_failed(job, "j1-r00000-99", 0, BOOM) == []
    assert r0.state == "running" and task.state == TaskState.RUNNING and task.fetch_failures == 0
    assert job.maps_done()


def test_a_fetch_failure_from_a_cancelled_duplicate_is_ignored():
    """Reduce 0's backup won and its original was cancelled, but the original's fetch-failure
    report crossed the cancel. Reduce 0 needs nothing any more: like ``fail`` and ``finish``
    for an attempt that is no longer running, the report must change nothing; otherwise map 0
    reruns for no one and the job cannot end when its last reduce is done."""
    job = make_job(maps=2, reducers=3)
    run_all_maps(job, workers=("w1", "w2"))
    _, original = start(job, "w1", 5.0)  # reduce 0, the straggler
    _, r1 = start(job, "w2", 5.0)
    _, r2 = start(job, "w4", 5.0)
    done(job, r2, 6.0)
    task, backup = start(job, "w3", 100.0)
    assert task is job.reduces[0] and backup.backup
    assert kinds(done(job, backup, 101.0)) == ["commit_task", "cancel_attempt"]
    assert original.state == "killed"

    effects = fetch_failed(job, original.attempt_id, 0, {"type": "FetchError", "message": "gone", "fetch_failed": 0})
    assert effects == []
    assert job.maps[0].state == TaskState.DONE, "a map reran for a reduce that is already done"
    assert task.fetch_failures == 0
    assert kinds(done(job, r1, 102.0)) == ["commit_task", "job_succeeded"]
    assert job.state == JobState.SUCCEEDED


def test_too_many_fetch_failures_of_one_reduce_fail_the_job():
    job = make_job(maps=1, reducers=1, max_attempts=2, speculative=False)
    now = 0.0
    reports = 0
    while job.state == JobState.RUNNING:
        assert reports < 10 * job.max_attempts, "fetch failures never end the job"
        task, attempt = start(job, "w1", now)
        now += 1
        if task.kind == "map":
            done(job, attempt, now)
        else:
            fetch_failed(job, attempt.attempt_id, 0, {"type": "FetchError", "message": "gone", "fetch_failed": 0})
            reports += 1
    assert job.state == JobState.FAILED
    assert job.reduces[0].fetch_failures == reports
    assert job.error.startswith("reduce task 0 failed after 2 attempt(s): FetchError: gone")
    # Each report before the limit reran the map; none after the job failed.
    assert reports > 2 * job.max_attempts


# -- speculative backups -----------------------------------------------------------------
def straggling_map_job(speculative: bool = True, finished: tuple[float, ...] = (1.0, 1.0, 1.0)) -> JobRun:
    """Map 0 starts on w0 at t=0 and never ends; the other maps take ``finished`` seconds."""
    job = make_job(maps=1 + len(finished), reducers=1, speculative=speculative)
    start(job, "w0", 0.0)
    for i, took_s in enumerate(finished):
        task, attempt = start(job, f"w{i + 1}", 0.0)
        done(job, attempt, took_s)
    return job


def test_a_straggler_gets_one_backup_on_another_worker_after_the_threshold():
    job = straggling_map_job()
    threshold = max(SPECULATION_MIN_S, SPECULATION_FACTOR * 1.0)
    assert assign(job, "w1", threshold) is None  # not beyond the threshold yet
    assert assign(job, "w0", threshold + 100) is None  # never on the worker running it
    task, backup = start(job, "w1", threshold + 0.01)
    assert task is job.maps[0] and backup.backup and backup.worker_id == "w1"
    assert backup.attempt_id == "j1-m00000-1" and backup.started_s == threshold + 0.01
    assert len(task.running()) == 2
    assert job.counts()["running"] == 2
    # At most one backup per task, however long it runs.
    assert assign(job, "w2", threshold + 100) is None
    assert assign(job, "w3", 1000.0) is None


def test_the_threshold_is_a_factor_of_the_median_finished_time():
    # Median 10 s (mean would be 40 s): the threshold is 2 * 10 = 20 s.
    job = straggling_map_job(finished=(10.0, 10.0, 100.0))
    assert assign(job, "w9", 20.0) is None
    task, backup = start(job, "w9", 20.5)
    assert task.index == 0 and backup.backup


def test_the_threshold_is_at_least_speculation_min_s():
    job = straggling_map_job(finished=(0.1, 0.1, 0.1))
    assert assign(job, "w9", SPECULATION_MIN_S) is None
    task, backup = start(job, "w9", SPECULATION_MIN_S + 0.01)
    assert task.index == 0 and backup.backup


def test_no_backup_before_any_task_of_the_phase_has_finished():
    job = make_job(maps=2, reducers=1)
    start(job, "w1", 0.0)
    start(job, "w2", 0.0)
    assert assign(job, "w3", 1e6) is None


def test_speculative_false_gives_no_backup():
    job = straggling_map_job(speculative=False)
    assert assign(job, "w9", 1e6) is None
    assert all(not a.backup for t in job.maps for a in t.attempts)


def test_pending_tasks_come_before_backups():
    job = make_job(maps=3, reducers=1)
    start(job, "w0", 0.0)
    _, a1 = start(job, "w1", 0.0)
    done(job, a1, 1.0)
    fail(job, start(job, "w2", 0.0)[1].attempt_id, BOOM)
    task, attempt = start(job, "w3", 100.0)
    assert task.index == 2 and not attempt.backup
    task, attempt = start(job, "w4", 100.0)
    assert task.index == 0 and attempt.backup


def test_the_longest_running_straggler_gets_the_backup_first():
    job = make_job(maps=4, reducers=1)
    start(job, "w0", 0.0)  # map 0, the oldest
    start(job, "w1", 2.0)  # map 1
    for w in ("w2", "w3"):
        _, a = start(job, w, 2.0)
        done(job, a, 3.0)
    task, backup = start(job, "w9", 50.0)
    assert task.index == 0 and backup.backup
    task, backup = start(job, "w9", 50.0)
    assert task.index == 1 and backup.backup
    assert assign(job, "w9", 50.0) is None


def test_reduces_are_speculated_from_reduce_times_only():
    # Maps took 100 s each; reduces take 1 s: a reduce running 5 s is a straggler.
    job = make_job(maps=2, reducers=3)
    run_all_maps(job, workers=("w1", "w2"), took_s=100.0)
    _, slow = start(job, "w1", 200.0)
    for w in ("w2", "w3"):
        _, r = start(job, w, 200.0)
        done(job, r, 201.0)
    assert assign(job, "w2", 200.0 + SPECULATION_MIN_S) is None
    task, backup = start(job, "w2", 205.0)
    assert task is job.reduces[0] and backup.backup
    effects = done(job, backup, 206.0)
    assert kinds(effects) == ["commit_task", "cancel_attempt", "job_succeeded"]
    assert effects[1].attempt is slow and slow.state == "killed"


def test_a_failed_backup_does_not_get_a_second_backup():
    job = straggling_map_job()
    task, backup = start(job, "w1", 10.0)
    fail(job, backup.attempt_id, BOOM)
    assert task.state == TaskState.RUNNING and len(task.running()) == 1
    assert assign(job, "w2", 100.0) is None


# -- cancel and finished jobs ------------------------------------------------------------
def test_cancel_stops_the_job_and_its_running_attempts():
    job = make_job(maps=3, reducers=1)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    done(job, a1, 1.0)
    _, a2 = start(job, "w3")
    effects = cancel(job, "stopped by the user")
    assert job.state == JobState.CANCELLED and job.error == "stopped by the user"
    assert kinds(effects) == ["job_failed", "cancel_attempt", "cancel_attempt"]
    assert [e.attempt for e in effects[1:]] == [a0, a2]
    assert a0.state == "killed" and a2.state == "killed" and a1.state == "succeeded"
    assert job.counts()["running"] == 0
    assert cancel(job, "again") == [] and job.error == "stopped by the user"


def finished_jobs():
    """(description, job, a killed attempt or None) for a succeeded, a failed and a cancelled job."""
    ok = make_job(maps=1, reducers=1)
    run_all_maps(ok)
    done(ok, start(ok, "w1", 5.0)[1], 6.0)

    failed = make_job(maps=2, reducers=1, max_attempts=1)
    _, victim = start(failed, "w1")
    _, bad = start(failed, "w2")
    fail(failed, bad.attempt_id, BOOM)

    cancelled = make_job(maps=2, reducers=1)
    _, stopped = start(cancelled, "w1")
    cancel(cancelled, "bye")
    return [("succeeded", ok, None), ("failed", failed, victim), ("cancelled", cancelled, stopped)]


@pytest.mark.parametrize("which", ["succeeded", "failed", "cancelled"])
def test_transitions_on_a_finished_job_change_nothing(which):
    _, job, killed = next(j for j in finished_jobs() if j[0] == which)
    state, error, counts = job.state, job.error, job.counts()
    task_states = [(t.state, t.winner, t.failures, [a.state for a in t.attempts]) for t in job.all_tasks()]

    assert assign(job, "w7", 100.0) is None
    assert cancel(job, "late") == []
    assert lose_worker(job, "w1") == []
    assert lose_worker(job, "w2") == []
    for task in job.all_tasks():
        for attempt in task.attempts:
            effects = finish(job, attempt.attempt_id, {"files": ["late"]}, 100.0)
            assert set(kinds(effects)) <= {"discard"}
            assert fail(job, attempt.attempt_id, BOOM) == []
    for reduce in job.reduces:
        for attempt in reduce.attempts:
            assert fetch_failed(job, attempt.attempt_id, 0, BOOM) == []
    if killed is not None:
        assert kinds(finish(job, killed.attempt_id, {"files": ["late"]}, 100.0)) == ["discard"]
    assert finish(job, "no-such-attempt", {}, 100.0) == []

    assert (job.state, job.error, job.counts()) == (state, error, counts)
    assert [(t.state, t.winner, t.failures, [a.state for a in t.attempts]) for t in job.all_tasks()] == task_states


def test_unknown_attempt_ids_are_ignored_on_a_running_job():
    job = make_job(maps=2, reducers=1)
    task, attempt = start(job, "w1")
    before = job.counts()
    assert finish(job, "j1-m00001-0", {"files": []}, 1.0) == []
    assert fail(job, "j2-m00000-0", BOOM) == []
    assert fetch_failed(job, "nope", 0, BOOM) == []
    assert job.counts() == before and task.state == TaskState.RUNNING and attempt.state == "running"


# -- random sequences --------------------------------------------------------------------
OPS = st.lists(
    st.tuples(st.sampled_from(["assign", "assign", "assign", "finish", "finish", "fail", "fetch", "lose",
                               "stale_finish", "cancel"]),
              st.integers(0, 3), st.integers(0, 50), st.floats(0.0, 10.0)),
    max_size=60)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maps=st.integers(1, 4), reducers=st.integers(0, 3), max_attempts=st.integers(1, 3), ops=OPS)
def test_invariants_hold_under_random_transitions(maps, reducers, max_attempts, ops):
    job = make_job(maps=maps, reducers=reducers, max_attempts=max_attempts)
    now = 0.0
    committed: dict[str, int] = {}  # final outputs: reduces, and maps of a map-only job
    ended = 0
    all_attempts: list[Attempt] = []
    for op, w, pick, dt in ops:
        now += dt
        worker = f"w{w}"
        running = running_attempts(job)
        effects = []
        if op == "assign":
            was_maps_done = job.maps_done()
            find_stragglers(job, now)
            picked = assign(job, worker, now, live={f"w{i}" for i in range(4)})
            if picked is not None:
                task, attempt = picked
                all_attempts.append(attempt)
                assert attempt.worker_id == worker and attempt.state == "running"
                if task.kind == "reduce":
                    assert was_maps_done, "a reduce was assigned while a map was not done"
                others = [a for a in task.running() if a is not attempt]
                if attempt.backup:
                    assert job.speculative and len(others) == 1 and others[0].worker_id != worker
                    assert sum(a.backup for a in task.attempts) == 1
                else:
                    assert others == []
        elif op in ("finish", "fail") and running:
            attempt = running[pick % len(running)]
            effects = (done(job, attempt, now) if op == "finish" else fail(job, attempt.attempt_id, BOOM))
        elif op == "fetch" and running:
            reduces = [a for a in running if job.attempts_by_id[a.attempt_id][0].kind == "reduce"]
            if reduces:
                effects = fetch_failed(job, reduces[pick % len(reduces)].attempt_id, pick % maps, BOOM)
        elif op == "lose":
            effects = lose_worker(job, worker)
        elif op == "stale_finish" and all_attempts:
            attempt = all_attempts[pick % len(all_attempts)]
            if attempt.state != "running":
                effects = done(job, attempt, now)
                assert "commit_task" not in kinds(effects)
        elif op == "cancel" and pick == 0:
            effects = cancel(job, "random cancel")

        for effect in effects:
            if effect.kind == "commit_task":
                task = effect.task
                if task.kind == "reduce" or job.map_only:
                    committed[task.task_id] = committed.get(task.task_id, 0) + 1
                    assert committed[task.task_id] == 1, f"{task.task_id} committed twice"
            if effect.kind in ("job_succeeded", "job_failed"):
                ended += 1
        assert ended <= 1, "the job ended twice"
        if "job_succeeded" in kinds(effects):
            assert job.state == JobState.SUCCEEDED
            assert all(t.state == TaskState.DONE for t in job.all_tasks())
        if "job_failed" in kinds(effects):
            assert job.state in (JobState.FAILED, JobState.CANCELLED)

        # State that must hold after every step.
        for task in job.all_tasks():
            live = task.running()
            if job.state == JobState.RUNNING:
                assert (task.state == TaskState.RUNNING) == bool(live), (task.task_id, task.state, live)
            else:
                assert live == []
            assert len(live) <= 2
            if task.state == TaskState.DONE:
                assert task.winner is not None and task.winner.state == "succeeded"
            assert sum(a.state == "succeeded" for a in task.attempts) >= (task.state == TaskState.DONE)
            assert task.failures < job.max_attempts or job.state == JobState.FAILED
        assert job.counts()["running"] == len(running_attempts(job))
        # The O(1) counters and queues agree with the tasks themselves.
        counts = job.counts()
        assert counts["maps_done"] == sum(t.state == TaskState.DONE for t in job.maps)
        assert counts["reduces_done"] == sum(t.state == TaskState.DONE for t in job.reduces)
        assert counts["failed_attempts"] == sum(t.failures for t in job.all_tasks())
        assert counts["map_bytes_done"] == sum(t.input_bytes for t in job.maps if t.state == TaskState.DONE)
        holders = {w: tasks for w, tasks in job.outputs_on.items() if tasks}
        expected: dict[str, set] = {}
        for task in job.maps:
            if task.state == TaskState.DONE:
                expected.setdefault(task.winner.worker_id, set()).add(task)
        if job.state == JobState.RUNNING and not job.map_only:
            assert holders == expected
        if job.state == JobState.RUNNING:
            for task in job.all_tasks():
                in_queue = task in job.phase_of(task).fresh or task in job.phase_of(task).retries
                assert in_queue == (task.state == TaskState.PENDING), (task.task_id, task.state)
        if job.state == JobState.RUNNING:
            assert ended == 0
        if job.state == JobState.SUCCEEDED:
            assert set(committed) == {t.task_id for t in (job.reduces or job.maps)}


# -- excluding failing workers, killed attempts, fatal errors ------------------------------------
def test_a_worker_that_fails_twice_gets_no_more_tasks_of_the_job_while_others_can_take_them():
    job = make_job(maps=6, reducers=1)
    live = {"bad", "good"}
    for _ in range(2):
        _, attempt = assign(job, "bad", 0.0, live)
        effects = fail(job, attempt.attempt_id, {"type": "OSError", "message": "read-only file system"})
    assert kinds(effects) == ["discard", "worker_excluded"] and effects[1].detail == {"worker_id": "bad", "failures": 2}
    assert job.excluded == {"bad"}
    assert assign(job, "bad", 1.0, live) is None  # 'good' can take them
    while not job.maps_done():
        done(job, assign(job, "good", 1.0, live)[1], 2.0)
    assert job.maps_done() and all(t.failures <= 1 for t in job.maps)
    # Alone, an excluded worker still gets work: a job never waits for a worker that is not there.
    task, _ = assign(job, "bad", 3.0, {"bad"})
    assert task.kind == "reduce"


def test_a_retry_skips_the_worker_it_failed_on_unless_no_other_could_take_it():
    job = make_job(maps=1, reducers=1, exclude_after=99)
    _, a0 = assign(job, "w1", 0.0, {"w1", "w2"})
    fail(job, a0.attempt_id, BOOM)
    assert assign(job, "w1", 1.0, {"w1", "w2"}) is None
    assert assign(job, "w1", 1.0, {"w1"})[0].index == 0


def test_a_fatal_error_fails_the_job_at_once():
    job = make_job(maps=2, reducers=1, max_attempts=4)
    _, a0 = start(job, "w1")
    _, a1 = start(job, "w2")
    error = {"type": "ModuleNotFoundError", "message": "No module named 'helpers'", "fatal": True}
    effects = fail(job, a0.attempt_id, error)
    assert "job_failed" in kinds(effects) and job.state == JobState.FAILED
    assert [e.attempt for e in effects if e.kind == "cancel_attempt"] == [a1]
    assert "failed after 1 attempt(s)" in job.error and "No module named 'helpers'" in job.error


def test_kill_retries_the_task_without_counting_a_failure():
    job = make_job(maps=1, reducers=1, max_attempts=1)
    _, a0 = start(job, "w1")
    assert kinds(kill(job, a0.attempt_id, "its worker lost track of it")) == ["discard"]
    assert a0.state == "killed" and job.maps[0].failures == 0 and job.maps[0].state == TaskState.PENDING
    assert kill(job, a0.attempt_id, "again") == []  # only a running attempt can be killed
    _, a1 = start(job, "w1", 1.0)
    assert kinds(done(job, a1, 2.0)) == ["commit_task"]


def test_abort_fails_the_job_and_cancels_what_runs():
    job = make_job(maps=2, reducers=1)
    _, a0 = start(job, "w1")
    effects = abort(job, "committing reduce task 0 failed: disk full")
    assert kinds(effects) == ["job_failed", "cancel_attempt"] and job.state == JobState.FAILED
    assert job.error == "committing reduce task 0 failed: disk full" and abort(job, "twice") == []


def test_stragglers_are_found_by_the_timer_not_by_assign():
    job = make_job(maps=3, reducers=1)
    _, slow = assign(job, "w1", 0.0)
    for w in ("w2", "w3"):
        _, a = assign(job, w, 0.0)
        done(job, a, 1.0)
    assert assign(job, "w2", 100.0) is None  # no timer ran yet
    assert find_stragglers(job, 100.0) == 1 and find_stragglers(job, 100.0) == 0  # queued once
    task, backup = assign(job, "w2", 100.0)
    assert task.index == 0 and backup.backup


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_the_running_median_is_the_median(values):
    import statistics

    median = RunningMedian()
    for i, value in enumerate(values):
        median.add(value)
        assert median.median() == pytest.approx(statistics.median(values[:i + 1]))


def test_a_large_job_keeps_counts_without_scanning_its_tasks():
    job = new_job("big", "test", splits(20_000), 100)
    for i in range(20_000):
        _, attempt = assign(job, f"w{i % 50}", float(i))
        done(job, attempt, float(i) + 0.5)
    assert job.counts()["maps_done"] == 20_000 and job.maps_done()
    assert assign(job, "w0", 1e6)[0].kind == "reduce"
