"""The coordinator: a thin ZeroMQ loop over ``scheduler``'s job state.

It tracks the workers that registered (id, ZeroMQ identity, slots, running attempts,
the jobs whose code they hold, when they were last heard from) and the jobs that
clients submitted (their ``JobRun``, spec, code blob, committer and the client to tell).

Each event (a message, or a worker falling silent for ``worker_timeout_s``) becomes a
scheduler transition; the effects it returns are carried out here (task and job
commits, cancels), then ``dispatch`` hands pending tasks to workers with free slots.
A job that ends while attempts of it are still being cancelled waits (at most
``STOP_WAIT_S``) until their workers confirm them dead before its output is committed
or aborted and the client is told: else an attempt still running could write into an
output folder after it was cleaned up.
The coordinator never unpickles job code: it only forwards the blob, once per worker
per job.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import zmq

from . import protocol as proto
from . import scheduler as sched
from . import status
from . import storage
from .errors import PymrError, ProtocolError
from .inputs import DEFAULT_SPLIT_SIZE, plan_splits, require_record_batches
from .outputs import OutputCommitter, output_committer
from .security import ClusterKey, Security

log = logging.getLogger("pymr.coordinator")
POLL_MS = 100
PROGRESS_INTERVAL_S = 0.25
CLIENT_HEARTBEAT_S = 5.0  # progress is sent at least this often, so a client can tell we are alive
MAX_REMEMBERED_SUBMISSIONS = 1000
STOP_WAIT_S = 10.0  # how long an ended job waits for its cancelled attempts to be confirmed dead


@dataclass
class WorkerInfo:
    worker_id: str
    identity: bytes
    slots: int
    last_seen_s: float
    running: set[str] = field(default_factory=set)
    jobs_loaded: set[str] = field(default_factory=set)

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)


@dataclass
class ActiveJob:
    run: sched.JobRun
    spec: dict[str, Any]
    code: bytes
    committer: OutputCommitter
    client: bytes
    started_s: float
    error_blob: bytes | None = None
    last_progress: dict[str, int] | None = None
    last_progress_s: float = 0.0
    stopping: dict[str, str] = field(default_factory=dict)  # cancelled attempt -> its worker, until confirmed
    ended_s: float | None = None  # when the job ended, while it waits for ``stopping`` to empty

    @property
    def job_id(self) -> str:
        return self.run.job_id


class Coordinator:
    """Serves workers and clients on one ROUTER socket until ``stop()``."""

    def __init__(self, bind: str = "tcp://127.0.0.1:*", worker_timeout_s: float = proto.WORKER_TIMEOUT_S,
                 key: ClusterKey | None = None, stop_wait_s: float = STOP_WAIT_S):
        self.worker_timeout_s = worker_timeout_s
        self.stop_wait_s = stop_wait_s
        self.context = zmq.Context()
        self.security = Security(self.context, key)
        self.socket = self.security.server(proto.configure(self.context.socket(zmq.ROUTER)))
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # fail loudly on vanished peers
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted worker takes over its id
        self.socket.bind(bind)
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.workers: dict[str, WorkerInfo] = {}
        self.jobs: dict[str, ActiveJob] = {}
        self.submissions: dict[str, str] = {}  # request id -> job id, so a resent submit is not run twice
        self._stop = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()  # stop() wakes the loop at once
        self.finished = status.FinishedJobs()  # what the status page and `pymr jobs --all` list
        self.totals = status.Totals()
        self.board = status.StatusBoard()  # the HTTP server's questions, answered on this loop

    # -- loop ------------------------------------------------------------------------------
    def serve(self) -> None:
        """Handle messages until stopped; then close the socket (linger 0)."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        try:
            next_dispatch = 0.0
            while not self._stop.is_set():
                if poller.poll(POLL_MS):
                    self._receive_all()
                self._expire_workers()
                self._finish_ended_jobs()
                self._send_progress()
                self.board.answer(self._status_answer)
                if time.monotonic() >= next_dispatch:  # stragglers become worth a backup as time passes
                    self._dispatch()
                    next_dispatch = time.monotonic() + 0.5
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._wake_write.send(b"x")
        except OSError:  # already shut down
            pass

    def _receive_all(self) -> None:
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, rest = frames[0], frames[1:]
            try:
                self._handle(identity, proto.unpack(rest))
            except ProtocolError as exc:
                log.warning("dropped a malformed message from %r: %s", identity[:32], exc)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("dropped an invalid message from %r: %r", identity[:32], exc)

    def _send(self, identity: bytes, kind: str, body: dict[str, Any] | None = None, *blobs: bytes) -> bool:
        try:
            self.socket.send_multipart([identity, *proto.pack(kind, body, *blobs)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH with ROUTER_MANDATORY, or EAGAIN at the HWM
            log.warning("cannot send %s to %r: %s", kind, identity[:32], exc)
            return False

    def _handle(self, identity: bytes, msg: proto.Message) -> None:
        handler = getattr(self, "_on_" + msg.kind, None)
        if handler is None:
            raise ProtocolError(f"a coordinator does not accept {msg.kind!r}")
        worker = self._worker_by_identity(identity)
        if worker is not None:
            worker.last_seen_s = time.monotonic()
        handler(identity, msg)

    def _worker_by_identity(self, identity: bytes) -> WorkerInfo | None:
        worker = self.workers.get(identity.decode("utf-8", "replace"))
        return worker if worker is not None and worker.identity == identity else None

    # -- workers ---------------------------------------------------------------------------
    def _on_register(self, identity: bytes, msg: proto.Message) -> None:
        problem = proto.version_mismatch(msg.body.get("versions", {}))
        if problem:
            log.warning("refused worker %r: %s", identity[:32], problem)
            self._send(identity, proto.REFUSED, {"error": problem})
            return
        worker_id = identity.decode("utf-8", "replace")
        if worker_id in self.workers:
            self._lose_worker(worker_id, "it registered again (restarted)")
        slots = max(1, int(msg.body.get("slots", 1)))
        self.workers[worker_id] = WorkerInfo(worker_id, identity, slots, time.monotonic())
        vars(self.workers[worker_id]).update(host=msg.body.get("host"), shuffle_address=msg.body.get("shuffle_address"))
        log.info("worker %s joined with %d slot(s)", worker_id, slots)
        self._send(identity, proto.WELCOME, {"heartbeat_s": proto.HEARTBEAT_INTERVAL_S})
        self._dispatch()

    def _on_heartbeat(self, identity: bytes, msg: proto.Message) -> None:
        worker = self._worker_by_identity(identity)
        if worker is None:
            self._send(identity, proto.REFUSED, {"error": "unknown worker: register first", "reregister": True})
            return
        self._send(identity, proto.HEARTBEAT)
        self._reconcile(worker, set(map(str, msg.body.get("running", []))))

    def _reconcile(self, worker: WorkerInfo, reported: set[str]) -> None:
        """Attempts the worker does not know of (a lost ASSIGN or result) are retried."""
        now = time.monotonic()
        for attempt_id in list(worker.running - reported):
            for active in list(self.jobs.values()):
                found = active.run.attempts_by_id.get(attempt_id)
                if found and now - found[1].started_s > 3 * proto.HEARTBEAT_INTERVAL_S:
                    log.warning("worker %s does not know attempt %s; retrying it", worker.worker_id, attempt_id)
                    worker.running.discard(attempt_id)
                    self._apply(active, sched.fail(active.run, attempt_id, {
                        "type": "AttemptLost", "message": f"worker {worker.worker_id} lost track of it"},
                        counts_as_failure=False))
        self._dispatch()

    def _on_bye(self, identity: bytes, msg: proto.Message) -> None:
        worker = self._worker_by_identity(identity)
        if worker is not None:
            self._lose_worker(worker.worker_id, "it left")

    def _on_worker_lost(self, identity: bytes, msg: proto.Message) -> None:
        self._lose_worker(str(msg.body["worker_id"]), msg.body.get("reason", "its process died"))

    def _expire_workers(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if now - worker.last_seen_s > self.worker_timeout_s:
                self._lose_worker(worker.worker_id, f"no heartbeat for {self.worker_timeout_s:g} s")

    def _lose_worker(self, worker_id: str, reason: str) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        log.warning("lost worker %s: %s", worker_id, reason)
        for active in list(self.jobs.values()):
            for attempt_id in [a for a, w in active.stopping.items() if w == worker_id]:
                self._stopped(active, attempt_id)
            if active.job_id in self.jobs:
                self._apply(active, sched.lose_worker(active.run, worker_id))
        self._dispatch()

    def _on_task_done(self, identity: bytes, msg: proto.Message) -> None:
        attempt_id = str(msg.body["attempt_id"])
        self._release(identity, attempt_id)
        active = self.jobs.get(str(msg.body["job_id"]))
        if active is not None:
            self._apply(active, sched.finish(active.run, attempt_id, msg.body["result"], time.monotonic()))
        self._dispatch()

    def _on_task_failed(self, identity: bytes, msg: proto.Message) -> None:
        attempt_id = str(msg.body["attempt_id"])
        self._release(identity, attempt_id)
        active = self.jobs.get(str(msg.body["job_id"]))
        if active is not None:
            error = msg.body["error"]
            if "fetch_failed" in error:
                self._apply(active, sched.fetch_failed(active.run, attempt_id, int(error["fetch_failed"]), error))
            else:
                if msg.blobs and msg.blobs[0]:
                    active.error_blob = msg.blobs[0]
                self._apply(active, sched.fail(active.run, attempt_id, error))
        self._dispatch()

    def _on_attempt_stopped(self, identity: bytes, msg: proto.Message) -> None:
        active = self.jobs.get(str(msg.body["job_id"]))
        if active is not None:
            self._stopped(active, str(msg.body["attempt_id"]))

    def _release(self, identity: bytes, attempt_id: str) -> None:
        worker = self._worker_by_identity(identity)
        if worker is not None:
            worker.running.discard(attempt_id)
        for active in list(self.jobs.values()):  # an attempt that ended by itself is stopped too
            if attempt_id in active.stopping:
                self._stopped(active, attempt_id)

    # -- clients ---------------------------------------------------------------------------
    def _on_submit(self, identity: bytes, msg: proto.Message) -> None:
        spec = msg.body["spec"]
        if not msg.blobs:
            raise ProtocolError("submit without job code")
        problem = proto.version_mismatch(msg.body.get("versions", {}))
        if problem:  # the job's code is pickled for workers that run our versions
            self._send(identity, proto.REJECTED, {"error": f"the coordinator refused the job: {problem}",
                                                  "type": "ClusterError"})
            return
        request_id = str(msg.body.get("request_id", ""))
        known = self.submissions.get(request_id)
        if known is not None:  # the client resent a submit whose answer it missed
            if known in self.jobs:
                self.jobs[known].client = identity
                self._send(identity, proto.ACCEPTED, {"job_id": known, **self.jobs[known].run.counts()})
            return
        job_id = time.strftime("job_%Y%m%d_%H%M%S_") + uuid.uuid4().hex[:6]
        storage.configure(spec.get("filesystems"))  # options from the job's URIs (endpoint, region, ...)
        committer = output_committer(spec["output"], job_id)
        try:
            splits = plan_splits(spec["inputs"], int(spec.get("split_size") or DEFAULT_SPLIT_SIZE),
                                 spec.get("input_format"))
            if spec.get("map_batch"):
                require_record_batches(splits)
            committer.setup(bool(spec.get("overwrite")))
        except (PymrError, OSError) as exc:
            self._send(identity, proto.REJECTED, {"error": str(exc), "type": type(exc).__name__})
            return
        run = sched.new_job(job_id, spec.get("name", "job"), [s.to_dict() for s in splits],
                            int(spec["reducers"]) if spec.get("has_reducer") else 0,
                            int(spec.get("max_attempts") or sched.DEFAULT_MAX_ATTEMPTS),
                            speculative=bool(spec.get("speculative", True)))
        self.jobs[job_id] = ActiveJob(run, spec, msg.blobs[0], committer, identity, time.monotonic())
        if request_id:
            self.submissions[request_id] = job_id
            while len(self.submissions) > MAX_REMEMBERED_SUBMISSIONS:
                self.submissions.pop(next(iter(self.submissions)))
        log.info("job %s (%s): %d map tasks, %d reduce tasks", job_id, run.name, len(run.maps), len(run.reduces))
        self._send(identity, proto.ACCEPTED, {"job_id": job_id, **run.counts()})
        self._dispatch()

    def _on_cancel_job(self, identity: bytes, msg: proto.Message) -> None:
        active = self.jobs.get(str(msg.body["job_id"]))
        if active is not None:
            self._apply(active, sched.cancel(active.run, msg.body.get("reason", "cancelled by the user")))

    def _on_stop(self, identity: bytes, msg: proto.Message) -> None:
        self.stop()

    def _send_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        for active in self.jobs.values():
            counts = active.run.counts()
            changed = counts != active.last_progress and now - active.last_progress_s >= PROGRESS_INTERVAL_S
            if changed or now - active.last_progress_s >= CLIENT_HEARTBEAT_S:
                active.last_progress, active.last_progress_s = counts, now
                self._send(active.client, proto.PROGRESS,
                           {"job_id": active.run.job_id, "elapsed_s": now - active.started_s, **counts})

    # -- scheduling ------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Give pending tasks to workers with free slots, oldest job first."""
        for worker in list(self.workers.values()):
            for active in list(self.jobs.values()):
                while worker.free_slots > 0 and worker.worker_id in self.workers:
                    picked = sched.assign(active.run, worker.worker_id, time.monotonic())
                    if picked is None:
                        break
                    self._send_task(worker, active, *picked)

    def _send_task(self, worker: WorkerInfo, active: ActiveJob, task: sched.Task, attempt: sched.Attempt) -> None:
        run, spec = active.run, active.spec
        body: dict[str, Any] = {
            "kind": task.kind,
            "job_id": run.job_id,
            "attempt_id": attempt.attempt_id,
            "describe": sched.task_description(task),
            "attempt_dir": active.committer.attempt_dir(attempt.attempt_id),
            "output_format": spec.get("output_format", "text"),
            "step": spec.get("step"),
            "filesystems": spec.get("filesystems"),
        }
        if task.kind == "map":
            body.update(split=task.split, part=task.index, num_reducers=len(run.reduces),
                        skip_bad_records=bool(spec.get("skip_bad_records")), buffer_bytes=spec.get("buffer_bytes"),
                        partition_cuts=spec.get("partition_cuts"))
        else:
            body.update(partition=task.index, map_outputs=[m.result["map_output"] for m in run.maps],
                        buffer_bytes=spec.get("buffer_bytes"))
        blobs = [] if run.job_id in worker.jobs_loaded else [active.code]
        worker.running.add(attempt.attempt_id)
        if self._send(worker.identity, proto.ASSIGN, body, *blobs):
            worker.jobs_loaded.add(run.job_id)
        else:
            self._lose_worker(worker.worker_id, "it cannot be reached")

    def _apply(self, active: ActiveJob, effects: list[sched.Effect]) -> None:
        """Carry out what a transition asks for."""
        for effect in effects:
            if effect.kind == "commit_task" and effect.task is not None and effect.attempt is not None:
                if effect.task.kind == "reduce" or active.run.map_only:
                    active.committer.commit_task(effect.attempt.attempt_id, effect.detail["files"])
            elif effect.kind == "discard" and effect.attempt is not None:
                active.committer.discard_attempt(effect.attempt.attempt_id)
            elif effect.kind == "cancel_attempt" and effect.attempt is not None:
                self._cancel_attempt(active, effect.attempt)
        if any(effect.kind in ("job_succeeded", "job_failed") for effect in effects):
            active.ended_s = time.monotonic()  # after the cancels above, so it waits for them
            self._finish_ended_jobs()

    def _cancel_attempt(self, active: ActiveJob, attempt: sched.Attempt) -> None:
        worker = self.workers.get(attempt.worker_id)
        if worker is None:
            return
        worker.running.discard(attempt.attempt_id)
        if self._send(worker.identity, proto.CANCEL, {"job_id": active.job_id, "attempt_id": attempt.attempt_id}):
            active.stopping[attempt.attempt_id] = worker.worker_id

    def _stopped(self, active: ActiveJob, attempt_id: str) -> None:
        """A cancelled attempt is confirmed dead (or its worker is gone)."""
        if active.stopping.pop(attempt_id, None) is not None and active.ended_s is not None:
            self._finish_ended_jobs()

    def _finish_ended_jobs(self, force: bool = False) -> None:
        """End each ended job whose cancelled attempts are all confirmed dead, or that
        waited ``stop_wait_s`` for them (their workers are then presumably stuck)."""
        now = time.monotonic()
        for active in list(self.jobs.values()):
            if active.ended_s is None:
                continue
            if active.stopping and not force:
                if now - active.ended_s < self.stop_wait_s:
                    continue
                log.warning("job %s: attempts %s not confirmed stopped after %g s; ending the job anyway",
                            active.job_id, ", ".join(sorted(active.stopping)), self.stop_wait_s)
            self._end_job(active)

    def _end_job(self, active: ActiveJob) -> None:
        run = active.run
        report = job_report(active)
        if run.state == sched.JobState.SUCCEEDED:
            try:
                active.committer.commit_job(report)
            except OSError as exc:
                run.state, run.error = sched.JobState.FAILED, f"job commit failed: {exc}"
                active.committer.abort_job()
                report = job_report(active)
        else:
            active.committer.abort_job()
        self._send_progress()
        blobs = [active.error_blob] if active.error_blob and run.state == sched.JobState.FAILED else []
        self._send(active.client, proto.FINISHED, report, *blobs)
        for worker in self.workers.values():
            if run.job_id in worker.jobs_loaded:
                self._send(worker.identity, proto.JOB_ENDED, {"job_id": run.job_id})
                worker.jobs_loaded.discard(run.job_id)
        self._remember_finished(active, report)
        del self.jobs[run.job_id]
        log.info("job %s %s", run.job_id, run.state.value)

    # -- status: the page's answers and the CLI's queries -----------------------------------
    def _remember_finished(self, active: ActiveJob, report: dict[str, Any]) -> None:
        self.finished.add(status.finished_detail(active, report))
        self.totals.add(active, report)

    def _status_answer(self, key: str) -> Any:
        """One answer of ``status.StatusBoard``: "jobs", "job:<job_id>", "workers" or "metrics"."""
        if key == "jobs":
            return self._job_list(everything=True)
        if key == "workers":
            return status.workers_view(self.workers.values())
        if key == "metrics":
            return status.metrics_text(self.jobs.values(), self.workers.values(), self.totals)
        if key.startswith("job:"):
            return self._job_detail(key[len("job:"):])
        if key.startswith("log:"):  # log:<job_id>:<attempt_id>
            job_id, attempt_id = key[len("log:"):].split(":", 1)
            addresses = {w.worker_id: getattr(w, "shuffle_address", None) for w in self.workers.values()}
            return status.log_place(self._job_detail(job_id), attempt_id, addresses)
        raise KeyError(key)

    def _job_list(self, everything: bool) -> list[dict[str, Any]]:
        running = [status.job_summary(active) for active in self.jobs.values()]
        return running + (self.finished.summaries()[::-1] if everything else [])

    def _job_detail(self, job_id: str) -> dict[str, Any] | None:
        active = self.jobs.get(job_id)
        if active is not None:
            return status.job_detail(active, job_report(active))
        return self.finished.get(job_id)

    def _on_list_jobs(self, identity: bytes, msg: proto.Message) -> None:
        self._send(identity, proto.ANSWER, {"jobs": self._job_list(bool(msg.body.get("all")))})

    def _on_job_status(self, identity: bytes, msg: proto.Message) -> None:
        job_id = str(msg.body["job_id"])
        detail = self._job_detail(job_id)
        if detail is None:
            self._send(identity, proto.ANSWER, {"error": f"unknown job {job_id}", "exit_code": 2})
        else:
            self._send(identity, proto.ANSWER, {"job": detail})

    def _on_list_workers(self, identity: bytes, msg: proto.Message) -> None:
        self._send(identity, proto.ANSWER, {"workers": status.workers_view(self.workers.values())})

    def _on_find_logs(self, identity: bytes, msg: proto.Message) -> None:
        """Where the captured output of a job's attempts is: each attempt with its worker's
        address (the worker serves it, as it serves map outputs)."""
        detail = self._job_detail(str(msg.body["job_id"]))
        addresses = {w.worker_id: getattr(w, "shuffle_address", None) for w in self.workers.values()}
        try:
            attempts = status.log_places(detail, msg.body.get("task_id"), msg.body.get("attempt"), addresses)
        except LookupError as exc:
            self._send(identity, proto.ANSWER, {"error": str(exc.args[0]), "exit_code": 2})
            return
        self._send(identity, proto.ANSWER, {"attempts": attempts})

    def _shutdown(self) -> None:
        for active in list(self.jobs.values()):
            self._apply(active, sched.cancel(active.run, "the coordinator stopped"))
        self._finish_ended_jobs(force=True)  # no loop is left to wait for workers in
        # Workers are not told to stop: they wait for a coordinator to come back.
        self.socket.close(linger=0)
        self.security.close()
        self.context.destroy(linger=0)
        self._wake_read.close()
        self._wake_write.close()


def job_report(active: ActiveJob) -> dict[str, Any]:
    """The machine-readable summary of a job: state, counters, tasks, attempts, time."""
    run = active.run
    totals: Counter[tuple[str, str]] = Counter()
    for task in run.all_tasks():
        if task.result:
            for group, names in task.result.get("counters", {}).items():
                for name, amount in names.items():
                    totals[(group, name)] += amount
    counters: dict[str, dict[str, int]] = {}
    for (group, name), amount in sorted(totals.items()):
        counters.setdefault(group, {})[name] = amount
    tasks = run.all_tasks()
    return {
        "job_id": run.job_id,
        "name": run.name,
        "state": run.state.value,
        "error": run.error,
        "error_detail": run.error_detail,
        "elapsed_s": round(time.monotonic() - active.started_s, 3),
        "output": active.committer.output_dir,
        "map_tasks": len(run.maps),
        "reduce_tasks": len(run.reduces),
        "attempts": sum(len(t.attempts) for t in tasks),
        "failed_attempts": sum(t.failures for t in tasks),
        "backup_attempts": sum(a.backup for t in tasks for a in t.attempts),
        "peak_task_rss_mib": round(max((t.result.get("max_rss_kb", 0) for t in tasks if t.result), default=0) / 1024, 1),
        "phases": {"map": _phase_times(run.maps), "reduce": _phase_times(run.reduces)},
        "bytes": {kind: counters.get("pymr", {}).get(name, 0) for kind, name in
                  (("read", "map input bytes"), ("shuffled", "shuffle bytes"), ("written", "output bytes"))},
        "largest_reduce_partitions": _largest_partitions(run.reduces),
        "counters": counters,
    }


def _phase_times(tasks: list[sched.Task]) -> dict[str, Any]:
    """Wall time of a phase (first attempt started to last attempt ended) and the time
    its winning attempts took, added up, in seconds."""
    attempts = [a for t in tasks for a in t.attempts]
    ends = [a.finished_s for a in attempts if a.finished_s is not None]
    winners = [t.winner for t in tasks if t.winner is not None and t.winner.finished_s is not None]
    return {"wall_s": round(max(ends) - min(a.started_s for a in attempts), 3) if ends else 0.0,
            "task_s": round(sum(w.finished_s - w.started_s for w in winners), 3)}  # type: ignore[operator]


def _largest_partitions(reduces: list[sched.Task], count: int = 5) -> list[dict[str, int]]:
    """The reduce partitions with the most input records, largest first (skew shows here)."""
    sizes = [(t.result.get("counters", {}).get("pymr", {}).get("reduce input records", 0), t.index)
             for t in reduces if t.result]
    return [{"partition": index, "records": records} for records, index in sorted(sizes, key=lambda s: (-s[0], s[1]))[:count]]
