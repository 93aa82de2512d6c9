"""Per-attempt logs: what user code prints (stdout and stderr, at the file-descriptor
level, so C extensions and child processes are caught too) and logs (``logging``)
while an attempt runs, captured to a capped file in the worker's data dir::

    DATA_DIR/<job_id>/logs/<attempt_id>.log

A file keeps the last ``LOG_CAP_BYTES`` (a first line says how much older output was
dropped); an attempt that printed nothing leaves no file, and one whose disk has no room
for a log runs uncaptured. When a job ends, the worker deletes the job's folder and keeps
its logs, moved to ``DATA_DIR/logs/<job_id>/`` (``remove_job_files``), for the last
``KEPT_JOBS`` jobs, so ``pymr logs`` can read a failed job's attempts after it ended; a
worker started without --data-dir removes everything when it exits. The worker's shuffle
server serves these files (and only these) to ``pymr logs`` and the status page
(``read_for_client``), behind the same CURVE key as map outputs.

With ``PYMR_ECHO_TASK_OUTPUT=1`` (``pymr -v``), captured lines are also written to the
executor's own stderr as they come, each prefixed with its task id.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from typing import Any

LOG_CAP_BYTES = 1024 * 1024
TAIL_LINES = 20
KEPT_JOBS = 200
KEPT_DIR = "logs"  # DATA_DIR/logs/<job_id>/: the logs of ended jobs
ECHO_ENV = "PYMR_ECHO_TASK_OUTPUT"
_CHUNK = 65536


def log_path(data_dir: str, job_id: str, attempt_id: str) -> str:
    return os.path.join(data_dir, os.path.basename(job_id), "logs", os.path.basename(attempt_id) + ".log")


def run_captured(run_one: Callable[..., tuple[Any, ...]], task: dict[str, Any], *args: Any) -> tuple[Any, ...]:
    """``run_one(task, *args)`` with its output captured; a failure's error gets the
    last ``TAIL_LINES`` lines of it as ``log_tail``."""
    settings = args[-1]
    if not settings.get("data_dir"):
        return run_one(task, *args)
    path = log_path(settings["data_dir"], str(task["job_id"]), str(task["attempt_id"]))
    prefix = f"[{task_label(str(task['attempt_id']))}] " if os.environ.get(ECHO_ENV) == "1" else None
    capture = Capture(path, prefix)
    try:
        capture.__enter__()
    except OSError:  # no room for a log (a full or read-only disk): the task runs, uncaptured
        return run_one(task, *args)
    try:
        reply = run_one(task, *args)
    finally:
        capture.__exit__(None, None, None)
    if reply[0] == "failed" and isinstance(reply[1], dict):
        tail = log_tail(path)
        if tail:
            reply[1]["log_tail"] = tail
    return reply


def task_label(attempt_id: str) -> str:
    """``m00003`` from ``job_..._abc123-m00003-1``."""
    parts = attempt_id.rsplit("-", 2)
    return parts[1] if len(parts) == 3 else attempt_id


class Capture:
    """Redirects fds 1 and 2 (and a root ``logging`` handler) into a capped file."""

    def __init__(self, path: str, echo_prefix: str | None = None):
        self.path = path
        self.echo_prefix = echo_prefix

    def __enter__(self) -> Capture:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        _flush_std()
        self.file = CappedFile(self.path)
        self.saved = (os.dup(1), os.dup(2))
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.reader = threading.Thread(target=self._copy, args=(read_fd,), name="pymr-attempt-log", daemon=True)
        self.reader.start()
        root = logging.getLogger()
        self.handler = None
        if not root.handlers:  # the user's own logging setup, if any, is kept as it is
            self.handler = logging.StreamHandler(sys.stderr)
            self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            root.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
        _flush_std()
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)  # the pipe's last writers close here (unless a child of the task holds it)
            os.close(saved)
        self.reader.join(timeout=5)
        self.file.close()

    def _copy(self, read_fd: int) -> None:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(_CHUNK)
                if not chunk:
                    break
                self.file.write(chunk)
                if self.echo_prefix is not None:
                    pending = self._echo(pending + chunk)
        if pending and self.echo_prefix is not None:
            self._echo(pending + b"\n")

    def _echo(self, data: bytes) -> bytes:
        *lines, rest = data.split(b"\n")
        if lines:
            prefix = self.echo_prefix.encode()  # type: ignore[union-attr]
            try:
                os.write(self.saved[1], b"".join(prefix + line + b"\n" for line in lines))
            except OSError:
                pass
        return rest[-_CHUNK:]


class CappedFile:
    """An append-only file that keeps its last ``cap`` bytes (on disk, at most twice that)."""

    def __init__(self, path: str, cap: int = LOG_CAP_BYTES):
        self.path, self.cap = path, cap
        self.file = open(path, "wb")
        self.size = 0
        self.dropped = 0
        self.marker_bytes = 0  # the first line, once output was dropped

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)
        if self.size > 2 * self.cap:
            self._keep_last()

    def close(self) -> None:
        if self.size > self.cap:
            self._keep_last()
        self.file.close()
        if self.size == 0 and not self.dropped:
            os.unlink(self.path)

    def _keep_last(self) -> None:
        self.file.flush()
        with open(self.path, "rb") as f:
            f.seek(-self.cap, os.SEEK_END)
            kept = f.read()
        if self.dropped and kept.startswith(b"[pymr:"):
            kept = kept.split(b"\n", 1)[-1]
        cut = kept.find(b"\n")
        kept = kept[cut + 1:] if 0 <= cut < len(kept) - 1 else kept  # start at a whole line
        self.dropped += self.size - self.marker_bytes - len(kept)
        marker = f"[pymr: {self.dropped:,} bytes of earlier output dropped; the last {len(kept):,} kept]\n".encode()
        self.file.close()
        with open(self.path + ".tmp", "wb") as f:
            f.write(marker + kept)
        os.replace(self.path + ".tmp", self.path)
        self.file = open(self.path, "ab")
        self.size = len(marker) + len(kept)
        self.marker_bytes = len(marker)


def log_tail(path: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log, or "" if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


# -- on the worker --------------------------------------------------------------------------
def kept_log_path(data_dir: str, job_id: str, attempt_id: str) -> str:
    """Where an attempt's log is once its job ended: DATA_DIR/logs/<job_id>/<attempt_id>.log."""
    return os.path.join(data_dir, KEPT_DIR, os.path.basename(job_id), os.path.basename(attempt_id) + ".log")


def remove_job_files(job_dir: str, kept_jobs: int = KEPT_JOBS) -> None:
    """A job ended: move its logs to DATA_DIR/logs/<job_id>/, delete its folder, and drop
    the logs of all but the ``kept_jobs`` most recent jobs."""
    data_dir, job = os.path.split(job_dir)
    logs = os.path.join(job_dir, "logs")
    if os.path.isdir(logs) and os.listdir(logs):
        kept = os.path.join(data_dir, KEPT_DIR, job)
        os.makedirs(kept, exist_ok=True)
        for name in os.listdir(logs):
            os.replace(os.path.join(logs, name), os.path.join(kept, name))
    shutil.rmtree(job_dir, ignore_errors=True)
    _prune(os.path.join(data_dir, KEPT_DIR), kept_jobs)


def _prune(folder: str, kept_jobs: int) -> None:
    try:
        jobs = [(os.stat(os.path.join(folder, name)).st_mtime, name) for name in os.listdir(folder)]
    except OSError:
        return
    for _, name in sorted(jobs)[:max(0, len(jobs) - kept_jobs)]:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def read_for_client(data_dir: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """An attempt's log for ``pymr logs``: only files under DATA_DIR/<job>/logs."""
    job_id, attempt_id = str(body["job_id"]), str(body["attempt_id"])
    root = os.path.realpath(data_dir) + os.sep
    for path in (log_path(data_dir, job_id, attempt_id), kept_log_path(data_dir, job_id, attempt_id)):
        real = os.path.realpath(path)
        if not real.startswith(root) or not real.endswith(".log") or "logs" not in real[len(root):].split(os.sep):
            raise PermissionError("not an attempt log of this worker")
        try:
            with open(real, "rb") as f:
                data = f.read(2 * LOG_CAP_BYTES + 4096)
        except FileNotFoundError:
            continue
        return {"found": True, "bytes": len(data)}, data
    return {"found": False}, b""


def read_remote(address: str, key: Any, job_id: str, attempt_id: str, timeout_s: float) -> bytes | None:
    """An attempt's log from the worker serving it at ``address`` (None: it printed
    nothing, or the log is gone); raises OSError if the worker does not answer."""
    import zmq

    from . import protocol as proto
    from .security import Security

    context = zmq.Context()
    try:
        sock = Security(context, key).client(proto.configure(context.socket(zmq.DEALER)))
        sock.connect(address)
        sock.send_multipart(proto.pack(proto.READ_LOG, {"job_id": job_id, "attempt_id": attempt_id}))
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"the worker at {address} did not answer within {timeout_s:g} s")
        msg = proto.unpack(sock.recv_multipart())
    finally:
        context.destroy(linger=0)
    if msg.kind == proto.FETCH_ERROR:
        raise OSError(f"the worker at {address}: {msg.body.get('error')}")
    return (msg.blobs[0] if msg.blobs else b"") if msg.body.get("found") else None
