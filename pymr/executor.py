"""Task executors: long-lived child processes in which a worker runs its tasks.

User code never runs in the worker process itself (rq calls this the work horse):
a task that calls ``os._exit``, segfaults or is killed for memory takes down only its
executor, and the worker reports a failed attempt and starts a fresh executor. A task
that must stop (a speculative loser, a cancelled job) is stopped by killing its executor.

Executors are started with the ``spawn`` method, so they inherit no ZeroMQ context and
no Arrow thread pool, and stay up for many tasks (no process start per task). They
talk to their worker over a ``multiprocessing`` pipe: ``("task", task, blob_or_None)``
in, ``("done", result)`` or ``("failed", error, pickled_exception)`` out. Job code
arrives once per executor per job. An executor exits when its worker disappears.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

_SPAWN = multiprocessing.get_context("spawn")


class Executor:
    """The worker's handle on one executor process."""

    def __init__(self, name: str, settings: dict[str, Any]):
        self.name = name
        self.settings = settings
        self.attempt_id: str | None = None
        self.jobs_loaded: set[str] = set()
        self._start()

    def _start(self) -> None:
        parent, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(target=_main, args=(child, os.getpid(), self.settings),
                                      name=f"pymr-executor-{self.name}", daemon=True)
        self.process.start()
        child.close()
        self.conn: Connection = parent
        self.jobs_loaded = set()

    @property
    def busy(self) -> bool:
        return self.attempt_id is not None

    def fileno(self) -> int:
        return self.conn.fileno()

    def run(self, task: dict[str, Any], blob: bytes) -> None:
        job_id = task["job_id"]
        self.conn.send(("task", task, None if job_id in self.jobs_loaded else blob))
        self.jobs_loaded.add(job_id)
        self.attempt_id = task["attempt_id"]

    def forget(self, job_id: str) -> None:
        if job_id in self.jobs_loaded:
            self.jobs_loaded.discard(job_id)
            try:
                self.conn.send(("forget", job_id))
            except OSError:
                pass

    def receive(self) -> tuple[Any, ...] | None:
        """The finished task's message, or None if the process died (see ``exit_reason``)."""
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            return None
        self.attempt_id = None
        return message

    def exit_reason(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                return f"its process was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"its process was killed by signal {-code}"
        return f"its process exited with status {code}"

    def restart(self) -> None:
        """Kill the process (whatever it is doing) and start a fresh one."""
        self.kill()
        self.attempt_id = None
        self._start()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


def _main(conn: Connection, parent_pid: int, settings: dict[str, Any]) -> None:
    """The executor process: run tasks from the pipe until it closes or the worker dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    jobs: dict[str, tuple[type, dict[str, Any], dict[str, str]]] = {}
    folders: dict[str, str] = {}  # side files, one folder per job
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "forget":
                jobs.pop(message[1], None)
                shutil.rmtree(folders.pop(message[1], ""), ignore_errors=True)
                continue
            reply = _run_one(message[1], message[2], jobs, folders, settings)
            try:
                conn.send(reply)
            except (EOFError, OSError):
                return
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)


def _run_one(task: dict[str, Any], blob: bytes | None, jobs: dict, folders: dict[str, str],
             settings: dict[str, Any]) -> tuple[Any, ...]:
    from .code import load_job, write_side_files
    from .errors import describe_error, pickle_exception
    from .fetch import FetchFailed
    from .tasks import run_task

    try:
        job_id = task["job_id"]
        if blob is not None:
            job_class, options, files = load_job(blob)
            base = os.path.join(settings["data_dir"], os.path.basename(job_id)) if settings.get("data_dir") else None
            if base:  # under the worker's data dir, which the worker cleans even if this process is killed
                os.makedirs(base, exist_ok=True)
            folders[job_id] = tempfile.mkdtemp(prefix="files-", dir=base)
            jobs[job_id] = (job_class, options, write_side_files(files, folders[job_id]))
        job_class, options, paths = jobs[job_id]
        return ("done", run_task(job_class, options, task, settings=settings, files=paths))
    except BaseException as exc:  # the user's exception, reported with its own traceback
        error = describe_error(exc)
        if isinstance(exc, FetchFailed):
            error["fetch_failed"] = exc.map_index
        return ("failed", error, pickle_exception(exc))


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)
