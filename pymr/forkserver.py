"""Local mode's fork server: one warm process that forks every worker of a ``LocalCluster``.

A worker and its executors each used to be a fresh interpreter that imported pyarrow,
ZeroMQ and pymr on its own: 16 workers cost 32 interpreter start-ups, several seconds
of CPU before any task ran. The fork server imports all of that once, then forks each
worker from that state; the worker forks its first executors the same way, before it
creates its ZeroMQ context (``Worker(fork_executors=True)``).

It is started fresh (``python -m pymr.forkserver FD ROOT``, never forked from the
user's process), creates no ZeroMQ context, starts no Arrow thread pool and runs no
user code, so nothing a child must not share is inherited. It talks to its
``LocalCluster`` over a socket pair: ``("start", worker_id, options)`` in,
``("exited", worker_id, status)`` out when a worker process ends. When that pipe
closes (the cluster stops, or its process dies), it stops its workers (SIGTERM, then
SIGKILL after ``STOP_GRACE_S``) and exits. ROOT is only in its command line so that
its processes can be told apart.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

STOP_GRACE_S = 5.0


class ForkServer:
    """A running fork server, the pipe to it, and the folder of the local run it serves."""

    def __init__(self, root: str | None = None):
        self.root = root or tempfile.mkdtemp(prefix="pymr-local-")
        parent, child = socket.socketpair()
        command = [sys.executable, "-m", "pymr.forkserver", str(child.fileno()), self.root]
        self.process = subprocess.Popen(command, pass_fds=[child.fileno()], start_new_session=True,
                                        stdin=subprocess.DEVNULL)
        child.close()
        self.conn = Connection(parent.detach())

    def start_worker(self, worker_id: str, options: dict[str, Any]) -> None:
        self.conn.send(("start", worker_id, options))

    def close(self) -> None:
        """Stop every worker and the server (the folder is the caller's to delete). The
        end of the pipe tells the server to stop; the end of its side says it has exited,
        at once (``Popen.wait`` with a timeout polls, up to 50 ms apart)."""
        deadline = time.monotonic() + STOP_GRACE_S + 5
        try:
            with socket.socket(fileno=os.dup(self.conn.fileno())) as end:
                end.shutdown(socket.SHUT_WR)
            while self.conn.poll(max(0.0, deadline - time.monotonic())):
                self.conn.recv_bytes()  # a worker's end, reported before the server saw ours
        except (EOFError, OSError):  # the server's side closed: it exited
            pass
        self.conn.close()
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_early: ForkServer | None = None


def start_early() -> None:
    """Start the server for the ``LocalCluster`` this process is about to make, so that
    its imports overlap the caller's (``pymr submit`` calls this before its own)."""
    global _early
    if _early is None:
        _early = ForkServer()
        atexit.register(_close_unused)


def start_for_command(args: list[str]) -> None:
    """``start_early`` when ``args`` (the ``pymr`` command's) ask for a job in local
    mode, before the command imports click, pyarrow or the job: the server's imports are
    the longest part of a small job's start. A wrong guess costs a process that is
    killed at exit; ``pymr submit`` itself starts the server if this did not."""
    remote = os.environ.get("PYMR_COORDINATOR") or any(
        arg in ("--inline", "-h", "--help") or arg.split("=", 1)[0] == "--coordinator" for arg in args)
    if args[:1] == ["submit"] and not remote:
        start_early()


def take() -> ForkServer:
    """The server started early, or a new one."""
    global _early
    server, _early = _early or ForkServer(), None
    return server


def _close_unused() -> None:
    if _early is not None:  # the command failed before it made its LocalCluster: no worker to stop
        _early.process.kill()
        _early.process.wait()
        _early.conn.close()
        shutil.rmtree(_early.root, ignore_errors=True)


def serve(conn: Connection) -> None:
    """Fork workers on request and report their ends, until the pipe closes."""
    from . import tasks, worker  # noqa: F401  (imported once here, shared by every fork)

    wake_read, wake_write = socket.socketpair()  # SIGCHLD wakes the wait below at once
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, str] = {}
    try:
        while True:
            ready = wait([conn, wake_read], timeout=1.0)
            if wake_read in ready:
                wake_read.recv(4096)
            if conn in ready:
                try:
                    kind, worker_id, options = conn.recv()
                except (EOFError, OSError):
                    return
                if kind == "start":
                    children[_fork_worker(worker_id, options, [conn, wake_read, wake_write])] = worker_id
            for pid, status in _reap(children):
                try:
                    conn.send(("exited", children.pop(pid), status))
                except OSError:
                    return
    finally:
        signal.set_wakeup_fd(-1)
        _stop(children)


def fork_child(run: Callable[[], int]) -> int:
    """Fork: the parent gets the child's pid; the child runs ``run`` and exits with what
    it returns (1, its traceback printed, if it raises), never going back to the caller."""
    with warnings.catch_warnings():
        # Python 3.12+ warns of fork() in a process with threads. The only threads here are
        # the libraries' own (jemalloc's, OpenBLAS's), which reset themselves at a fork.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = run()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork_worker(worker_id: str, options: dict[str, Any], close_in_child: list[Any]) -> int:
    def run() -> int:
        os.setsid()  # each worker in a session of its own, as a worker started by exec would be
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for handle in close_in_child:
            handle.close()
        return _run_worker(worker_id, options)

    return fork_child(run)


def _run_worker(worker_id: str, options: dict[str, Any]) -> int:
    from .security import read_key_file
    from .worker import Worker

    logging.basicConfig(level=options.get("log_level", logging.WARNING),
                        format="pymr %(name)s: %(levelname)s: %(message)s")
    service = Worker(options["coordinator"], worker_id, options["slots"], options["data_dir"],
                     exit_with_parent=True, key=read_key_file(options["key_file"]), host="127.0.0.1",
                     fork_executors=True, arrow_threads=options.get("arrow_threads"))
    try:
        return service.run()
    except KeyboardInterrupt:
        return 0


def _reap(children: dict[int, str]) -> list[tuple[int, int]]:
    """Workers that ended since the last call, with their exit codes (negative: a signal)."""
    ended = []
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _stop(children: dict[int, str]) -> None:
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while children and time.monotonic() < deadline:
        for pid, _ in _reap(children):
            children.pop(pid)
        time.sleep(0.002)
    for pid in children:
        _signal(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the cluster's process handles Ctrl-C and closes the pipe
    serve(Connection(int(sys.argv[1])))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # nothing to clean up: skip tearing down pyarrow and the rest
