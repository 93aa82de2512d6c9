"""Task executors: long-lived child processes in which a worker runs its tasks.

User code never runs in the worker process itself (rq calls this the work horse):
a task that calls ``os._exit``, segfaults or is killed for memory takes down only its
executor, and the worker reports a failed attempt and starts a fresh executor. A task
that must stop (a speculative loser, a cancelled job) is stopped by killing its executor.

Executors are fresh ``python -m pymr.executor`` processes (not ``multiprocessing``
spawn, which would re-import the worker's ``__main__``), and stay up for many tasks (no
process start per task). An executor imports the task code (and Arrow) as soon as it
starts, while its worker registers. A worker that was itself forked warm by local
mode's fork server (``pymr.forkserver``) forks its first executors instead, before it
creates its ZeroMQ context, so they inherit neither a context nor an Arrow thread pool
and import nothing; an executor that replaces one is always a fresh process.

An executor talks to its worker over a socket pair wrapped in a ``multiprocessing``
connection: the worker's settings first, then ``("task", task, blob_or_None)`` in,
``("done", result)`` or ``("failed", error)`` out (the error as data: type, message, traceback). Job code arrives
once per executor per job. While a task runs, ``("progress", fraction)`` goes out every
``PROGRESS_INTERVAL_S`` (see ``TaskProgress``). An executor exits when its worker disappears.

Arrow's thread pools in an executor hold the worker's ``--arrow-threads`` (or
``PYMR_ARROW_THREADS``) threads (default 1: an
executor runs one task at a time, and a machine's executors together already keep its
cores busy; Arrow's own default is one thread per core in every executor).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from . import attempt_log, progress, storage
from .errors import SettingError

ARROW_THREADS_ENV = "PYMR_ARROW_THREADS"
PROGRESS_INTERVAL_S = 1.0  # as often as the worker's heartbeat, which carries it on
_parent_ends: set[int] = set()  # this process's ends of its forked executors' pipes


def checked_arrow_threads(given: int | None = None) -> int:
    """Threads of each of an executor's Arrow pools (CPU and I/O): ``given`` (a flag or
    ``run()``'s keyword), else ``PYMR_ARROW_THREADS``, else 1."""
    if given is not None:
        if type(given) is not int or given < 1:
            raise SettingError(f"arrow_threads must be a whole number of at least 1, got {given!r}")
        return given
    text = os.environ.get(ARROW_THREADS_ENV, "1")
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise SettingError(f"{ARROW_THREADS_ENV} must be a whole number of at least 1, got {text!r}")
    return threads


class Executor:
    """The worker's handle on one executor process."""

    def __init__(self, name: str, settings: dict[str, Any], fork: bool = False):
        """``fork``: fork this process (only safe before it has a ZeroMQ context or threads)."""
        self.name = name
        self.settings = settings
        self.attempt_id: str | None = None
        self.progress = 0.0  # how far the running task has got (0 to 1), as it last said
        self.jobs_loaded: set[str] = set()
        self._start(fork)

    def _start(self, fork: bool = False) -> None:
        parent, child = socket.socketpair()
        if fork:
            self.process: subprocess.Popen | _ForkedProcess = _fork(child, parent)
        else:
            command = [sys.executable, "-m", "pymr.executor", str(child.fileno()), str(os.getpid()), self.name,
                       self.settings.get("data_dir") or ""]  # the data dir, so tests can find leftovers
            self.process = subprocess.Popen(command, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        child.close()
        self.conn: Connection = Connection(parent.detach())
        _parent_ends.add(self.conn.fileno())
        self.conn.send(self.settings)
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
        """The executor's message: the running task's progress (noted in ``progress``), the
        finished task's result, or None if the process died (see ``exit_reason``)."""
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            return None
        if message[0] == "progress":
            self.progress = message[1]
            return message
        self.attempt_id = None
        self.progress = 0.0
        return message

    def exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
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
        self.progress = 0.0
        self._start()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        _parent_ends.discard(self.conn.fileno())
        self.conn.close()


def _fork(child: socket.socket, parent: socket.socket) -> _ForkedProcess:
    """Fork an executor that runs ``_main`` on ``child``; it closes every pipe end of
    this process (its siblings' included), so a pipe's EOF still means its peer is gone."""
    from .forkserver import fork_child

    worker_pid = os.getpid()

    def run() -> int:
        parent.close()
        for fd in _parent_ends:
            os.close(fd)
        _parent_ends.clear()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for handler in logging.getLogger().handlers[:]:  # the worker's: user code logs as in a fresh process
            logging.getLogger().removeHandler(handler)
        _main(Connection(child.detach()), worker_pid)
        return 0

    return _ForkedProcess(fork_child(run))


class _ForkedProcess:
    """What an ``Executor`` uses of ``subprocess.Popen``, for a process forked here."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None and self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"executor {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


def _main(conn: Connection, parent_pid: int) -> None:
    """The executor process: run tasks from the pipe until it closes or the worker dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    from . import tasks  # noqa: F401  (import Arrow now, while the worker registers, not in the first task)

    # A per-record map keeps a dict of many small lists alive: with the default thresholds
    # the cyclic GC walks them over and over (4-7% of a word count). The imports are
    # frozen out of its reach and it runs after 50,000 net allocations, not 700; cycles
    # are still collected, and a full collection follows every task.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

    try:
        settings = conn.recv()
    except (EOFError, OSError):
        return
    size_arrow_pools(int(settings.get("arrow_threads") or 1))
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
                _forget_folder(folders.pop(message[1], ""))
                continue
            reporter = TaskProgress(conn, message[1])
            try:
                reply = attempt_log.run_captured(_run_one, message[1], message[2], jobs, folders, settings)
            finally:
                reporter.stop()  # before the reply: no progress follows a task's end
            try:
                conn.send(reply)
            except (EOFError, OSError):
                return
            del reply
            gc.collect()
    finally:
        for folder in folders.values():
            _forget_folder(folder)


class TaskProgress:
    """Tells the worker, every ``PROGRESS_INTERVAL_S`` while a task runs and whenever it has
    moved, how far the task has got, from 0 to 1.

    A map: the share of its split's bytes that this process has read since the task
    began, from the kernel's count of its reads from files (Linux's ``/proc/self/io``) and
    what ``storage`` has read from remote files as a stream, so it measures text, JSON
    lines, CSV and whole files, local or remote, compressed or not, with nothing in the
    map's loop. Reads of the task's own spills and side files count too (the figure stops
    at 1); Parquet and Arrow files on an object store, memory-mapped files, and systems
    without ``/proc``, give none. A reduce: the share of its partition's rows read from
    the map outputs (``progress``)."""

    def __init__(self, conn: Connection, task: dict[str, Any]):
        progress.expect(0)  # a reduce says how many rows it will read
        self.conn = conn
        split = task.get("split") or {}
        is_map = task.get("kind") == "map"
        self.split_bytes = max(0, int(split.get("end", 0)) - int(split.get("start", 0))) if is_map else 0
        self.began = bytes_read() if self.split_bytes else None
        self.said = 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._report, name="pymr-progress", daemon=True)
        self._thread.start()

    def fraction(self) -> float | None:
        if not self.split_bytes:
            return progress.fraction()
        now = bytes_read()
        if now is None or self.began is None:
            return None
        return min(1.0, max(0, now - self.began) / self.split_bytes)

    def _report(self) -> None:
        while not self._stopped.wait(PROGRESS_INTERVAL_S):
            fraction = self.fraction()
            if fraction is None or round(fraction, 4) == self.said:
                continue
            self.said = round(fraction, 4)
            try:
                self.conn.send(("progress", self.said))
            except (OSError, ValueError):
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def bytes_read() -> int | None:
    """The bytes this process has read so far: from files (``rchar``), and from remote
    files through ``storage.open_input``; None where the kernel does not say."""
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1]) + storage.remote_bytes_read
    except (OSError, ValueError, IndexError):
        pass
    return None


def _forget_folder(folder: str) -> None:
    """Delete a job's folder (modules, side files) and take it off ``sys.path``."""
    from .code import forget_job

    if folder:
        forget_job(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _run_one(task: dict[str, Any], blob: bytes | None, jobs: dict, folders: dict[str, str],
             settings: dict[str, Any]) -> tuple[Any, ...]:
    from .code import load_job
    from .errors import describe_error
    from .fetch import FetchFailed
    from .tasks import run_task

    try:
        job_id = task["job_id"]
        # Side files and every temporary file of the task (staged uploads, sort scratch, the
        # user's own) go under the worker's data dir, which the worker cleans at the job's
        # end even if this process is killed.
        base = os.path.join(settings["data_dir"], os.path.basename(job_id)) if settings.get("data_dir") else None
        if base:
            os.makedirs(base, exist_ok=True)
        tempfile.tempdir = base
        if blob is not None:
            folders[job_id] = tempfile.mkdtemp(prefix="job-")
            try:
                jobs[job_id] = load_job(blob, folders[job_id])
            except BaseException as exc:  # the same for every task of the job: it fails at once
                jobs[job_id] = _code_load_error(exc)
        loaded = jobs.get(job_id)
        if loaded is None:  # (the worker sends a job's code once per executor, with its first task)
            loaded = {"type": "ClusterError", "message": f"job {job_id}: its code never reached this executor",
                      "traceback": "", "fatal": True}
        if isinstance(loaded, dict):
            return ("failed", loaded)
        job_class, options, paths = loaded
        return ("done", run_task(job_class, options, task, settings=settings, files=paths))
    except BaseException as exc:  # the user's exception, reported with its own traceback
        error = describe_error(exc)
        if isinstance(exc, FetchFailed):
            error["fetch_failed"] = exc.map_index
        if getattr(exc, "fatal", False):  # retrying cannot help (an input changed): the job fails now
            error["fatal"] = True
        return ("failed", error)


def size_arrow_pools(threads: int) -> None:
    """Arrow sizes its pools to the machine; an executor runs one task at a time, so 16
    executors with 16 threads each would only fight over the cores (and their caches)."""
    import pyarrow as pa

    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)


def _code_load_error(exc: BaseException) -> dict[str, Any]:
    """The error every task of a job whose code cannot load reports: ``fatal``, so the
    job fails at once instead of after ``max_attempts`` tries of each task."""
    from .errors import describe_error

    error = describe_error(exc)
    if isinstance(exc, ImportError):
        error["message"] += ("; the job's code could not be loaded on this worker: ship the module with "
                             "--py-files PATH (a .py file, a package folder or a .zip), or install it there")
    else:
        error["message"] = f"the job's code could not be loaded on this worker: {error['message']}"
    return dict(error, fatal=True)


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


if __name__ == "__main__":
    _main(Connection(int(sys.argv[1])), int(sys.argv[2]))
