"""The wire protocol between coordinator, workers and clients: message kinds and framing.

Every message is a list of ZeroMQ frames::

    [VERSION, kind, json_body, blob...]

(the coordinator's ROUTER adds the peer identity in front). ``json_body`` is a UTF-8
JSON object; blobs are opaque bytes (cloudpickled job code, Arrow batches) that only a
worker unpickles, never the coordinator or a client. Control messages are small; bulk
data never travels through the coordinator.

A part (the JSON body or a blob) longer than ``FRAME_BYTES`` travels as several frames:
every frame but its last holds exactly ``FRAME_BYTES``, the last fewer (maybe none).
ZeroMQ reads a whole frame before CURVE can tell who sent it, so the frame size is what
a peer that never authenticates can make a process hold; a whole message is limited to
``MAX_MESSAGE_BYTES``.

Worker -> coordinator: REGISTER, HEARTBEAT, TASK_DONE, TASK_FAILED, ATTEMPT_STOPPED, BYE.
Coordinator -> worker: WELCOME, REFUSED, ASSIGN, CANCEL, JOB_ENDED, SHUTDOWN, HEARTBEAT.
Client -> coordinator: SUBMIT, WATCH, CANCEL_JOB, WORKER_LOST, STOP; LIST_JOBS, JOB_STATUS, LIST_WORKERS, FIND_LOGS.
Coordinator -> client: ACCEPTED, REJECTED, PROGRESS, FINISHED; ANSWER (to the four queries).
Reducer -> a worker's shuffle server: FETCH_INDEX, FETCH_BATCH; back: INDEX, BATCH, FETCH_ERROR.
Client -> a worker's shuffle server: READ_LOG; back: LOG or FETCH_ERROR.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

import zmq

from .errors import ProtocolError

VERSION = b"PYMR/1"

REGISTER = "register"
HEARTBEAT = "heartbeat"
TASK_DONE = "task_done"
TASK_FAILED = "task_failed"
ATTEMPT_STOPPED = "attempt_stopped"  # a cancelled attempt is no longer running
BYE = "bye"
WELCOME = "welcome"
REFUSED = "refused"
ASSIGN = "assign"
CANCEL = "cancel"
JOB_ENDED = "job_ended"
SHUTDOWN = "shutdown"
SUBMIT = "submit"
CANCEL_JOB = "cancel_job"
WORKER_LOST = "worker_lost"
STOP = "stop"
ACCEPTED = "accepted"
REJECTED = "rejected"
PROGRESS = "progress"
FINISHED = "finished"
FETCH_INDEX = "fetch_index"
FETCH_BATCH = "fetch_batch"
INDEX = "index"
BATCH = "batch"
FETCH_ERROR = "fetch_error"
WATCH = "watch"  # a client follows a job by its id (after the coordinator restarted, or from elsewhere)
LIST_JOBS = "list_jobs"  # client -> coordinator queries (pymr jobs/status/workers/logs), answered by ANSWER
JOB_STATUS = "job_status"
LIST_WORKERS = "list_workers"
FIND_LOGS = "find_logs"
ANSWER = "answer"
READ_LOG = "read_log"  # client -> a worker's shuffle server: an attempt's captured output; back: LOG
LOG = "log"

KINDS = frozenset(
    {REGISTER, HEARTBEAT, TASK_DONE, TASK_FAILED, ATTEMPT_STOPPED, BYE, WELCOME, REFUSED, ASSIGN, CANCEL,
     JOB_ENDED, SHUTDOWN, SUBMIT, CANCEL_JOB, WORKER_LOST, STOP, ACCEPTED, REJECTED, PROGRESS, FINISHED,
     FETCH_INDEX, FETCH_BATCH, INDEX, BATCH, FETCH_ERROR, WATCH,
     LIST_JOBS, JOB_STATUS, LIST_WORKERS, FIND_LOGS, ANSWER, READ_LOG, LOG}
)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # job code can be large; control messages are tiny
FRAME_BYTES = 256 * 1024  # what a stranger can make a process hold per connection (see configure)
MAX_FRAMES = MAX_MESSAGE_BYTES // FRAME_BYTES + 64
CURVE_OVERHEAD_BYTES = 1024  # a CURVE frame is its plain text plus a 33-byte header and tag
HANDSHAKE_S = 10.0  # a connection that has not authenticated by then is dropped
MAX_NEW_CONNECTIONS = 1024  # connections a coordinator lets be in their handshake at once (security._NewConnectionLimit)
MISSING_BLOB = "MissingBlob"  # a worker's error type: an ASSIGN came without the code or map output table
# sent before it (lost with a connection); the coordinator sends them again, not counting a failure
HEARTBEAT_INTERVAL_S = 1.0
WORKER_TIMEOUT_S = 10.0
SEND_HWM = 10_000
LINGER_MS = 0


@dataclass
class Message:
    kind: str
    body: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)


def pack(kind: str, body: dict[str, Any] | None = None, *blobs: bytes) -> list[bytes]:
    parts = [json.dumps(body or {}, separators=(",", ":")).encode(), *blobs]
    return [VERSION, kind.encode(), *(frame for part in parts for frame in _frames(part))]


_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)


def send_frames(sock: zmq.Socket, frames: list[bytes]) -> None:
    """``sock.send_multipart(frames, zmq.NOBLOCK)`` without pyzmq's Python work per frame
    (type checks, flag enums): 1.9 µs instead of 5.2 for a heartbeat's reply, which the
    coordinator sends 2,000 times a second on a big cluster. Raises ``zmq.ZMQError`` as send_multipart does, at the first frame."""
    send = sock.send
    for frame in frames[:-1]:
        send(frame, _MORE_NOBLOCK)
    send(frames[-1], _NOBLOCK)


def _frames(part: bytes) -> list[bytes]:
    if len(part) < FRAME_BYTES:
        return [part]
    view = memoryview(part)
    return [view[start:start + FRAME_BYTES] for start in range(0, len(part) + 1, FRAME_BYTES)]


def unpack(frames: list[bytes]) -> Message:
    """Decode frames into a Message, or raise ProtocolError saying what is wrong."""
    if not 3 <= len(frames) <= MAX_FRAMES:
        raise ProtocolError(f"message has {len(frames)} frames, expected 3 to {MAX_FRAMES}")
    size = sum(len(frame) for frame in frames)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {size} bytes is over the limit of {MAX_MESSAGE_BYTES} bytes")
    if frames[0] != VERSION:
        raise ProtocolError(f"unknown protocol version {frames[0][:16]!r} (this is {VERSION.decode()})")
    parts = _parts(frames[2:])
    try:
        kind = frames[1].decode()
        body = json.loads(parts[0])
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable message: {exc}") from None
    if kind not in KINDS or not isinstance(body, dict):
        raise ProtocolError(f"unknown message kind {kind[:32]!r}")
    return Message(kind, body, parts[1:])


def _parts(frames: list[bytes]) -> list[bytes]:
    """Join the frames ``pack`` cut each part into."""
    parts: list[bytes] = []
    pending: list[bytes] = []
    for frame in frames:
        if len(frame) > FRAME_BYTES:
            raise ProtocolError(f"a frame of {len(frame)} bytes is over the limit of {FRAME_BYTES} bytes")
        pending.append(frame)
        if len(frame) < FRAME_BYTES:
            parts.append(pending[0] if len(pending) == 1 else b"".join(pending))
            pending = []
    if pending:
        raise ProtocolError("message ends inside a part")
    return parts


def configure(sock: zmq.Socket) -> zmq.Socket:
    """Settings every pymr socket gets, so that no process can hang on exit or a peer, and
    no peer can make it hold more than a frame before it has authenticated."""
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM)
    sock.setsockopt(zmq.RCVHWM, SEND_HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, FRAME_BYTES + CURVE_OVERHEAD_BYTES)  # ZeroMQ's limit is per frame
    sock.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_S * 1000))
    return sock


def versions() -> dict[str, str]:
    """What must match between peers: cloudpickle only promises compatibility within one Python."""
    import cloudpickle

    from . import __version__

    return {
        "pymr": __version__,
        "python": ".".join(map(str, sys.version_info[:2])),
        "cloudpickle": cloudpickle.__version__,
        "implementation": platform.python_implementation(),
    }


def version_mismatch(theirs: dict[str, Any]) -> str | None:
    """A sentence naming what differs between ``theirs`` and ours, or None."""
    ours = versions()
    diffs = [f"{name} {theirs.get(name)!s} (here {ours[name]})" for name in ours if theirs.get(name) != ours[name]]
    return "incompatible versions: " + ", ".join(diffs) if diffs else None
