"""Steering a running cluster from another terminal: list jobs and workers, follow,
cancel, read an attempt's captured output (``pymr jobs/status/cancel/workers/logs``).

Everything goes over the coordinator's CURVE socket, as submitting does; attempt logs
are read from the worker that holds them, through its shuffle server (same key). An
unknown job or task is a ``LookupFailed`` (exit 2); a coordinator or worker that does
not answer is a ``ClusterError`` (exit 3).
"""

from __future__ import annotations

import time
from typing import Any

from . import attempt_log
from . import protocol as proto
from .errors import ClusterError, PymrError
from .runners import Client
from .security import ClusterKey

ANSWER_TIMEOUT_S = 5.0
CANCEL_WAIT_S = 20.0  # the coordinator waits up to 10 s for attempts to confirm they stopped


class LookupFailed(PymrError):
    """No such job, task or attempt on this cluster."""

    exit_code = 2


class Control:
    """Questions to one coordinator, each answered or timed out."""

    def __init__(self, address: str, key: ClusterKey | None, timeout_s: float = ANSWER_TIMEOUT_S):
        self.client = Client(address, key)
        self.address = address
        self.key = key
        self.timeout_s = timeout_s

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.close()

    def ask(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.client.send(kind, body or {})
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            msg = self.client.receive(deadline - time.monotonic())
            if msg is not None and msg.kind == proto.ANSWER:
                if "error" in msg.body:
                    raise (LookupFailed if msg.body.get("exit_code") == 2 else PymrError)(msg.body["error"])
                return msg.body
        raise ClusterError(f"no answer from the coordinator at {self.address} within {self.timeout_s:g} s "
                           "(is it running, and do both use the same --secret-file?)")

    def jobs(self, everything: bool = False) -> list[dict[str, Any]]:
        return self.ask(proto.LIST_JOBS, {"all": everything})["jobs"]

    def job(self, job_id: str, brief: bool = False) -> dict[str, Any]:
        """The job's detail (with ``brief``, while it runs: only its summary, cheap to build)."""
        try:
            return self.ask(proto.JOB_STATUS, {"job_id": job_id, "brief": brief})["job"]
        except LookupFailed:
            raise LookupFailed(f"unknown job {job_id} (pymr jobs --all lists them)") from None

    def workers(self) -> list[dict[str, Any]]:
        return self.ask(proto.LIST_WORKERS)["workers"]

    def cancel(self, job_id: str, wait_s: float = CANCEL_WAIT_S) -> dict[str, Any]:
        """Cancel a running job and wait until it has ended (output removed)."""
        job = self.job(job_id)
        if job["state"] != "running":
            return job
        self.client.send(proto.CANCEL_JOB, {"job_id": job_id, "reason": "cancelled with pymr cancel"})
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            job = self.job(job_id, brief=True)
            if job.get("ended"):  # its output is removed, not just its attempts stopped
                return job
            time.sleep(0.3)
        raise ClusterError(f"job {job_id} did not end within {wait_s:g} s of being cancelled")

    def logs(self, job_id: str, task_id: str | None = None, attempt: int | None = None) -> list[dict[str, Any]]:
        """The captured output of the asked attempts: each place (task, attempt, worker)
        with its ``text``, or ``problem`` saying why it cannot be read."""
        self.job(job_id)  # unknown job: exit 2 with the usual words
        body = {"job_id": job_id, "task_id": task_id, "attempt": attempt}
        places = self.ask(proto.FIND_LOGS, body)["attempts"]
        for place in places:
            place.update(self._read_log(job_id, place))
        return places

    def _read_log(self, job_id: str, place: dict[str, Any]) -> dict[str, Any]:
        if not place.get("address"):
            return {"problem": f"worker {place['worker_id']} is gone; its logs went with it"}
        try:
            data = attempt_log.read_remote(place["address"], self.key, job_id, place["attempt_id"], self.timeout_s)
        except TimeoutError as exc:
            raise ClusterError(f"worker {place['worker_id']}: {exc}") from None
        except OSError as exc:
            return {"problem": f"worker {place['worker_id']}: {exc}"}
        return {"text": (data or b"").decode("utf-8", "replace")}
