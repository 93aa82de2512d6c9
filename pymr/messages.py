"""What each message kind may carry: every field checked (type, range, size) before use.

Any peer that passes the CURVE gate (and, without a cluster key, any local process) can
send any bytes. ``validate`` turns a decoded ``protocol.Message`` into one whose body
has exactly the shape its handler expects, or raises ``ProtocolError`` naming the field
and what is wrong with it; the receiver logs that and drops the message. Fields a kind
does not declare are dropped, so a handler never sees a value nobody checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import protocol as proto
from .errors import ProtocolError

Check = Callable[[Any], Any]

ID = 256  # attempt ids, job ids, worker ids
TEXT = 64 * 1024  # error messages
TRACEBACK = 1024 * 1024
PATH = 4096
MAX_LIST = 1_000_000
MAX_SLOTS = 4096  # tasks one worker runs at once


class Invalid(ValueError):
    """A field is not what its kind declares."""


def integer(low: int = 0, high: int = 2**62) -> Check:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise Invalid(f"must be an integer from {low} to {high}")
        return value
    return check


def number(low: float = 0.0, high: float = 1e12) -> Check:
    def check(value: Any) -> float:
        if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
            raise Invalid(f"must be a number from {low:g} to {high:g}")
        return float(value)
    return check


def text(limit: int = ID) -> Check:
    def check(value: Any) -> str:
        if type(value) is not str or len(value) > limit:
            raise Invalid(f"must be a string of at most {limit} characters")
        return value
    return check


def flag(value: Any) -> bool:
    if type(value) is not bool:
        raise Invalid("must be true or false")
    return value


def optional(check: Check) -> Check:
    def optional_check(value: Any) -> Any:
        return None if value is None else check(value)
    return optional_check


def listing(item: Check, limit: int) -> Check:
    def check(value: Any) -> list[Any]:
        if type(value) is not list or len(value) > limit:
            raise Invalid(f"must be a list of at most {limit} items")
        return [_item(item, v, f"[{i}]") for i, v in enumerate(value)]
    return check


def mapping(key: Check, value: Check, limit: int) -> Check:
    def check(given: Any) -> dict[Any, Any]:
        if type(given) is not dict or len(given) > limit:
            raise Invalid(f"must be an object of at most {limit} entries")
        return {key(k): _item(value, v, f"[{k!r}]") for k, v in given.items()}
    return check


def record(required: dict[str, Check] | None = None, optional_fields: dict[str, Check] | None = None,
           extra: Check | None = None) -> Check:
    """An object with these fields; ``extra`` checks any other field (else it is dropped)."""
    required = required or {}
    optional_fields = optional_fields or {}

    def check(given: Any) -> dict[str, Any]:
        if type(given) is not dict:
            raise Invalid("must be an object")
        out: dict[str, Any] = {}
        for name, field_check in required.items():
            if name not in given:
                raise Invalid(f"lacks field {name!r}")
            out[name] = _item(field_check, given[name], f".{name}")
        for name, value in given.items():
            if name in required:
                continue
            field_check = optional_fields.get(name, extra)
            if field_check is not None:
                out[name] = _item(field_check, value, f".{name}")
        return out
    return check


def scalar(value: Any) -> Any:
    """A short JSON scalar (string, number, boolean or null)."""
    if value is None or type(value) in (bool, int):
        return value
    if type(value) is float:
        return number(-1e300, 1e300)(value)
    return text(TRACEBACK)(value)


def choice(*allowed: str) -> Check:
    def check(value: Any) -> str:
        if value not in allowed:
            raise Invalid(f"must be one of {', '.join(allowed)}")
        return value
    return check


def _item(check: Check, value: Any, where: str) -> Any:
    """``check(value)``, with an error that says where in the body the value was."""
    try:
        return check(value)
    except Invalid as exc:
        nested = str(exc).startswith((".", "["))
        raise Invalid(f"{where}{exc}" if nested else f"{where} {exc}") from None


# -- the kinds ----------------------------------------------------------------------------------
VERSIONS = mapping(text(64), text(64), 16)
MAX_IDS = 100_000
IDS = listing(text(ID), MAX_IDS)
LOCATION = record({"path": text(PATH)}, {"host": optional(text(255)), "address": optional(text(300))})
COUNTERS = mapping(text(ID), mapping(text(ID), integer(-2**62), 10_000), 1000)
RESULT = record(optional_fields={
    "map_output": LOCATION,
    "files": listing(text(PATH), 100_000),
    "counters": COUNTERS,
    "max_rss_kb": integer(),
})
ERROR = record({"type": text(ID)}, {
    "message": text(TEXT),
    "traceback": text(TRACEBACK),
    "fetch_failed": integer(0, MAX_LIST),
    "fatal": flag,
}, extra=scalar)
SPEC = record({
    "inputs": listing(text(PATH), MAX_LIST),
    "output": text(PATH),
}, {
    "name": text(ID),
    "reducers": integer(1, 1_000_000),
    "has_reducer": flag,
    "map_batch": flag,
    "split_size": optional(integer(1)),
    "output_format": text(32),
    "overwrite": flag,
    "skip_bad_records": flag,
    "input_format": optional(text(ID)),
    "buffer_bytes": optional(integer(1)),
    "max_attempts": optional(integer(1, 100)),
    "exclude_after": optional(integer(1, 1000)),
    "speculative": flag,
    "step": optional(integer(0, 100_000)),
    "filesystems": optional(mapping(text(PATH), text(PATH), 100)),
    "partition_cuts": optional(listing(text(PATH), 1_000_000)),
}, extra=lambda value: value)  # forwarded untouched: only the tasks read the rest
JOB_ATTEMPT = {"job_id": text(ID), "attempt_id": text(ID)}

TO_COORDINATOR: dict[str, Check] = {
    proto.REGISTER: record({"slots": integer(1, MAX_SLOTS)}, {
        "versions": VERSIONS, "pid": integer(), "host": text(255), "shuffle_address": text(300),
        "incarnation": text(64), "running": IDS, "seq": integer(), "jobs": IDS, "jobs_loaded": IDS,
        "map_outputs": IDS,
    }),
    proto.HEARTBEAT: record(optional_fields={"running": IDS, "seq": integer(),
                                             "progress": mapping(text(ID), number(0.0, 1.0), MAX_SLOTS)}),
    proto.TASK_DONE: record({**JOB_ATTEMPT, "result": RESULT}),
    proto.TASK_FAILED: record({**JOB_ATTEMPT, "error": ERROR}),
    proto.ATTEMPT_STOPPED: record(JOB_ATTEMPT),
    proto.BYE: record(),
    proto.SUBMIT: record({"spec": SPEC}, {"request_id": text(64), "versions": VERSIONS}),
    proto.CANCEL_JOB: record({"job_id": text(ID)}, {"reason": text(TEXT)}),
    proto.WATCH: record({"job_id": text(ID)}),
    proto.WORKER_LOST: record({"worker_id": text(ID)}, {"reason": text(TEXT)}),
    proto.LIST_JOBS: record(optional_fields={"all": flag}),
    proto.JOB_STATUS: record({"job_id": text(ID)}, {"brief": flag}),
    proto.LIST_WORKERS: record(),
    proto.FIND_LOGS: record({"job_id": text(ID)}, {"task_id": optional(text(ID)),
                                                   "attempt": optional(integer(0, 100_000))}),
}

SPLIT = record({"path": text(PATH), "start": integer(), "end": integer()}, extra=lambda value: value)
TO_WORKER: dict[str, Check] = {
    proto.WELCOME: record(optional_fields={"heartbeat_s": number(0.01, 3600), "forget": IDS, "kill": IDS}),
    proto.REFUSED: record(optional_fields={"error": text(TEXT), "reregister": flag}),
    proto.HEARTBEAT: record(),
    proto.ASSIGN: record({
        "kind": choice("map", "reduce"),
        "job_id": text(ID), "attempt_id": text(ID), "seq": integer(),
    }, {"blobs": listing(text(32), 2)}, extra=lambda value: value),  # the rest is the task, for the engine
    proto.CANCEL: record(JOB_ATTEMPT),
    proto.JOB_ENDED: record({"job_id": text(ID)}),
    proto.SHUTDOWN: record(),
}


def validate(msg: proto.Message, schemas: dict[str, Check]) -> proto.Message:
    """``msg`` with a checked body, or ProtocolError saying which field is wrong and why."""
    check = schemas.get(msg.kind)
    if check is None:
        raise ProtocolError(f"unexpected message kind {msg.kind!r}")
    try:
        body = check(msg.body)
    except Invalid as exc:
        raise ProtocolError(f"{msg.kind}: {str(exc).lstrip('.')}") from None
    except RecursionError:
        raise ProtocolError(f"{msg.kind}: nested too deeply") from None
    return proto.Message(msg.kind, body, msg.blobs)
