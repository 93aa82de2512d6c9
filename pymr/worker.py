"""A worker: registers with the coordinator, runs the tasks it is given, heartbeats.

The main thread owns the ZeroMQ socket: it registers, heartbeats every
``HEARTBEAT_INTERVAL_S`` (any message from the coordinator counts as a sign of life),
receives tasks and cancels, and sends results. Each task runs in a thread of its own
(one per slot), so a long ``map`` never delays a heartbeat, and reports back over an
inproc socket. Job code arrives cloudpickled once per job and is cached until the
coordinator says the job ended; map outputs live under ``data_dir/<job_id>/``.

A worker whose coordinator falls silent reconnects with backoff and registers again;
it never crashes for that.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import socket as socketlib
import tempfile
import threading
import time
import uuid
from typing import Any

import cloudpickle
import zmq

from . import protocol as proto
from .code import load_job
from .tasks import describe_error, run_task

log = logging.getLogger("pymr.worker")
POLL_MS = 200
MAX_BACKOFF_S = 30.0


class TaskCancelled(Exception):
    """Raised inside a task thread when the coordinator cancels its attempt."""


class Worker:
    def __init__(self, coordinator: str, worker_id: str | None = None, slots: int = 1,
                 data_dir: str | None = None, exit_with_parent: bool = False):
        self.coordinator = coordinator
        self.worker_id = worker_id or f"{socketlib.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.slots = max(1, slots)
        self.own_data_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pymr-worker-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.parent_pid = os.getppid() if exit_with_parent else None
        self.context = zmq.Context()
        self.results = self.context.socket(zmq.PULL)
        self.results_addr = f"inproc://results-{uuid.uuid4().hex}"
        self.results.bind(self.results_addr)
        self.socket: zmq.Socket | None = None
        self.jobs: dict[str, tuple[type, dict[str, Any]]] = {}
        self.cancelled: dict[str, threading.Event] = {}
        self.running: set[str] = set()
        self._stop = False
        self._last_heard_s = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until told to shut down (exit 0) or refused by the coordinator (exit 2)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
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
        self.socket = proto.configure(self.context.socket(zmq.DEALER))
        self.socket.setsockopt(zmq.IDENTITY, self.worker_id.encode())
        self.socket.connect(self.coordinator)
        self._last_heard_s = time.monotonic()
        self._send(proto.REGISTER, {"slots": self.slots, "pid": os.getpid(), "host": socketlib.gethostname(),
                                    "data_dir": self.data_dir, "versions": proto.versions()})

    def _loop(self) -> int:
        poller = zmq.Poller()
        poller.register(self.results, zmq.POLLIN)
        next_heartbeat = time.monotonic() + proto.HEARTBEAT_INTERVAL_S
        backoff_s = proto.WORKER_TIMEOUT_S
        while not self._stop:
            if self.socket not in dict(poller.sockets):
                poller.register(self.socket, zmq.POLLIN)
            events = dict(poller.poll(POLL_MS))
            if self.results in events:
                self._forward_results()
            if self.socket in events:
                code = self._receive()
                if code is not None:
                    return code
                backoff_s = proto.WORKER_TIMEOUT_S
            now = time.monotonic()
            if now >= next_heartbeat:
                self._send(proto.HEARTBEAT, {"running": sorted(self.running)})
                next_heartbeat = now + proto.HEARTBEAT_INTERVAL_S
            if now - self._last_heard_s > backoff_s:
                log.warning("coordinator %s silent for %.0f s; reconnecting", self.coordinator, backoff_s)
                poller.unregister(self.socket)
                self._connect()
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("parent process is gone; exiting")
                return 1
        self._send(proto.BYE)
        return 0

    def _close(self) -> None:
        for event in self.cancelled.values():
            event.set()
        if self.socket is not None:
            self.socket.close(linger=0)
        self.results.close(linger=0)
        self.context.term() if not self.running else self.context.destroy(linger=0)
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
            try:
                msg = proto.unpack(frames)
            except proto.ProtocolError as exc:
                log.warning("dropped a malformed message: %s", exc)
                continue
            code = self._handle(msg)
            if code is not None:
                return code

    def _handle(self, msg: proto.Message) -> int | None:
        body = msg.body
        if msg.kind == proto.ASSIGN:
            self._start_task(body, msg.blobs)
        elif msg.kind == proto.CANCEL:
            event = self.cancelled.get(str(body.get("attempt_id")))
            if event is not None:
                event.set()
        elif msg.kind == proto.JOB_ENDED:
            self._end_job(str(body.get("job_id")))
        elif msg.kind == proto.SHUTDOWN:
            return 0
        elif msg.kind == proto.REFUSED:
            if body.get("reregister"):
                self._connect()
                return None
            log.error("coordinator refused this worker: %s", body.get("error"))
            return 2
        return None

    def _end_job(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        shutil.rmtree(os.path.join(self.data_dir, os.path.basename(job_id)), ignore_errors=True)

    # -- tasks -----------------------------------------------------------------------------
    def _start_task(self, task: dict[str, Any], blobs: list[bytes]) -> None:
        job_id, attempt_id = str(task["job_id"]), str(task["attempt_id"])
        if blobs:
            try:
                self.jobs[job_id] = load_job(blobs[0])
            except Exception as exc:
                error = describe_error(exc)
                error["message"] = f"cannot load the job's code on worker {self.worker_id}: {error['message']}"
                self._send(proto.TASK_FAILED, {"job_id": job_id, "attempt_id": attempt_id, "error": error})
                return
        if job_id not in self.jobs:
            self._send(proto.TASK_FAILED, {"job_id": job_id, "attempt_id": attempt_id,
                                           "error": {"type": "WorkerError", "message": "job code missing"}})
            return
        job_class, options = self.jobs[job_id]
        if task["kind"] == "map":
            task["map_output"] = os.path.join(self.data_dir, os.path.basename(job_id), attempt_id, "map.arrow")
        cancelled = threading.Event()
        self.cancelled[attempt_id] = cancelled
        self.running.add(attempt_id)
        thread = threading.Thread(target=self._run_task, args=(job_class, options, task, cancelled),
                                  name=f"task-{attempt_id}", daemon=True)
        thread.start()

    def _run_task(self, job_class: type, options: dict[str, Any], task: dict[str, Any],
                  cancelled: threading.Event) -> None:
        def check() -> None:
            if cancelled.is_set():
                raise TaskCancelled

        out = self.context.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 1000)
        out.connect(self.results_addr)
        ids = {"job_id": task["job_id"], "attempt_id": task["attempt_id"]}
        try:
            result = run_task(job_class, options, task, check)
            out.send_multipart(proto.pack(proto.TASK_DONE, {**ids, "result": result}))
        except TaskCancelled:
            out.send_multipart(proto.pack(proto.TASK_FAILED, {**ids, "cancelled": True,
                                                              "error": {"type": "Cancelled", "message": "cancelled"}}))
        except BaseException as exc:  # the user's exception, reported with its own traceback
            error = describe_error(exc)
            error["worker_id"] = self.worker_id
            out.send_multipart(proto.pack(proto.TASK_FAILED, {**ids, "error": error}, _pickle_exception(exc)))
        finally:
            out.close()

    def _forward_results(self) -> None:
        while True:
            try:
                frames = self.results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = proto.unpack(frames)
            attempt_id = str(msg.body["attempt_id"])
            self.running.discard(attempt_id)
            self.cancelled.pop(attempt_id, None)
            if msg.body.get("cancelled"):
                continue  # the coordinator already counted it out
            self.socket.send_multipart(frames, zmq.NOBLOCK)


def _pickle_exception(exc: BaseException) -> bytes:
    """The exception itself, so a Python caller can see its real type (empty if it won't pickle)."""
    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return b""
