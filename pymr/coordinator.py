"""The coordinator: one ZeroMQ loop over ``scheduler``'s job state, built to serve thousands
of workers.

What it tracks:

* ``workers``: each registered worker (``WorkerInfo``: its ZeroMQ identity, slots, the
  attempts it runs with the sequence number of each ASSIGN, the jobs whose code and
  files it holds, when it was last heard from, its process incarnation);
* ``free``: the workers with a free slot that may take tasks (not excluded), so
  handing out tasks never scans the whole cluster;
* ``jobs``: the running jobs (``ActiveJob``: the scheduler's ``JobRun``, spec, code
  blob, committer, the clients to tell), oldest first; ``finished``: the reports of the
  last ``MAX_FINISHED`` jobs.

Each pass of the loop handles at most ``MAX_MESSAGES_PER_PASS`` messages, then runs its
timers, which therefore always fire: workers that fell silent expire, clients get
progress, stragglers are looked for. Tasks are dispatched once per pass, and only when
something changed (a slot freed, a task became pending, a worker joined). A heartbeat
only refreshes its worker: O(1). When the loop is busy (over ``BUSY_MESSAGES_PER_S``
messages in the last second) its passes start at least ``BUSY_PASS_GAP_S`` apart, so each
pass handles a batch: 2,000 heartbeating workers cost 0.15 core that way instead of 0.25
(fewer wake-ups of the loop and of ZeroMQ's I/O thread), for a few milliseconds of
latency; a quiet coordinator (a small job, local mode) answers at once. Every message is
checked field by field (``messages.TO_COORDINATOR``) before a handler sees it; a bad one is logged with its
peer and kind and dropped, and nothing a peer sends can raise out of the loop.

Work that can take long runs on one background thread, in order: planning a job's
splits, task commits, the job commit or abort. Its results come back to the loop
(``_completions``), so heartbeats are answered on time meanwhile.

Workers that reconnect are reconciled, not presumed dead: every ASSIGN carries a
per-worker sequence number, and heartbeats and registrations echo the last one
received and the attempts still running. An attempt the worker got but no longer
runs, without a result, was lost on the way: it is killed (retried without counting
as a failure). A worker that registers with a new incarnation restarted: its attempts
are killed and its map outputs are lost. A job that ends while attempts of it are
still being cancelled waits (at most ``STOP_WAIT_S``) until their workers confirm them
dead before its output is committed or aborted: else an attempt still running could
write into an output folder after it was cleaned up.

The coordinator never unpickles job code: it only forwards the blob, once per worker
per job. Reduces learn where map outputs are from one table per job (``locations``),
sent once per worker and version, not from a list of every map in every ASSIGN.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq

from . import locations
from . import messages
from . import protocol as proto
from . import scheduler as sched
from . import status
from . import storage
from .errors import PymrError, ProtocolError
from .inputs import DEFAULT_SPLIT_SIZE, plan_splits, require_record_batches
from .outputs import OutputCommitter, output_committer
from .report import job_report, slim_result, storable
from .security import ClusterKey, Security, listen
from .state import StateStore, StoredJob
from .state import TaskCommit as StoredCommit

log = logging.getLogger("pymr.coordinator")
POLL_MS = 100
MAX_MESSAGES_PER_PASS = 1000
BUSY_MESSAGES_PER_S = 1000  # over this many messages in the last second, passes are spaced out ...
BUSY_PASS_GAP_S = 0.005  # ... by this much, so each handles a batch
HEARTBEAT_REPLY = proto.pack(proto.HEARTBEAT)  # the same every time: packed once
PROGRESS_INTERVAL_S = 0.25
CLIENT_HEARTBEAT_S = 5.0  # progress is sent at least this often, so a client can tell we are alive
EXPIRE_EVERY_S = 0.5
STRAGGLERS_EVERY_S = 1.0
MAX_REMEMBERED_SUBMISSIONS = 1000
MAX_FINISHED = 1000
MAX_FOLLOWERS = 16  # clients told of one job's progress (its submitter and WATCHers); the oldest go first
STOP_WAIT_S = 10.0  # how long an ended job waits for its cancelled attempts to be confirmed dead
EXCLUDE_FOR_S = 600.0  # a worker excluded by several jobs gets no task of any job for this long
EXCLUDING_JOBS = 2  # ... by this many jobs within EXCLUDE_WINDOW_S
EXCLUDE_WINDOW_S = 3600.0
COMMIT_EVERY_S = 0.05  # task commits are written at most this often, together (with a state dir)
RECOVERY_GRACE_S = 3.0  # after a restart, how long maps wait for the workers holding their outputs


@dataclass(eq=False)
class WorkerInfo:
    worker_id: str
    identity: bytes
    slots: int
    last_seen_s: float
    incarnation: str = ""
    host: str | None = None
    shuffle_address: str | None = None
    running: dict[str, int] = field(default_factory=dict)  # attempt id -> the ASSIGN's sequence number
    jobs_loaded: set[str] = field(default_factory=set)  # jobs whose code it holds
    jobs_held: set[str] = field(default_factory=set)  # jobs it may hold files of
    map_tables: dict[str, int] = field(default_factory=dict)  # job -> version of the map output table sent
    next_seq: int = 1
    failed_attempts: int = 0
    excluded_by: dict[str, float] = field(default_factory=dict)  # job id -> when that job excluded it
    excluded_until_s: float = 0.0

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    @property
    def excluded(self) -> bool:
        return self.excluded_until_s > time.monotonic()


@dataclass(eq=False)
class ActiveJob:
    run: sched.JobRun
    spec: dict[str, Any]
    code: bytes
    committer: OutputCommitter
    clients: list[bytes]  # told of its progress and end: the submitter, then followers (WATCH), oldest first
    started_s: float
    last_progress: dict[str, int] | None = None
    last_progress_s: float = 0.0
    stopping: dict[str, str] = field(default_factory=dict)  # cancelled attempt -> its worker, until confirmed
    ended_s: float | None = None  # when the job ended, while it waits for ``stopping`` to empty
    closing: bool = False  # its job commit or abort is under way
    map_table: bytes | None = None  # the encoded map output locations, built when a reduce needs them
    map_table_version: int = 0
    excluded_workers: list[str] = field(default_factory=list)
    submitted_unix_s: float = field(default_factory=time.time)
    committed_before: dict[str, set[int]] = field(default_factory=dict)  # (recovery) tasks committed before it
    reclaimable: dict[str, tuple[int, str, dict[str, Any]]] = field(default_factory=dict)  # (recovery) map
    # attempt id -> (map index, its worker, its result): committed before a restart, done again once
    # that worker registers holding it

    @property
    def job_id(self) -> str:
        return self.run.job_id

    def follow(self, identity: bytes) -> None:
        """``identity`` hears of this job from now on; beyond ``MAX_FOLLOWERS`` the one
        that followed longest ago stops hearing (it may WATCH again)."""
        if identity in self.clients:
            self.clients.remove(identity)
        self.clients.append(identity)
        del self.clients[:-MAX_FOLLOWERS]


class Coordinator:
    """Serves workers and clients on one ROUTER socket until ``stop()``."""

    def __init__(self, bind: str = "tcp://127.0.0.1:*", worker_timeout_s: float = proto.WORKER_TIMEOUT_S,
                 key: ClusterKey | None = None, stop_wait_s: float = STOP_WAIT_S,
                 exclude_for_s: float = EXCLUDE_FOR_S, state_dir: str | None = None):
        self.store = StateStore(state_dir) if state_dir else None  # first: a refusal must touch nothing
        self.worker_timeout_s = worker_timeout_s
        self.stop_wait_s = stop_wait_s
        self.exclude_for_s = exclude_for_s
        self.context = zmq.Context()
        self.security = Security(self.context, key)
        self.socket = self.security.server(proto.configure(self.context.socket(zmq.ROUTER)),
                                           new_connections=proto.MAX_NEW_CONNECTIONS)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # fail loudly on vanished peers
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker takes over its id
        try:
            self.address = listen(self.socket, bind)  # AddressError: port in use, unknown name, ...
        except BaseException:
            if self.store is not None:
                self.store.close()
            raise
        self.workers: dict[str, WorkerInfo] = {}
        self.free: dict[str, WorkerInfo] = {}  # workers with a free slot, not excluded
        self.eligible: dict[str, WorkerInfo] = {}  # workers not excluded cluster-wide
        self.jobs: dict[str, ActiveJob] = {}
        self.finished: OrderedDict[str, dict[str, Any]] = OrderedDict()  # job id -> report, newest last
        self.submissions: dict[str, str] = {}  # request id -> job id, so a resent submit is not run twice
        self._dispatch_wanted = False
        self._messages_this_second = 0
        self._busy = False  # over BUSY_MESSAGES_PER_S messages in the last second
        self._drained_s = time.monotonic()  # when the socket last had nothing left to read
        self._timers: dict[str, float] = {}
        self._stop = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()  # wakes the loop: stop(), background work done
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._completions: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymr-coordinator-io")
        self.history = status.FinishedJobs()  # details of finished jobs, for the page and `pymr jobs --all`
        self.totals = status.Totals()
        self.board = status.StatusBoard()  # the HTTP server's questions, answered on this loop
        self._commits: dict[str, list[tuple[sched.Task, sched.Attempt, dict[str, Any]]]] = {}  # to write, by job
        self._queued_commits: dict[str, tuple[ActiveJob, list]] = {}  # handed to the background thread
        self._queued_lock = threading.Lock()
        self._write_scheduled = False
        self._last_write_s = 0.0
        self._recovering_until_s = 0.0
        self._awaited: set[str] = set()  # (recovery) workers that held committed map outputs, not yet back
        if self.store is not None:
            self._recover()

    # -- loop ------------------------------------------------------------------------------
    def serve(self) -> None:
        """Handle messages until stopped; then close the socket (linger 0)."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        pass_started_s = 0.0
        try:
            while not self._stop.is_set():
                if self._busy:
                    time.sleep(max(0.0, pass_started_s + BUSY_PASS_GAP_S - time.monotonic()))
                pass_started_s = time.monotonic()
                events = dict(poller.poll(POLL_MS))
                if self._wake_read.fileno() in events or self._wake_read in events:
                    self._drain_wake()
                if self.socket in events:
                    self._receive_some()
                self._run_completions()
                self._run_timers()
                self.board.answer(self._status_answer)
                self._dispatch()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"x")
        except OSError:  # already shut down, or the pipe is full (then the loop wakes anyway)
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except OSError:
            pass

    def _receive_some(self) -> None:
        """Handle up to MAX_MESSAGES_PER_PASS messages, so timers run however busy we are."""
        for _ in range(MAX_MESSAGES_PER_PASS):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self._drained_s = time.monotonic()
                return
            self._messages_this_second += 1
            self._handle_frames(frames)

    def _handle_frames(self, frames: list[bytes]) -> None:
        """Decode, check and handle one message; whatever is wrong with it is logged and it is dropped."""
        identity = frames[0]
        kind = frames[2][:32].decode("utf-8", "replace") if len(frames) > 2 else "?"  # for the log
        try:
            msg = proto.unpack(frames[1:])
            kind = msg.kind
            if kind == proto.SUBMIT and self._refuse_versions(identity, msg):
                return
            try:
                msg = messages.validate(msg, messages.TO_COORDINATOR)
            except ProtocolError as exc:
                if kind == proto.SUBMIT:  # a client waits for an answer
                    self._send(identity, proto.REJECTED, {"error": f"the coordinator refused the job: {exc}",
                                                          "type": "ClusterError"})
                raise
            self._handle(identity, msg)
        except ProtocolError as exc:
            log.warning("dropped a malformed %s message from %r: %s", kind, identity[:64], exc)
        except (RecursionError, MemoryError, ValueError, TypeError, KeyError) as exc:
            log.warning("dropped a malformed %s message from %r: %s: %s", kind, identity[:64], type(exc).__name__,
                        exc)
        except Exception:  # a bug of ours must not stop the cluster: log it whole, keep serving
            log.exception("error handling a %s message from %r; dropped it", kind, identity[:64])

    def _refuse_versions(self, identity: bytes, msg: proto.Message) -> bool:
        """Refuse a job pickled for other versions than ours (before anything else is read)."""
        try:
            problem = proto.version_mismatch(messages.VERSIONS(msg.body.get("versions", {})))
        except messages.Invalid as exc:
            problem = f"versions {exc}"
        if problem:
            self._send(identity, proto.REJECTED, {"error": f"the coordinator refused the job: {problem}",
                                                  "type": "ClusterError"})
        return problem is not None

    def _send(self, identity: bytes, kind: str, body: dict[str, Any] | None = None, *blobs: bytes) -> bool:
        return self._send_packed(identity, kind, proto.pack(kind, body, *blobs))

    def _send_packed(self, identity: bytes, kind: str, frames: list[bytes]) -> bool:
        try:
            proto.send_frames(self.socket, [identity, *frames])
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH with ROUTER_MANDATORY, or EAGAIN at the HWM
            log.info("cannot send %s to %r: %s", kind, identity[:64], exc)
            return False

    def _handle(self, identity: bytes, msg: proto.Message) -> None:
        worker = self._worker_by_identity(identity)
        if worker is not None:
            worker.last_seen_s = time.monotonic()  # any message is a sign of life
        getattr(self, "_on_" + msg.kind)(identity, worker, msg)

    def _worker_by_identity(self, identity: bytes) -> WorkerInfo | None:
        worker = self.workers.get(identity.decode("utf-8", "replace"))
        return worker if worker is not None and worker.identity == identity else None

    # -- timers and background work --------------------------------------------------------
    def _due(self, name: str, every_s: float, now: float) -> bool:
        if now < self._timers.get(name, 0.0):
            return False
        self._timers[name] = now + every_s
        return True

    def _run_timers(self) -> None:
        self._write_commits()
        now = time.monotonic()
        if self._due("busy", 1.0, now):
            self._busy, self._messages_this_second = self._messages_this_second > BUSY_MESSAGES_PER_S, 0
        if self._due("expire", EXPIRE_EVERY_S, now):
            self._expire_workers(now)
        if self._due("stragglers", STRAGGLERS_EVERY_S, now):
            for active in self.jobs.values():
                if sched.find_stragglers(active.run, now):
                    self._dispatch_wanted = True
        self._finish_ended_jobs()
        if self._due("progress", PROGRESS_INTERVAL_S, now):
            self._send_progress()

    def _in_background(self, work: Callable[[], Any], then: Callable[[Any, BaseException | None], None]) -> None:
        """Run ``work`` on the background thread (in submission order), then ``then(result,
        error)`` on the loop."""
        def run() -> None:
            try:
                result, error = work(), None
            except BaseException as exc:  # handed to the loop, which decides
                result, error = None, exc
            self._completions.put(lambda: then(result, error))
            self._wake()
        try:
            self._background.submit(run)
        except RuntimeError:  # shutting down (the thread is gone): run it here, in order still
            run()

    def _run_completions(self) -> None:
        while True:
            try:
                completion = self._completions.get_nowait()
            except queue.Empty:
                return
            try:
                completion()
            except Exception:
                log.exception("error finishing background work")

    # -- workers ---------------------------------------------------------------------------
    def _on_register(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        body = msg.body
        problem = proto.version_mismatch(body.get("versions", {}))
        if problem:  # its tasks would unpickle code pickled elsewhere
            log.warning("refused worker %r: %s", identity[:64], problem)
            self._send(identity, proto.REFUSED, {"error": problem})
            return
        worker_id = identity.decode("utf-8", "replace")
        incarnation = body.get("incarnation", "")
        reported = set(body.get("running", []))
        if worker is not None and worker.incarnation != incarnation:
            self._lose_worker(worker_id, "it restarted")
            worker = None
        now = time.monotonic()
        if worker is None:
            worker = WorkerInfo(worker_id, identity, body["slots"], now, incarnation)
            self.workers[worker_id] = worker
            self.eligible[worker_id] = worker
            log.info("worker %s joined with %d slot(s)", worker_id, worker.slots)
        else:  # the same process reconnected: it keeps the attempts it still runs
            for attempt_id in [a for a in worker.running if a not in reported]:
                self._attempt_lost(worker, attempt_id, "its worker reconnected without it")
            worker.map_tables.clear()  # a table sent on the old connection may not have arrived
            log.info("worker %s reconnected", worker_id)
        worker.host, worker.shuffle_address = body.get("host"), body.get("shuffle_address")
        worker.jobs_loaded = {j for j in body.get("jobs_loaded", []) if j in self.jobs}
        worker.jobs_held = {j for j in body.get("jobs", []) if j in self.jobs} | worker.jobs_loaded
        self._reclaim_outputs(worker, body.get("map_outputs", []))
        self._awaited.discard(worker_id)
        if not self._awaited:  # every worker that held outputs is back: no need to wait longer
            self._recovering_until_s = 0.0
        forget = sorted({*body.get("jobs", []), *body.get("jobs_loaded", [])} - set(self.jobs))
        kill = sorted(reported - set(worker.running))
        self._send(identity, proto.WELCOME, {"heartbeat_s": proto.HEARTBEAT_INTERVAL_S, "forget": forget,
                                             "kill": kill})
        self._update_free(worker)

    def _on_heartbeat(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        if worker is None:
            self._send(identity, proto.REFUSED, {"error": "unknown worker: register first", "reregister": True})
            return
        self._send_packed(identity, proto.HEARTBEAT, HEARTBEAT_REPLY)
        if "running" in msg.body and "seq" in msg.body:
            self._reconcile(worker, set(msg.body["running"]), msg.body["seq"])
        for attempt_id, fraction in msg.body.get("progress", {}).items():
            active = self._job_of_attempt(attempt_id)
            if active is not None:  # (the scheduler takes figures only for attempts this worker runs)
                sched.note_progress(active.run, attempt_id, worker.worker_id, fraction)

    def _reconcile(self, worker: WorkerInfo, reported: set[str], last_seq: int) -> None:
        """An attempt whose ASSIGN the worker received (its sequence number is not past
        ``last_seq``) but that it no longer runs, with no result here, was lost on the way."""
        for attempt_id, seq in list(worker.running.items()):
            if attempt_id not in reported and seq <= last_seq:
                self._attempt_lost(worker, attempt_id, f"worker {worker.worker_id} lost track of it")

    def _attempt_lost(self, worker: WorkerInfo, attempt_id: str, reason: str) -> None:
        log.warning("attempt %s: %s; it runs again", attempt_id, reason)
        worker.running.pop(attempt_id, None)
        self._update_free(worker)
        active = self._job_of_attempt(attempt_id)
        if active is not None:
            self._apply(active, sched.kill(active.run, attempt_id, reason, time.monotonic()))

    def _job_of_attempt(self, attempt_id: str) -> ActiveJob | None:
        return self.jobs.get(attempt_id.rsplit("-", 2)[0])

    def _on_bye(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        if worker is not None:
            self._lose_worker(worker.worker_id, "it left")

    def _on_worker_lost(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        self._lose_worker(msg.body["worker_id"], msg.body.get("reason", "its process died"))

    def _expire_workers(self, now: float) -> None:
        """Lose the workers silent for ``worker_timeout_s``. Silence is counted up to the
        last time every queued message was read: a heartbeat waiting in our own queue
        (we are busy, not the worker dead) is no silence."""
        caught_up_s = self._drained_s if self.socket.poll(0) else now
        for worker in list(self.workers.values()):
            if caught_up_s - worker.last_seen_s > self.worker_timeout_s:
                self._lose_worker(worker.worker_id, f"no heartbeat for {self.worker_timeout_s:g} s")
            elif worker.excluded_until_s and worker.excluded_until_s <= now:
                worker.excluded_until_s = 0.0
                log.warning("worker %s is no longer excluded", worker.worker_id)
                self.eligible[worker.worker_id] = worker
                self._update_free(worker)

    def _lose_worker(self, worker_id: str, reason: str) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        self.free.pop(worker_id, None)
        self.eligible.pop(worker_id, None)
        log.warning("lost worker %s: %s", worker_id, reason)
        for active in list(self.jobs.values()):
            for attempt_id in [a for a, w in active.stopping.items() if w == worker_id]:
                self._stopped(active, attempt_id)
            if active.job_id in self.jobs:
                effects = sched.lose_worker(active.run, worker_id, f"worker {worker_id} was lost: {reason}")
                self._map_outputs_changed(active)
                self._apply(active, effects)
        self._dispatch_wanted = True

    def _update_free(self, worker: WorkerInfo) -> None:
        """Keep ``free`` exact: the registered, non-excluded workers with a free slot."""
        if worker.free_slots > 0 and worker.worker_id in self.eligible and worker.worker_id in self.workers:
            if worker.worker_id not in self.free:
                self.free[worker.worker_id] = worker
                self._dispatch_wanted = True
        else:
            self.free.pop(worker.worker_id, None)

    def _on_task_done(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        active = self._attempt_of(identity, worker, msg)
        if active is None:
            return
        result = slim_result(msg.body["result"])
        if "map_output" in result:
            worker.jobs_held.add(active.job_id)
        self._apply(active, sched.finish(active.run, msg.body["attempt_id"], result, time.monotonic()))

    def _on_task_failed(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        active = self._attempt_of(identity, worker, msg)
        if active is None:
            return
        attempt_id, error = msg.body["attempt_id"], msg.body["error"]
        run = active.run
        if "fetch_failed" in error:
            log.warning("job %s: attempt %s on worker %s cannot fetch its input: %s", run.job_id, attempt_id,
                        worker.worker_id, error.get("message", ""))
            effects = sched.fetch_failed(run, attempt_id, error["fetch_failed"], error)
            self._map_outputs_changed(active)
        elif error["type"] == proto.MISSING_BLOB:  # an ASSIGN that carried code or a table was lost: send it again
            worker.jobs_loaded.discard(run.job_id)
            worker.map_tables.pop(run.job_id, None)
            effects = sched.kill(run, attempt_id, error.get("message", "an ASSIGN was lost"))
        else:
            worker.failed_attempts += 1
            task = run.attempts_by_id[attempt_id][0]
            log.warning("job %s: attempt %s (%s) failed on worker %s: %s: %s", run.job_id, attempt_id,
                        sched.task_description(task), worker.worker_id, error["type"],
                        error.get("message", "")[:500])
            effects = sched.fail(run, attempt_id, error)
        self._apply(active, effects)

    def _on_attempt_stopped(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        active = self.jobs.get(msg.body["job_id"])
        if worker is not None and active is not None and active.stopping.get(msg.body["attempt_id"]) == worker.worker_id:
            self._stopped(active, msg.body["attempt_id"])

    def _attempt_of(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> ActiveJob | None:
        """The running job of the attempt a result is about (the attempt is freed from
        its worker); None if the sender is not the worker the attempt was given to."""
        attempt_id = msg.body["attempt_id"]
        if worker is not None and worker.running.pop(attempt_id, None) is not None:
            self._update_free(worker)
        self._release_stopping(attempt_id)
        active = self._job_of_attempt(attempt_id)
        found = active.run.attempts_by_id.get(attempt_id) if active is not None else None
        if worker is None:  # a worker of an earlier coordinator (we restarted): register first
            log.info("ignored %s for attempt %s from an unregistered peer", msg.kind, attempt_id)
            self._send(identity, proto.REFUSED, {"error": "unknown worker: register first", "reregister": True})
            return None
        if found is None or found[1].worker_id != worker.worker_id:
            log.info("ignored %s for attempt %s from %s: not an attempt it runs", msg.kind, attempt_id,
                     worker.worker_id)
            return None
        return active

    def _release_stopping(self, attempt_id: str) -> None:
        active = self._job_of_attempt(attempt_id)  # an attempt that ended by itself is stopped too
        if active is not None and attempt_id in active.stopping:
            self._stopped(active, attempt_id)

    # -- clients ---------------------------------------------------------------------------
    def _on_submit(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        spec = msg.body["spec"]
        if not msg.blobs:
            raise ProtocolError("submit without job code")
        request_id = msg.body.get("request_id", "")
        known = self.submissions.get(request_id) if request_id else None
        if known is not None:  # the client resent a submit whose answer it missed
            if known in self.jobs:
                self.jobs[known].follow(identity)
                self._send(identity, proto.ACCEPTED, {"job_id": known, **self.jobs[known].run.counts()})
            return
        job_id = time.strftime("job_%Y%m%d_%H%M%S_") + uuid.uuid4().hex[:6]
        if request_id:
            self.submissions[request_id] = job_id
            while len(self.submissions) > MAX_REMEMBERED_SUBMISSIONS:
                self.submissions.pop(next(iter(self.submissions)))
        code = msg.blobs[0]

        def plan() -> tuple[list[dict[str, Any]], OutputCommitter]:
            planned = _plan_job(job_id, spec)
            if self.store is not None:  # durable before the client hears ACCEPTED
                self.store.add_job(job_id, dict(spec, splits=planned[0]), code, request_id, time.time())
            return planned
        self._in_background(plan, lambda planned, error: self._planned(identity, job_id, spec, code, planned, error))

    def _planned(self, identity: bytes, job_id: str, spec: dict[str, Any], code: bytes,
                 planned: tuple[list[dict[str, Any]], OutputCommitter] | None, error: BaseException | None) -> None:
        if error is not None or planned is None:
            if not isinstance(error, (PymrError, OSError)):
                log.error("job %s: planning failed", job_id, exc_info=error)
            self._send(identity, proto.REJECTED, {"error": str(error), "type": type(error).__name__})
            return
        splits, committer = planned
        run = _new_run(job_id, spec, splits)
        self.jobs[job_id] = ActiveJob(run, spec, code, committer, [identity], time.monotonic())
        log.info("job %s (%s): %d map tasks, %d reduce tasks", job_id, run.name, len(run.maps), len(run.reduces))
        self._send(identity, proto.ACCEPTED, {"job_id": job_id, **run.counts()})
        self._dispatch_wanted = True

    def _on_cancel_job(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        active = self.jobs.get(msg.body["job_id"])
        if active is not None:
            self._apply(active, sched.cancel(active.run, msg.body.get("reason", "cancelled by the user")))

    def _on_watch(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        """A client follows a job by its id (its own after a restart, or one submitted
        elsewhere): it hears where the job is now and, with the job's other clients, of
        its progress and end. The answer carries ``watch`` so the client can tell it
        from progress sent before."""
        job_id = msg.body["job_id"]
        active = self.jobs.get(job_id)
        if active is not None:
            active.follow(identity)
            self._send(identity, proto.PROGRESS, {"job_id": job_id, "elapsed_s": time.monotonic() - active.started_s,
                                                  "watch": True, **active.run.counts()})
        elif job_id in self.finished:
            self._send(identity, proto.FINISHED, self.finished[job_id])
        else:
            self._send(identity, proto.REJECTED, {"job_id": job_id, "error": "unknown job", "type": "ClusterError"})

    def _send_progress(self) -> None:
        now = time.monotonic()
        for active in self.jobs.values():
            if active.closing:
                continue
            counts = active.run.counts()
            if counts != active.last_progress or now - active.last_progress_s >= CLIENT_HEARTBEAT_S:
                active.last_progress, active.last_progress_s = counts, now
                self._tell_clients(active, proto.PROGRESS,
                                   {"job_id": active.run.job_id, "elapsed_s": now - active.started_s, **counts})

    def _tell_clients(self, active: ActiveJob, kind: str, body: dict[str, Any]) -> None:
        """Send to every client of the job. One that is gone (EHOSTUNREACH) is dropped; one
        that is only slow (its queue is full: EAGAIN) keeps its place and misses this
        message: progress is a snapshot that the next one replaces, and a client that
        misses the end hears nothing more, WATCHes again and gets the report."""
        frames = proto.pack(kind, body)
        kept = []
        for identity in active.clients:
            try:
                proto.send_frames(self.socket, [identity, *frames])
            except zmq.ZMQError as exc:
                log.info("cannot send %s to client %r: %s", kind, identity[:64], exc)
                if exc.errno != zmq.EAGAIN:
                    continue
            kept.append(identity)
        active.clients = kept

    # -- scheduling ------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Give runnable tasks to workers with free slots, oldest job first; only when
        something changed since the last time."""
        if not self._dispatch_wanted or time.monotonic() < self._recovering_until_s:
            return
        self._write_commits()
        self._dispatch_wanted = False
        now = time.monotonic()
        for active in list(self.jobs.values()):
            run = active.run
            for worker in list(self.free.values()):
                if not run.has_work():
                    break
                while worker.free_slots > 0 and worker.worker_id in self.free:
                    picked = sched.assign(run, worker.worker_id, now, self.eligible.keys())
                    if picked is None:
                        break
                    self._send_task(worker, active, *picked)

    def _send_task(self, worker: WorkerInfo, active: ActiveJob, task: sched.Task, attempt: sched.Attempt) -> None:
        run, spec = active.run, active.spec
        seq = worker.next_seq
        worker.next_seq += 1
        body: dict[str, Any] = {
            "kind": task.kind,
            "job_id": run.job_id,
            "attempt_id": attempt.attempt_id,
            "seq": seq,
            "describe": sched.task_description(task),
            "attempt_dir": active.committer.attempt_dir(attempt.attempt_id),
            "output_format": spec.get("output_format", "text"),
            "step": spec.get("step"),
            "filesystems": spec.get("filesystems"),
            "buffer_bytes": spec.get("buffer_bytes"),
        }
        names, blobs = [], []
        if run.job_id not in worker.jobs_loaded:
            names.append("code")
            blobs.append(active.code)
        table_version = None
        if task.kind == "map":
            body.update(split=task.split, part=task.index, num_reducers=len(run.reduces),
                        skip_bad_records=bool(spec.get("skip_bad_records")),
                        partition_cuts=spec.get("partition_cuts"))
        else:
            table_version = active.map_table_version
            body.update(partition=task.index, map_outputs_version=table_version)
            if worker.map_tables.get(run.job_id) != table_version:
                names.append("map_outputs")
                blobs.append(self._map_table(active))
        body["blobs"] = names
        worker.running[attempt.attempt_id] = seq
        self._update_free(worker)
        if attempt.backup:
            log.info("job %s: backup attempt %s of straggler %s on worker %s", run.job_id, attempt.attempt_id,
                     task.task_id, worker.worker_id)
        if self._send(worker.identity, proto.ASSIGN, body, *blobs):
            worker.jobs_loaded.add(run.job_id)
            worker.jobs_held.add(run.job_id)
            if table_version is not None:
                worker.map_tables[run.job_id] = table_version
        else:
            self._lose_worker(worker.worker_id, "it cannot be reached")

    def _map_table(self, active: ActiveJob) -> bytes:
        """The job's map output locations, encoded once per version."""
        if active.map_table is None:
            active.map_table = locations.encode([t.result["map_output"] for t in active.run.maps])
        return active.map_table

    def _map_outputs_changed(self, active: ActiveJob) -> None:
        active.map_table = None
        active.map_table_version += 1

    def _apply(self, active: ActiveJob, effects: list[sched.Effect]) -> None:
        """Carry out what a transition asks for."""
        for effect in effects:
            if effect.kind == "commit_task" and effect.task is not None and effect.attempt is not None:
                self._commits.setdefault(active.job_id, []).append((effect.task, effect.attempt, effect.detail))
                if effect.task.kind == "map" and not active.run.map_only:
                    self._map_outputs_changed(active)
            elif effect.kind == "discard" and effect.attempt is not None:
                attempt_id = effect.attempt.attempt_id
                self._in_background(lambda a=attempt_id: active.committer.discard_attempt(a), _log_error)
            elif effect.kind == "cancel_attempt" and effect.attempt is not None:
                self._cancel_attempt(active, effect.attempt)
            elif effect.kind == "worker_excluded" and effect.detail is not None:
                self._exclude(active, effect.detail["worker_id"], effect.detail["failures"])
        self._dispatch_wanted = True
        if any(effect.kind in ("job_succeeded", "job_failed") for effect in effects):
            active.ended_s = time.monotonic()  # after the cancels above, so it waits for them

    def _write_commits(self) -> None:
        """Hand this pass's task commits to the background thread, which records them in the
        state database (durable) and only then moves committed files into place. Anything
        that acts on a commit (a job commit, a reduce's rename) runs after it on that same
        thread, so the write-ahead rule holds without the loop ever waiting for an fsync.
        Commits that queue up while a write is under way (or within ``COMMIT_EVERY_S``) go
        in the next one together: one transaction, one fsync. Called before timers and
        dispatch."""
        if not self._commits:
            return
        commits, self._commits = self._commits, {}
        with self._queued_lock:
            for job_id, done in commits.items():
                if (active := self.jobs.get(job_id)) is not None:
                    self._queued_commits.setdefault(job_id, (active, []))[1].extend(done)
            if self._write_scheduled:
                return
            self._write_scheduled = True
        self._in_background(self._record_queued, self._recorded)

    def _record_queued(self) -> list[tuple[ActiveJob, str]]:
        """(On the background thread.) Take every queued commit and record it."""
        if self.store is not None:
            time.sleep(max(0.0, self._last_write_s + COMMIT_EVERY_S - time.monotonic()))
        with self._queued_lock:
            work, self._queued_commits = list(self._queued_commits.values()), {}
            self._write_scheduled = False
        self._last_write_s = time.monotonic()
        return self._record(work)

    def _record(self, work: list[tuple[ActiveJob, list]]) -> list[tuple[ActiveJob, str]]:
        """(On the background thread.) Record, then carry out, task commits; returns the
        jobs that must fail, with why."""
        failed = []
        for active, done in work:
            if self.store is not None:
                try:
                    self.store.commit_tasks(active.job_id, [
                        StoredCommit(task.kind, task.index, attempt.attempt_id, attempt.worker_id, storable(result))
                        for task, attempt, result in done])
                except PymrError as exc:
                    failed.append((active, str(exc)))
                    continue
            for task, attempt, result in done:
                if task.kind == "reduce" or active.run.map_only:
                    try:
                        active.committer.commit_task(attempt.attempt_id, result["files"])
                    except OSError as exc:
                        failed.append((active, f"committing {sched.task_description(task)} failed: {exc}"))
                        break
        return failed

    def _recorded(self, failed: list[tuple[ActiveJob, str]] | None, error: BaseException | None) -> None:
        for active, why in failed or []:
            log.error("job %s: %s", active.job_id, why)
            self._apply(active, sched.abort(active.run, why))
        if error is not None:
            log.error("recording task commits failed", exc_info=error)

    def _exclude(self, active: ActiveJob, worker_id: str, failures: int) -> None:
        """A job stopped giving tasks to a worker; several jobs that did make it excluded
        cluster-wide for ``exclude_for_s`` (unless no other worker is left)."""
        log.warning("job %s: worker %s excluded from the job after %d failed attempts", active.job_id, worker_id,
                    failures)
        active.excluded_workers.append(worker_id)
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        now = time.monotonic()
        worker.excluded_by = {j: t for j, t in worker.excluded_by.items() if now - t < EXCLUDE_WINDOW_S}
        worker.excluded_by[active.job_id] = now
        if len(worker.excluded_by) >= EXCLUDING_JOBS and len(self.eligible) > 1:
            worker.excluded_until_s = now + self.exclude_for_s
            self.eligible.pop(worker_id, None)
            self._update_free(worker)
            log.warning("worker %s excluded from every job for %g s: attempts failed on it in %d jobs", worker_id,
                        self.exclude_for_s, len(worker.excluded_by))

    def _cancel_attempt(self, active: ActiveJob, attempt: sched.Attempt) -> None:
        worker = self.workers.get(attempt.worker_id)
        if worker is None:
            return
        worker.running.pop(attempt.attempt_id, None)
        self._update_free(worker)
        if self._send(worker.identity, proto.CANCEL, {"job_id": active.job_id, "attempt_id": attempt.attempt_id}):
            active.stopping[attempt.attempt_id] = worker.worker_id

    def _stopped(self, active: ActiveJob, attempt_id: str) -> None:
        """A cancelled attempt is confirmed dead (or its worker is gone)."""
        if active.stopping.pop(attempt_id, None) is not None and active.ended_s is not None:
            self._finish_ended_jobs()

    def _finish_ended_jobs(self, force: bool = False) -> None:
        """Close each ended job whose cancelled attempts are all confirmed dead, or that
        waited ``stop_wait_s`` for them (their workers are then presumably stuck)."""
        now = time.monotonic()
        for active in list(self.jobs.values()):
            if active.ended_s is None or active.closing:
                continue
            if active.stopping and not force:
                if now - active.ended_s < self.stop_wait_s:
                    continue
                log.warning("job %s: attempts %s not confirmed stopped after %g s; ending the job anyway",
                            active.job_id, ", ".join(sorted(active.stopping)), self.stop_wait_s)
            self._close_job(active)

    def _close_job(self, active: ActiveJob) -> None:
        """Commit (or abort) the job's output in the background, then tell everyone. Task
        commits not yet handed to the background thread go first: the job commit must
        find every committed part in place."""
        self._write_commits()
        active.closing = True
        run = active.run
        if run.state == sched.JobState.SUCCEEDED:
            report = job_report(active)
            expected = [name for task in (run.reduces or run.maps) for name in (task.result or {}).get("files", [])]
            self._in_background(lambda: active.committer.commit_job(report, expected),
                                lambda _, error: self._job_committed(active, error))
        else:
            self._in_background(active.committer.abort_job, lambda _, error: self._job_closed(active))

    def _job_committed(self, active: ActiveJob, error: BaseException | None) -> None:
        if error is None:
            self._job_closed(active)
            return
        run = active.run
        run.state, run.error = sched.JobState.FAILED, f"job commit failed: {error}"
        log.warning("job %s: %s", run.job_id, run.error)
        self._in_background(active.committer.abort_job, lambda _, __: self._job_closed(active))

    def _job_closed(self, active: ActiveJob) -> None:
        run = active.run
        report = job_report(active)
        if self.store is not None:
            try:
                self.store.end_job(run.job_id, run.state.value, run.error, report)
            except PymrError as exc:  # the job resumes (and ends again) when the coordinator restarts
                log.error("job %s: %s", run.job_id, exc)
        self._tell_clients(active, proto.PROGRESS,
                           {"job_id": run.job_id, "elapsed_s": time.monotonic() - active.started_s, **run.counts()})
        self._tell_clients(active, proto.FINISHED, report)
        for worker in self.workers.values():
            if run.job_id in worker.jobs_held or run.job_id in worker.jobs_loaded:
                self._send(worker.identity, proto.JOB_ENDED, {"job_id": run.job_id})
            worker.jobs_loaded.discard(run.job_id)
            worker.jobs_held.discard(run.job_id)
            worker.map_tables.pop(run.job_id, None)
        self._remember_finished(active, report)
        del self.jobs[run.job_id]
        self.finished[run.job_id] = report
        while len(self.finished) > MAX_FINISHED:
            self.finished.popitem(last=False)
        (log.info if run.state == sched.JobState.SUCCEEDED else log.warning)(
            "job %s %s%s", run.job_id, run.state.value, f": {run.error}" if run.error else "")

    # -- status: the page's answers and the CLI's queries -----------------------------------
    def _remember_finished(self, active: ActiveJob, report: dict[str, Any]) -> None:
        self.history.add(status.finished_detail(active, report))
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
        return running + (self.history.summaries()[::-1] if everything else [])

    def _job_detail(self, job_id: str) -> dict[str, Any] | None:
        active = self.jobs.get(job_id)
        if active is not None:
            return status.job_detail(active, job_report(active))
        return self.history.get(job_id)

    def _on_list_jobs(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        self._send(identity, proto.ANSWER, {"jobs": self._job_list(bool(msg.body.get("all")))})

    def _on_job_status(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        job_id = str(msg.body["job_id"])
        active = self.jobs.get(job_id) if msg.body.get("brief") else None  # a summary is O(1), a detail O(tasks)
        detail = dict(status.job_summary(active), ended=False) if active is not None else self._job_detail(job_id)
        if detail is None:
            self._send(identity, proto.ANSWER, {"error": f"unknown job {job_id}", "exit_code": 2})
        else:
            self._send(identity, proto.ANSWER, {"job": detail})

    def _on_list_workers(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
        self._send(identity, proto.ANSWER, {"workers": status.workers_view(self.workers.values())})

    def _on_find_logs(self, identity: bytes, worker: WorkerInfo | None, msg: proto.Message) -> None:
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
        self._write_commits()
        for active in list(self.jobs.values()):
            if self.store is not None:
                break  # with a state dir, running jobs resume when a coordinator starts on it again
            if not active.closing:
                self._apply(active, sched.cancel(active.run, "the coordinator stopped"))
        self._finish_ended_jobs(force=True)  # no loop is left to wait for workers in
        self._background.shutdown(wait=True)
        self._run_completions()
        # Workers are not told to stop: they wait for a coordinator to come back.
        self.socket.close(linger=0)
        self.security.close()
        self.context.destroy(linger=0)
        self._wake_read.close()
        self._wake_write.close()
        if self.store is not None:
            self.store.close()

    # -- recovery ----------------------------------------------------------------------------
    def _recover(self) -> None:
        """Resume the jobs an earlier coordinator on this state dir left running: their
        committed reduces stay committed; their committed maps stay done if the worker
        holding the output registers with it (``_reclaim_outputs``) within a grace period."""
        assert self.store is not None
        for record in reversed(self.store.finished_jobs(MAX_FINISHED)):
            if record.get("report"):
                self.finished[record["job_id"]] = record["report"]
                self.history.add(status.stored_detail(record))
        stored_jobs = self.store.running_jobs()
        for stored in stored_jobs:
            try:
                self._resume(stored)
            except Exception as exc:  # one job that cannot resume must not stop the others
                log.error("job %s cannot resume: %s: %s", stored.job_id, type(exc).__name__, exc)
        self._awaited = {worker_id for active in self.jobs.values() for _, worker_id, _ in active.reclaimable.values()}
        if self._awaited:  # maps wait (a little) for the workers holding their outputs, not run again at once
            self._recovering_until_s = time.monotonic() + RECOVERY_GRACE_S

    def _resume(self, stored: StoredJob) -> None:
        spec = dict(stored.spec)
        splits = spec.pop("splits")
        storage.configure(spec.get("filesystems"))
        run = _new_run(stored.job_id, spec, splits)
        run.attempt_offset = 1000 * self.store.count_restart(stored.job_id)
        active = ActiveJob(run, spec, stored.code, output_committer(spec["output"], stored.job_id), [],
                           time.monotonic(), submitted_unix_s=stored.submitted_unix_s)
        for commit in stored.tasks:
            active.committed_before.setdefault(commit.kind, set()).add(commit.index)
            tasks = run.maps if commit.kind == "map" else run.reduces
            result = commit.result
            if commit.kind == "reduce" or run.map_only:
                active.committer.recover_task(commit.attempt_id, result.get("files", []))
                sched.restore(run, tasks[commit.index], commit.attempt_id, commit.worker_id, result)
            else:
                active.reclaimable[commit.attempt_id] = (commit.index, commit.worker_id, result)
        if stored.client_id:
            self.submissions[stored.client_id] = stored.job_id
        self.jobs[stored.job_id] = active
        done = run.counts()
        log.warning("job %s (%s) resumed: %d of %d reduces and %d of %d maps committed before the restart "
                    "(maps count once their worker is back)", run.job_id, run.name, done["reduces_done"],
                    done["reduces_total"], len(active.reclaimable), len(run.maps))
        self._apply(active, sched.finish_restored(run))

    def _reclaim_outputs(self, worker: WorkerInfo, held: list[str]) -> None:
        """A worker registered holding map outputs (attempt ids): the committed ones count
        as done again, as they were before the restart, served from where the worker serves
        them now (a worker that restarted too has a new shuffle port)."""
        for attempt_id in held:
            active = self._job_of_attempt(attempt_id)
            found = active.reclaimable.pop(attempt_id, None) if active is not None else None
            if found is None:
                continue
            index, worker_id, result = found
            result = {**result, "map_output": {**result["map_output"], "host": worker.host,
                                               "address": worker.shuffle_address}}
            if worker_id == worker.worker_id and sched.restore(active.run, active.run.maps[index], attempt_id,
                                                               worker_id, result):
                worker.jobs_held.add(active.job_id)
                self._map_outputs_changed(active)
                self._apply(active, sched.finish_restored(active.run))


def _new_run(job_id: str, spec: dict[str, Any], splits: list[dict[str, Any]]) -> sched.JobRun:
    """The scheduler's state of a job submitted (or resumed) with ``spec``."""
    return sched.new_job(job_id, spec.get("name", "job"), splits,
                         (spec.get("reducers") or 1) if spec.get("has_reducer") else 0,
                         spec.get("max_attempts") or sched.DEFAULT_MAX_ATTEMPTS,
                         speculative=spec.get("speculative", True),
                         exclude_after=spec.get("exclude_after") or sched.DEFAULT_EXCLUDE_AFTER)


def _plan_job(job_id: str, spec: dict[str, Any]) -> tuple[list[dict[str, Any]], OutputCommitter]:
    """Split the job's input and prepare its output folder (on the background thread)."""
    storage.configure(spec.get("filesystems"))  # options from the job's URIs (endpoint, region, ...)
    committer = output_committer(spec["output"], job_id)
    splits = plan_splits(spec["inputs"], spec.get("split_size") or DEFAULT_SPLIT_SIZE, spec.get("input_format"))
    if spec.get("map_batch"):
        require_record_batches(splits)
    committer.setup(bool(spec.get("overwrite")))
    return [s.to_dict() for s in splits], committer




def _log_error(_: Any, error: BaseException | None) -> None:
    if error is not None:
        log.warning("background work failed: %s: %s", type(error).__name__, error)
