"""The coordinator against a scripted worker: a real Coordinator and Client on real
ZeroMQ sockets, and a DEALER that speaks the worker protocol step by step, so the
order of events (a failure, a cancel, its confirmation) is the test's to choose."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

from pymr import protocol as proto
from pymr.code import dump_job
from pymr.coordinator import Coordinator
from pymr.errors import JobFailed
from pymr.job import load_job_class
from pymr.runners import Client, job_spec

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def running_coordinator(**settings):
    coordinator = Coordinator(**settings)
    thread = threading.Thread(target=coordinator.serve, daemon=True)
    thread.start()
    try:
        yield coordinator
    finally:
        coordinator.stop()
        thread.join(10)


class ScriptedWorker:
    """A worker whose every message is sent by the test."""

    def __init__(self, address: str, slots: int, incarnation: str = "first", running: list[str] = (),
                 seq: int = 0):
        self.context = zmq.Context()
        self.socket = proto.configure(self.context.socket(zmq.DEALER))
        self.socket.setsockopt(zmq.IDENTITY, b"scripted")
        self.socket.connect(address)
        self.send(proto.REGISTER, {"slots": slots, "versions": proto.versions(), "incarnation": incarnation,
                                   "running": list(running), "seq": seq})
        self.welcome = self.receive()
        assert self.welcome.kind == proto.WELCOME

    def send(self, kind: str, body: dict | None = None) -> None:
        self.socket.send_multipart(proto.pack(kind, body))

    def receive(self, kind: str | None = None, timeout_s: float = 10.0) -> proto.Message:
        """The next message (of ``kind``, skipping heartbeats and others)."""
        deadline = time.monotonic() + timeout_s
        while self.socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            msg = proto.unpack(self.socket.recv_multipart())
            if kind is None or msg.kind == kind:
                return msg
        raise AssertionError(f"no {kind or 'message'} within {timeout_s} s")

    def close(self) -> None:
        self.context.destroy(linger=0)


class SubmittedJob:
    """A two-map job (max one attempt) submitted from a thread; ``outcome`` once it finished."""

    def __init__(self, coordinator: Coordinator, tmp_path: Path):
        inputs = []
        for name in ("a.txt", "b.txt"):
            (tmp_path / name).write_text("x y\n")
            inputs.append(str(tmp_path / name))
        self.output = tmp_path / "out"
        job_class = load_job_class(ROOT / "jobs" / "wordcount.py")
        self.spec = job_spec(job_class, inputs, str(self.output), max_attempts=1)
        self.code = dump_job(job_class, {})
        self.outcome: BaseException | dict | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(coordinator.address,), daemon=True)
        self.thread.start()

    def _run(self, address: str) -> None:
        try:
            with Client(address) as client:
                self.outcome = client.run(self.spec, self.code)
        except BaseException as exc:  # handed to the test
            self.outcome = exc
        self.finished.set()


@contextmanager
def a_map_failed(tmp_path, **settings):
    """A two-map job (one attempt each) whose first map failed: yields the scripted
    worker, the job, and the CANCEL the coordinator sent for the attempt still running.
    Afterwards the job must have failed and left no output folder."""
    with running_coordinator(**settings) as coordinator:
        worker = ScriptedWorker(coordinator.address, slots=2)
        try:
            job = SubmittedJob(coordinator, tmp_path)
            failing, still_running = worker.receive(proto.ASSIGN).body, worker.receive(proto.ASSIGN).body
            for task in (failing, still_running):
                Path(task["attempt_dir"]).mkdir(parents=True)
            worker.send(proto.TASK_FAILED, {"job_id": failing["job_id"], "attempt_id": failing["attempt_id"],
                                            "error": {"type": "RuntimeError", "message": "map blew up"}})
            cancel = worker.receive(proto.CANCEL).body
            assert cancel == {"job_id": still_running["job_id"], "attempt_id": still_running["attempt_id"]}
            yield worker, job, cancel, Path(still_running["attempt_dir"])
        finally:
            worker.close()
    assert isinstance(job.outcome, JobFailed) and "map blew up" in str(job.outcome)
    assert not job.output.exists(), "the failed job left its output folder behind"


def test_a_failed_job_ends_only_once_its_cancelled_attempts_are_confirmed_stopped(tmp_path):
    with a_map_failed(tmp_path) as (worker, job, cancel, attempt_dir):
        # the attempt is not dead yet: it may still write, and the job must not be cleaned up under it
        assert not job.finished.wait(1.0)
        (attempt_dir / "part-m-00001").write_text("late\n")
        worker.send(proto.ATTEMPT_STOPPED, cancel)
        assert job.finished.wait(10)


def test_an_ended_job_does_not_wait_for_the_attempts_of_a_worker_that_left(tmp_path):
    with a_map_failed(tmp_path) as (worker, job, _, _):
        worker.send(proto.BYE)
        assert job.finished.wait(5)


def test_an_unconfirmed_cancel_holds_the_job_for_stop_wait_s_at_most(tmp_path):
    with a_map_failed(tmp_path, stop_wait_s=1.5) as (_, job, _, _):
        assert not job.finished.wait(1.0)  # it waits for the confirmation ...
        assert job.finished.wait(5)  # ... but not for ever


@pytest.mark.parametrize("how", ["done", "failed"])
def test_an_attempt_that_ends_by_itself_after_the_cancel_counts_as_stopped(tmp_path, how):
    with a_map_failed(tmp_path) as (worker, job, ids, _):
        if how == "done":
            worker.send(proto.TASK_DONE, {**ids, "result": {"files": [], "counters": {}}})
        else:
            worker.send(proto.TASK_FAILED, {**ids, "error": {"type": "RuntimeError", "message": "late"}})
        assert job.finished.wait(5)


def done_body(task: dict) -> dict:
    return {"job_id": task["job_id"], "attempt_id": task["attempt_id"],
            "result": {"map_output": {"path": "/nowhere/map.arrow"}, "counters": {}}}


def test_a_worker_that_reconnects_keeps_the_attempts_it_still_runs(tmp_path):
    """A reconnect is not a restart: the same process (same incarnation) keeps its tasks."""
    with running_coordinator() as coordinator:
        worker = ScriptedWorker(coordinator.address, slots=2)
        job = SubmittedJob(coordinator, tmp_path)
        first, second = worker.receive(proto.ASSIGN).body, worker.receive(proto.ASSIGN).body
        assert (first["seq"], second["seq"]) == (1, 2)
        worker.close()
        again = ScriptedWorker(coordinator.address, slots=2, running=[first["attempt_id"], second["attempt_id"]],
                               seq=2)
        try:
            assert again.welcome.body["kill"] == []
            for task in (first, second):
                again.send(proto.TASK_DONE, done_body(task))
            reduce = again.receive(proto.ASSIGN).body
            assert reduce["kind"] == "reduce" and reduce["blobs"] == ["code", "map_outputs"]
            assert not job.finished.is_set()
        finally:
            again.close()


def test_a_restarted_worker_loses_its_attempts_without_a_failure(tmp_path):
    with running_coordinator() as coordinator:
        worker = ScriptedWorker(coordinator.address, slots=2)
        job = SubmittedJob(coordinator, tmp_path)  # max_attempts=1: a counted failure would end it
        first, second = worker.receive(proto.ASSIGN).body, worker.receive(proto.ASSIGN).body
        worker.close()
        restarted = ScriptedWorker(coordinator.address, slots=2, incarnation="second")
        try:
            retried = [restarted.receive(proto.ASSIGN).body for _ in range(2)]
            # second attempts of both maps: the job still runs
            assert sorted(t["attempt_id"] for t in retried) == [first["attempt_id"][:-1] + "1",
                                                                 second["attempt_id"][:-1] + "1"]
            assert retried[0]["blobs"] == ["code"]  # a new process needs the code again
            assert not job.finished.is_set()
        finally:
            restarted.close()


def test_an_attempt_a_worker_no_longer_runs_is_retried_by_sequence_number(tmp_path):
    """The heartbeat echoes the last ASSIGN's number: an attempt at or below it that the
    worker does not list was lost on the way, and runs again; one above it is still coming."""
    with running_coordinator() as coordinator:
        worker = ScriptedWorker(coordinator.address, slots=2)
        try:
            job = SubmittedJob(coordinator, tmp_path)
            first, second = worker.receive(proto.ASSIGN).body, worker.receive(proto.ASSIGN).body
            worker.send(proto.HEARTBEAT, {"running": [], "seq": 1})  # the second ASSIGN is still on its way
            retry = worker.receive(proto.ASSIGN).body
            assert retry["attempt_id"] == first["attempt_id"][:-1] + "1"
            worker.send(proto.HEARTBEAT, {"running": [second["attempt_id"], retry["attempt_id"]], "seq": 3})
            assert worker.receive(timeout_s=1.5).kind == proto.HEARTBEAT
            with pytest.raises(AssertionError):
                worker.receive(proto.ASSIGN, timeout_s=1.0)  # nothing else was lost
            assert not job.finished.is_set()
        finally:
            worker.close()


def test_a_slow_client_keeps_its_place_among_a_jobs_clients_and_a_gone_one_is_dropped(monkeypatch, caplog):
    """A client whose queue is full (it reads slowly) misses progress but still hears the
    job's end; one that has gone is dropped. The coordinator's loop is not running: the
    test drives its ROUTER socket itself."""
    from types import SimpleNamespace

    monkeypatch.setattr(proto, "SEND_HWM", 4)  # a queue that fills after a few messages
    configure = proto.configure

    def small_buffers(sock: zmq.Socket) -> zmq.Socket:  # else loopback TCP grows its buffers to MiBs, slowly
        sock.setsockopt(zmq.SNDBUF, 4096)
        return configure(sock)

    monkeypatch.setattr(proto, "configure", small_buffers)
    coordinator = Coordinator()
    context = zmq.Context()
    slow = proto.configure(context.socket(zmq.DEALER))
    slow.setsockopt(zmq.IDENTITY, b"slow")
    slow.setsockopt(zmq.RCVBUF, 4096)
    slow.connect(coordinator.address)
    try:
        slow.send_multipart(proto.pack(proto.WATCH, {"job_id": "x"}))
        assert coordinator.socket.poll(5000) and coordinator.socket.recv_multipart()[0] == b"slow"
        active = SimpleNamespace(clients=[b"gone", b"slow"])
        progress = proto.pack(proto.PROGRESS, {"job_id": "x", "padding": "p" * 4096})
        refusals = 0  # a refusal may be passing: ZeroMQ's I/O thread is still moving the queue
        for _ in range(100_000):  # fill the slow client's queue and buffers until they stay full
            try:
                proto.send_frames(coordinator.socket, [b"slow", *progress])
                refusals = 0
            except zmq.Again:
                refusals += 1
                if refusals == 3:
                    break
                time.sleep(0.2)
        else:
            pytest.fail("the slow client's queue never filled")
        with caplog.at_level(logging.INFO, logger="pymr.coordinator"):
            coordinator._tell_clients(active, proto.PROGRESS, {"job_id": "x"})
        assert active.clients == [b"slow"]  # it missed this one, and stays
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [
            "cannot send progress to client b'gone'", "cannot send progress to client b'slow'"]
        while slow.poll(1000):  # the client catches up
            slow.recv_multipart()
        coordinator._tell_clients(active, proto.FINISHED, {"job_id": "x"})
        assert active.clients == [b"slow"]
        assert slow.poll(5000), "the client did not hear the job's end"
        assert proto.unpack(slow.recv_multipart()).kind == proto.FINISHED
    finally:
        slow.close(0)
        context.term()
        coordinator.stop()
        coordinator.serve()  # returns at once: closes the socket
