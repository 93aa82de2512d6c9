"""A worker: registers with the coordinator, runs tasks in executors, serves map outputs.

The worker process itself runs no user code. Its main loop owns every socket: the
DEALER to the coordinator (register, heartbeat every ``HEARTBEAT_INTERVAL_S`` with how
far each running task has got, receive tasks and cancels, send results), the shuffle
server other workers fetch map outputs from (``fetch.ShuffleServer``), and the pipes of
its ``slots`` executors (``executor.Executor``), each a child process that runs one task
at a time.

* An executor that dies (``os._exit``, a segfault, the OOM killer) fails its attempt
  with the reason, and a fresh one replaces it; a cancelled attempt's executor is
  killed and replaced, and the coordinator is told (ATTEMPT_STOPPED) once it is dead.
* Job code arrives once per worker per job (the worker caches the blob until the
  coordinator says the job ended, then deletes the job's map outputs).
* Any message from the coordinator counts as a sign of life; when it falls silent for
  ``WORKER_TIMEOUT_S``, the worker reconnects with growing backoff and registers
  again. It never exits for that.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket as socketlib
import tempfile
import time
import uuid
from collections import deque
from typing import Any

import zmq

from . import attempt_log
from . import messages
from . import protocol as proto
from .errors import AddressError
from .executor import Executor, checked_arrow_threads
from .fetch import ShuffleServer
from .security import ClusterKey, Security, connect, is_loopback_host

log = logging.getLogger("pymr.worker")
POLL_MS = 200
MAX_BACKOFF_S = 30.0
JOB_PREFIX = "job_"  # the folders of jobs in a data dir (job ids start so)
STALE_JOB_AGE_S = 24 * 3600.0
MAX_QUEUED = 1000
MAP_OUTPUT = "map.arrow"  # in data_dir/JOB/ATTEMPT/


class Worker:
    def __init__(self, coordinator: str, worker_id: str | None = None, slots: int = 1,
                 data_dir: str | None = None, exit_with_parent: bool = False, key: ClusterKey | None = None,
                 host: str | None = None, stale_job_age_s: float = STALE_JOB_AGE_S,
                 fork_executors: bool = False, arrow_threads: int | None = None):
        self.coordinator = coordinator
        self.worker_id = worker_id or f"{socketlib.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.slots = max(1, slots)
        threads = checked_arrow_threads(arrow_threads)  # settings are checked before any folder is made
        self.host = host or ("127.0.0.1" if key is None else _default_host())
        self.key = key
        if key is None and not is_loopback_host(self.host):
            raise ValueError("a worker without a cluster key serves map outputs on loopback only")
        self.own_data_dir = data_dir is None
        self.data_dir = os.path.abspath(data_dir or tempfile.mkdtemp(prefix="pymr-worker-"))
        os.makedirs(self.data_dir, exist_ok=True)
        _remove_stale_jobs(self.data_dir, stale_job_age_s)
        self.parent_pid = os.getppid() if exit_with_parent else None
        settings = {"host": self.host, "key": key.to_dict() if key else None, "data_dir": self.data_dir,
                    "arrow_threads": threads}
        # Executors start first: they import the task code while the worker registers. A worker
        # forked warm (``forkserver``) forks them too, before its ZeroMQ context exists.
        self.executors = [Executor(f"{self.worker_id}-{i}", settings, fork=fork_executors) for i in range(self.slots)]
        self.context = zmq.Context()
        self.security = Security(self.context, key)
        try:
            self.shuffle = ShuffleServer(self.context, self.security, self.host, self.data_dir)
        except AddressError as exc:
            self._close_started()
            raise AddressError(f"{exc} (give --host an address of this machine)") from None
        self.socket: zmq.Socket | None = None
        self.incarnation = uuid.uuid4().hex  # tells the coordinator a restarted worker from a reconnected one
        self.last_seq = 0  # the sequence number of the last ASSIGN received
        self.jobs: dict[str, bytes] = {}  # job id -> its code
        self.map_tables: dict[str, tuple[int, bytes]] = {}  # job id -> (version, table of its map outputs)
        self.queue: deque[dict[str, Any]] = deque()
        self._stop = False
        self._wake: socketlib.socket | None = None
        self._last_heard_s = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until told to shut down (exit 0) or refused by the coordinator (exit 2)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        wake_read, self._wake_write = socketlib.socketpair()  # a signal wakes the poll at once
        self._wake_write.setblocking(False)
        signal.set_wakeup_fd(self._wake_write.fileno())
        self._wake = wake_read
        self._connect()
        try:
            return self._loop()
        finally:
            self._close()

    def request_stop(self) -> None:
        self._stop = True

    def _connect(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        self.socket = self.security.client(proto.configure(self.context.socket(zmq.DEALER)))
        self.socket.setsockopt(zmq.IDENTITY, self.worker_id.encode())
        connect(self.socket, self.coordinator)
        self._last_heard_s = time.monotonic()
        self._send(proto.REGISTER, {"slots": self.slots, "pid": os.getpid(), "host": self.host,
                                    "shuffle_address": self.shuffle.address, "versions": proto.versions(),
                                    "incarnation": self.incarnation, "running": self._running(),
                                    "seq": self.last_seq, "jobs": self._jobs_on_disk(),
                                    "jobs_loaded": sorted(self.jobs), "map_outputs": self._map_outputs_on_disk()})

    def _running(self) -> list[str]:
        """The attempts this worker runs or has queued."""
        return [e.attempt_id for e in self.executors if e.busy] + [t["attempt_id"] for t in self.queue]

    def _progress(self) -> dict[str, float]:
        """How far each running attempt has got (0 to 1), as its executor last said."""
        return {e.attempt_id: e.progress for e in self.executors if e.busy and e.progress}

    def _map_outputs_on_disk(self) -> list[str]:
        """The attempts whose map output is in the data dir: a coordinator that restarted
        counts the committed ones as done instead of running them again."""
        held = []
        for job_id in self._jobs_on_disk():
            job_dir = os.path.join(self.data_dir, job_id)
            try:
                held += [a for a in os.listdir(job_dir) if os.path.isfile(os.path.join(job_dir, a, MAP_OUTPUT))]
            except OSError:
                continue
        return held[:messages.MAX_IDS]

    def _jobs_on_disk(self) -> list[str]:
        """The jobs that have a folder in the data dir (map outputs, scratch files, logs)."""
        try:
            return sorted(name for name in os.listdir(self.data_dir)
                          if name.startswith(JOB_PREFIX) and os.path.isdir(os.path.join(self.data_dir, name)))
        except OSError:
            return []

    def _loop(self) -> int:
        next_heartbeat = time.monotonic() + proto.HEARTBEAT_INTERVAL_S
        backoff_s = proto.WORKER_TIMEOUT_S
        while not self._stop:
            poller = zmq.Poller()
            poller.register(self.socket, zmq.POLLIN)
            poller.register(self.shuffle.socket, zmq.POLLIN)
            if self._wake is not None:
                poller.register(self._wake, zmq.POLLIN)
            for executor in self.executors:
                poller.register(executor.fileno(), zmq.POLLIN)
            events = dict(poller.poll(POLL_MS))
            if self._wake is not None and self._wake in events:
                self._wake.recv(64)
            if self.shuffle.socket in events:
                self.shuffle.handle_all()
            for executor in self.executors:
                if executor.fileno() in events:
                    self._collect(executor)
            if self.socket in events:
                code = self._receive()
                if code is not None:
                    return code
                backoff_s = proto.WORKER_TIMEOUT_S
            self._start_queued()
            now = time.monotonic()
            if now >= next_heartbeat:
                self._send(proto.HEARTBEAT, {"running": self._running(), "seq": self.last_seq,
                                             "progress": self._progress()})
                next_heartbeat = now + proto.HEARTBEAT_INTERVAL_S
            if now - self._last_heard_s > backoff_s:
                log.warning("coordinator %s silent for %.0f s; reconnecting", self.coordinator, backoff_s)
                self._connect()
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("parent process is gone; exiting")
                return 1
        self._send(proto.BYE)
        return 0

    def _close(self) -> None:
        if self._wake is not None:
            signal.set_wakeup_fd(-1)
            self._wake.close()
            self._wake_write.close()
        self.shuffle.close()
        if self.socket is not None:
            self.socket.close(linger=0)
        self._close_started()

    def _close_started(self) -> None:
        """What ``__init__`` starts before the shuffle server listens."""
        for executor in self.executors:
            executor.kill()
        self.security.close()
        self.context.destroy(linger=0)
        if self.own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- messages --------------------------------------------------------------------------
    def _send(self, kind: str, body: dict[str, Any] | None = None, *blobs: bytes) -> None:
        try:
            self.socket.send_multipart(proto.pack(kind, body, *blobs), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("coordinator not accepting messages; dropped %s", kind)

    def _receive(self) -> int | None:
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return None
            self._last_heard_s = time.monotonic()
            code = self._handle_frames(frames)
            if code is not None:
                return code

    def _handle_frames(self, frames: list[bytes]) -> int | None:
        """Decode, check and handle one message from the coordinator; a bad one is logged and dropped."""
        try:
            return self._handle(messages.validate(proto.unpack(frames), messages.TO_WORKER))
        except proto.ProtocolError as exc:
            log.warning("dropped a malformed message from the coordinator: %s", exc)
        except Exception:  # nothing the coordinator sends may stop the worker
            log.exception("error handling a message from the coordinator; dropped it")
        return None

    def _handle(self, msg: proto.Message) -> int | None:
        body = msg.body
        if msg.kind == proto.ASSIGN:
            self._accept(body, msg.blobs)
        elif msg.kind == proto.CANCEL:
            self._cancel(body["job_id"], body["attempt_id"])
        elif msg.kind == proto.JOB_ENDED:
            self._end_job(body["job_id"])
        elif msg.kind == proto.WELCOME:
            for job_id in body.get("forget", []):  # jobs that ended while we were away
                self._end_job(job_id)
            for attempt_id in body.get("kill", []):  # attempts the coordinator no longer counts on
                self._cancel(attempt_id.rsplit("-", 2)[0], attempt_id)
        elif msg.kind == proto.SHUTDOWN:
            return 0
        elif msg.kind == proto.REFUSED:
            if body.get("reregister"):
                self._connect()
                return None
            log.error("coordinator refused this worker: %s", body.get("error"))
            return 2
        return None

    def _accept(self, task: dict[str, Any], blobs: list[bytes]) -> None:
        """Queue an assigned task, keeping the code and map output table it came with."""
        self.last_seq = max(self.last_seq, task["seq"])
        job_id = task["job_id"]
        if len(self.queue) >= MAX_QUEUED:  # a coordinator never sends more than our free slots
            self._report_failure(task, {"type": proto.MISSING_BLOB, "message": "the worker's queue is full"})
            return
        for name, blob in zip(task.pop("blobs", []), blobs):
            if name == "code":
                self.jobs[job_id] = blob
            elif name == "map_outputs":
                self.map_tables[job_id] = (task.get("map_outputs_version"), blob)
        self.queue.append(task)

    def _cancel(self, job_id: str, attempt_id: str) -> None:
        """Stop the attempt, then say so: the coordinator ends a job only once nothing of
        it can still write into its output folder."""
        self.queue = deque(t for t in self.queue if t["attempt_id"] != attempt_id)
        for executor in self.executors:
            if executor.attempt_id == attempt_id:
                log.info("killing attempt %s", attempt_id)
                executor.restart()
        self._send(proto.ATTEMPT_STOPPED, {"job_id": job_id, "attempt_id": attempt_id})

    def _end_job(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        self.map_tables.pop(job_id, None)
        for executor in self.executors:
            executor.forget(job_id)
        job_dir = os.path.join(self.data_dir, os.path.basename(job_id))
        self.shuffle.forget(os.path.realpath(job_dir))
        attempt_log.remove_job_files(job_dir)  # its logs stay a while, for `pymr logs`

    # -- tasks -----------------------------------------------------------------------------
    def _start_queued(self) -> None:
        while self.queue:
            executor = next((e for e in self.executors if not e.busy), None)
            if executor is None:
                return
            task = self.queue.popleft()
            job_id = task["job_id"]
            table = self.map_tables.get(job_id)
            if job_id not in self.jobs:
                self._report_failure(task, {"type": proto.MISSING_BLOB, "message": "the job's code never arrived"})
                continue
            if task["kind"] == "map":
                task["map_output"] = os.path.join(self.data_dir, os.path.basename(job_id),
                                                  task["attempt_id"], MAP_OUTPUT)
            elif table is None or table[0] != task.get("map_outputs_version"):
                self._report_failure(task, {"type": proto.MISSING_BLOB, "message": "the map output table never arrived"})
                continue
            else:
                task["map_outputs"] = table[1]  # decoded by the task itself, off this loop
            executor.run(task, self.jobs[job_id])

    def _collect(self, executor: Executor) -> None:
        attempt_id = executor.attempt_id
        message = executor.receive()
        if message is not None and message[0] == "progress":
            return  # sent on with the next heartbeat
        ids = {"job_id": attempt_id.rsplit("-", 2)[0] if attempt_id else None, "attempt_id": attempt_id}
        if message is None:
            reason = executor.exit_reason()
            log.warning("executor for %s died: %s", attempt_id, reason)
            executor.restart()
            if attempt_id is not None:
                self._send(proto.TASK_FAILED, {**ids, "error": {"type": "TaskProcessDied",
                                                                "message": f"the task's process died: {reason}",
                                                                "worker_id": self.worker_id}})
            return
        if message[0] == "done":
            result = message[1]
            if "map_output" in result:
                result["map_output"] = {"path": result["map_output"], "host": self.host,
                                        "address": self.shuffle.address}
            self._send(proto.TASK_DONE, {**ids, "result": result})
        else:
            error = message[1]  # type, message and traceback text: data, never a pickle
            error["worker_id"] = self.worker_id
            self._send(proto.TASK_FAILED, {**ids, "error": error})

    def _report_failure(self, task: dict[str, Any], error: dict[str, Any]) -> None:
        self._send(proto.TASK_FAILED, {"job_id": task["job_id"], "attempt_id": task["attempt_id"], "error": error})


def _remove_stale_jobs(data_dir: str, age_s: float) -> None:
    """Delete the folders of jobs untouched for ``age_s``: left by a worker or coordinator
    that died (the rest are deleted once the coordinator says their jobs are over)."""
    now = time.time()
    try:
        names = [n for n in os.listdir(data_dir) if n.startswith(JOB_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(data_dir, name)
        try:
            stale = now - os.stat(path).st_mtime > age_s
        except OSError:
            continue
        if stale:
            log.warning("deleting %s: a job not heard of for %.0f s", path, now - os.stat(path).st_mtime)
            shutil.rmtree(path, ignore_errors=True)


def _default_host() -> str:
    """This machine's address as other machines see it (override with --host)."""
    try:
        return socketlib.gethostbyname(socketlib.gethostname())
    except OSError:
        return socketlib.gethostname()
