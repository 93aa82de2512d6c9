"""Hostile messages cannot stop the cluster (issue 12, item 1): every kind's decoder and
handler is driven with arbitrary frames, then the same processes must still serve a job.

The coordinator's per-message entry (``_handle_frames``, what its loop calls for each
message) and its timers and dispatch run in the test's thread, so hypothesis can shrink
a failure to one message; afterwards its real loop serves a word count with a real
worker process. A worker's handler (``Worker._handle_frames``) and a real shuffle
server's socket get the same treatment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SAMPLE, reference_word_counts, text_pairs
from pymr import messages as schemas
from pymr import protocol as proto
from pymr.code import dump_job
from pymr.coordinator import Coordinator
from pymr.errors import ProtocolError
from pymr.job import load_job_class
from pymr.runners import Client, job_spec

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)

# A well-formed body of each kind, so that mutations of it reach deep into the handlers.
TEMPLATES = {
    proto.REGISTER: {"slots": 2, "versions": proto.versions(), "host": "127.0.0.1",
                     "shuffle_address": "tcp://127.0.0.1:9", "incarnation": "x", "running": ["job_a-m00000-0"],
                     "seq": 3, "jobs": ["job_a"], "jobs_loaded": ["job_a"]},
    proto.HEARTBEAT: {"running": ["job_a-m00000-0"], "seq": 1, "progress": {"job_a-m00000-0": 0.25}},
    proto.TASK_DONE: {"job_id": "job_a", "attempt_id": "job_a-m00000-0",
                      "result": {"map_output": {"path": "/x", "host": "h", "address": "tcp://h:1"},
                                 "files": ["part-00000"], "counters": {"g": {"n": 1}}, "max_rss_kb": 5}},
    proto.TASK_FAILED: {"job_id": "job_a", "attempt_id": "job_a-m00000-0",
                        "error": {"type": "ValueError", "message": "m", "traceback": "t", "fetch_failed": 0}},
    proto.ATTEMPT_STOPPED: {"job_id": "job_a", "attempt_id": "job_a-m00000-0"},
    proto.BYE: {},
    proto.SUBMIT: {"spec": {"inputs": ["/nonexistent"], "output": "/nonexistent-out", "reducers": 1},
                   "request_id": "r", "versions": proto.versions()},
    proto.CANCEL_JOB: {"job_id": "job_a", "reason": "r"},
    proto.WORKER_LOST: {"worker_id": "fuzz-worker", "reason": "r"},
    proto.ASSIGN: {"kind": "map", "job_id": "job_a", "attempt_id": "job_a-m00000-0", "seq": 1, "blobs": ["code"],
                   "split": {"path": "/x", "start": 0, "end": 1}},
    proto.CANCEL: {"job_id": "job_a", "attempt_id": "job_a-m00000-0"},
    proto.JOB_ENDED: {"job_id": "job_a"},
    proto.WELCOME: {"heartbeat_s": 1.0, "forget": ["job_a"], "kill": ["job_a-m00000-0"]},
    proto.REFUSED: {"error": "no"},
    proto.FETCH_INDEX: {"path": "/x"},
    proto.FETCH_BATCH: {"path": "/x", "batch": 0, "seq": 0},
}


@st.composite
def bodies(draw, kind: str) -> bytes:
    """A JSON body for ``kind``: its template with fields replaced, dropped or added, or
    anything at all; sometimes bytes that are not JSON."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.sampled_from([b"[" * 100_000, b"{" * 5000, b"\xff\xfe", b"", b"Infinity", b"[1e999]",
                                     b'{"slots": Infinity}', b'{"slots": NaN}', b"null", b"[]"]))
    if choice == 1:
        return json.dumps(draw(JSON)).encode()
    body = dict(TEMPLATES.get(kind, {}))
    for name in list(body):
        action = draw(st.integers(0, 3))
        if action == 0:
            body[name] = draw(JSON)
        elif action == 1:
            del body[name]
    if draw(st.booleans()):
        body[draw(st.text(max_size=8))] = draw(JSON)
    return json.dumps(body, allow_nan=True).encode()


@st.composite
def messages(draw) -> list[bytes]:
    kind = draw(st.sampled_from(sorted(proto.KINDS)))
    frames = [draw(st.sampled_from([proto.VERSION, proto.VERSION, proto.VERSION, b"PYMR/0", b""])),
              draw(st.sampled_from([kind.encode(), kind.encode(), b"\xff", b"nope"])), draw(bodies(kind))]
    frames += draw(st.lists(st.binary(max_size=64), max_size=2))
    return frames[:draw(st.integers(0, len(frames)))] if draw(st.integers(0, 9)) == 0 else frames


@pytest.fixture(scope="module")
def coordinator():
    coordinator = Coordinator("tcp://127.0.0.1:*")
    registered = [b"fuzz-worker", proto.VERSION, proto.REGISTER.encode(),
                  json.dumps(TEMPLATES[proto.REGISTER]).encode()]
    coordinator._handle_frames(registered)
    yield coordinator
    coordinator.stop()
    coordinator._shutdown()


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@FUZZ
@given(frames=messages(), peer=st.sampled_from([b"fuzz-worker", b"stranger", b"\xff\x00"]))
def test_no_message_can_raise_out_of_the_coordinator(coordinator, frames, peer):
    coordinator._handle_frames([peer, *frames])  # what the loop calls for each message: must not raise
    coordinator._run_completions()
    coordinator._run_timers()
    coordinator._dispatch()


@pytest.mark.slow
def test_the_coordinator_still_serves_a_job_after_the_fuzzing(coordinator, tmp_path):
    # (runs after the fuzz test above, on the same coordinator)
    thread = threading.Thread(target=coordinator.serve, daemon=True)
    thread.start()
    worker = subprocess.Popen([sys.executable, "-m", "pymr", "worker", "--coordinator", coordinator.address,
                               "--worker-id", "real", "--data-dir", str(tmp_path / "data")], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        book = SAMPLE / "kjv-pentateuch.txt"
        job_class = load_job_class(ROOT / "jobs" / "wordcount.py")
        spec = job_spec(job_class, [str(book)], str(tmp_path / "out"), reducers=2)
        with Client(coordinator.address) as client:
            report = client.run(spec, dump_job(job_class, {}))
        assert report["state"] == "succeeded"
        assert text_pairs(tmp_path / "out") == {w: str(n) for w, n in reference_word_counts([book]).items()}
    finally:
        coordinator.stop()
        thread.join(10)
        worker.terminate()
        worker.wait(10)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from pymr.worker import Worker

    worker = Worker("tcp://127.0.0.1:9", "fuzzed", data_dir=str(tmp_path_factory.mktemp("worker-data")))
    worker._connect()
    yield worker
    worker._close()


@FUZZ
@given(frames=messages())
def test_no_message_can_raise_out_of_a_worker(worker, frames):
    code = worker._handle_frames(frames)
    assert code in (None, 0, 2)  # 0: told to shut down, 2: refused
    worker._start_queued()  # a bad task is refused or fails its attempt; it never stops the worker


@pytest.fixture(scope="module")
def shuffle_server(tmp_path_factory):
    from pymr.fetch import ShuffleServer
    from pymr.security import Security

    context = zmq.Context()
    server = ShuffleServer(context, Security(context, None), "127.0.0.1", str(tmp_path_factory.mktemp("maps")))
    peer = context.socket(zmq.DEALER)
    peer.setsockopt(zmq.LINGER, 0)
    peer.connect(server.address)
    yield server, peer
    peer.close()
    server.close()
    context.destroy(linger=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=messages())
def test_no_message_can_raise_out_of_a_shuffle_server(shuffle_server, frames):
    server, peer = shuffle_server
    peer.send_multipart(frames or [b""])  # (ZeroMQ has no message of no frames)
    deadline = time.monotonic() + 2
    while not server.socket.poll(10) and time.monotonic() < deadline:
        pass
    server.handle_all()
    while peer.poll(0):  # a reply (FETCH_ERROR) or nothing: either way the server is fine
        proto.unpack(peer.recv_multipart())


def test_the_messages_that_used_to_kill_a_coordinator_process_are_dropped(tmp_path):
    """Each of these stopped `pymr coordinator` before (issue 12): now each is logged, with
    its peer and kind, and dropped, and the process keeps answering."""
    from cluster import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    log = open(tmp_path / "coordinator.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "pymr", "coordinator", "--bind", address], cwd=ROOT,
                               stdout=log, stderr=log)
    context = zmq.Context()
    try:
        peer = context.socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.connect(address)
        register = dict(TEMPLATES[proto.REGISTER])
        for frames in ([proto.VERSION, b"heartbeat", b"[" * 100_000],
                       proto.pack(proto.REGISTER, dict(register, versions=["not", "a", "dict"])),
                       [proto.VERSION, b"register", b'{"slots": Infinity, "versions": {}}'],
                       proto.pack(proto.SUBMIT, {"spec": ["a", "list"], "versions": proto.versions()}, b"code")):
            peer.send_multipart(frames)
        peer.send_multipart(proto.pack(proto.REGISTER, register))
        deadline = time.monotonic() + 20
        answers = []
        while time.monotonic() < deadline and proto.WELCOME not in answers:
            if peer.poll(200):
                answers.append(proto.unpack(peer.recv_multipart()).kind)
        assert proto.REJECTED in answers  # the submit with a bad spec is answered, not silently dropped
        assert proto.WELCOME in answers and process.poll() is None
        log.seek(0)
        text = log.read()
        assert text.count("dropped a malformed") == 4, text
        assert "malformed heartbeat message" in text  # peer and kind are named
    finally:
        context.destroy(linger=0)
        process.terminate()
        process.wait(10)


def test_a_heartbeats_progress_is_checked_like_every_field():
    def heartbeat(progress):
        return schemas.validate(proto.Message(proto.HEARTBEAT, {"progress": progress}), schemas.TO_COORDINATOR)

    assert heartbeat({"job_a-m00000-0": 0.25, "job_a-r00000-0": 1}).body == {
        "progress": {"job_a-m00000-0": 0.25, "job_a-r00000-0": 1.0}}
    for bad in ({"job_a-m00000-0": -0.1}, {"job_a-m00000-0": 1.5}, {"job_a-m00000-0": "0.5"},
                {"job_a-m00000-0": float("nan")}, ["job_a-m00000-0"],
                {f"a{i}": 0.5 for i in range(schemas.MAX_SLOTS + 1)}):
        with pytest.raises(ProtocolError, match="heartbeat"):
            heartbeat(bad)
