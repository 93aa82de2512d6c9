"""Cluster mode: `pymr coordinator` and `pymr worker` processes, authenticated, surviving failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager

import pytest
import zmq

from cluster import Cluster
from conftest import JOBS, SAMPLE, TEST_JOBS, reference_word_counts, text_pairs
from pymr import protocol as proto
from pymr.errors import ClusterError
from pymr.runners import Client
from pymr.security import Security, generate_key, read_key_file

BOOKS = sorted(SAMPLE.iterdir())


def plain_word_counts(paths) -> dict[str, int]:
    counts: Counter = Counter()
    for path in paths:
        counts.update(path.read_text(encoding="utf-8").split())
    return dict(counts)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("shared"), workers=3)
    yield running
    running.stop()


@pytest.fixture
def own_cluster(tmp_path):
    running = Cluster(tmp_path, workers=3)
    yield running
    running.stop()


def test_wordcount_on_a_cluster(cluster, tmp_path):
    out = tmp_path / "wc"
    result = cluster.submit(JOBS / "wordcount.py", SAMPLE, "-o", out, "-r", "4", "--split-size", "1M")
    assert result.returncode == 0, result.stderr + cluster.log("coordinator")
    assert {k: int(v) for k, v in text_pairs(out).items()} == dict(reference_word_counts(BOOKS))
    assert "succeeded" in result.stderr


def test_inverted_index_on_a_cluster(cluster, tmp_path):
    out = tmp_path / "index"
    result = cluster.submit(JOBS / "inverted_index.py", SAMPLE, "-o", out, "-r", "3", "--split-size", "1M")
    assert result.returncode == 0, result.stderr
    local = tmp_path / "local"
    subprocess.run([sys.executable, "-m", "pymr", "submit", JOBS / "inverted_index.py", SAMPLE, "-o", local, "-r",
                    "3", "--inline", "-q"], check=True)
    assert text_pairs(out) == text_pairs(local)


@pytest.mark.slow
def test_jobs_side_by_side(cluster, tmp_path):
    first = cluster.popen_submit(TEST_JOBS / "slow_words.py", SAMPLE, "-o", tmp_path / "a", "--delay", "0.5",
                                 "--split-size", "1M")
    second = cluster.popen_submit(JOBS / "wordcount.py", SAMPLE, "-o", tmp_path / "b", "-r", "2")
    assert first.wait(timeout=180) == 0, first.stderr.read()
    assert second.wait(timeout=180) == 0, second.stderr.read()
    assert {k: int(v) for k, v in text_pairs(tmp_path / "a").items()} == plain_word_counts(BOOKS)
    assert {k: int(v) for k, v in text_pairs(tmp_path / "b").items()} == dict(reference_word_counts(BOOKS))


@pytest.mark.slow
def test_killed_worker_is_detected_and_its_work_redone(own_cluster, tmp_path):
    out = tmp_path / "out"
    job = own_cluster.popen_submit(TEST_JOBS / "slow_words.py", SAMPLE, "-o", out, "--delay", "1",
                                   "--split-size", "512K", "-r", "3")
    time.sleep(4)  # several maps are done by now, some of them on w1
    own_cluster.kill_worker("w1")
    assert job.wait(timeout=180) == 0, job.stderr.read() + own_cluster.log("coordinator")
    assert {k: int(v) for k, v in text_pairs(out).items()} == plain_word_counts(BOOKS)
    deadline = time.monotonic() + 3 * own_cluster.worker_timeout_s  # (the job may end before it is noticed)
    while "lost worker w1" not in own_cluster.log("coordinator") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "lost worker w1" in own_cluster.log("coordinator")


@pytest.mark.slow
def test_straggler_gets_a_backup_attempt(own_cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    started = time.monotonic()
    result = own_cluster.submit(TEST_JOBS / "slow_words.py", SAMPLE, "-o", out, "--straggle-dir", marks,
                                "--straggler", "kjv-pentateuch.txt", "--straggle", "120", "-r", "2")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 60, f"the backup attempt should finish long before the 120 s straggler ({elapsed:.0f} s)"
    assert {k: int(v) for k, v in text_pairs(out).items()} == plain_word_counts(BOOKS)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["backup_attempts"] >= 1 and report["failed_attempts"] == 0
    assert report["attempts"] == report["map_tasks"] + report["reduce_tasks"] + report["backup_attempts"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("part-")) == ["part-00000", "part-00001"]
    loser = int((marks / "straggled").read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{loser}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{loser}"), "the losing attempt's process must be killed"


def test_task_that_kills_its_process_is_retried_and_workers_survive(own_cluster, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    books = [SAMPLE / "python-tutorial.txt", SAMPLE / "us-declaration-and-constitution.txt"]
    result = own_cluster.submit(TEST_JOBS / "fail_once.py", *books, "-o", out, "--marker-dir", marks, "--crash")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "_REPORT.json").read_text())["failed_attempts"] == 2
    assert own_cluster.alive(), "a task's crash must not take its worker down"
    crashing = own_cluster.submit(TEST_JOBS / "crash_always.py", books[1], "-o", tmp_path / "crash")
    assert crashing.returncode == 1
    assert "after 4 attempt(s)" in crashing.stderr and "process died" in crashing.stderr
    assert "status 9" in crashing.stderr
    assert not (tmp_path / "crash").exists()
    assert own_cluster.alive()


def test_interrupting_submit_cancels_the_job_on_the_cluster(own_cluster, tmp_path):
    out = tmp_path / "out"
    job = own_cluster.popen_submit(TEST_JOBS / "slow_words.py", SAMPLE, "-o", out, "--delay", "30")
    deadline = time.monotonic() + 60
    while not (out / "_temporary").exists() and time.monotonic() < deadline:  # the job is accepted
        time.sleep(0.1)
    time.sleep(1)
    job.send_signal(signal.SIGINT)
    assert job.wait(timeout=60) == 130
    assert not out.exists()
    deadline = time.monotonic() + 10
    while "cancelled" not in own_cluster.log("coordinator") and time.monotonic() < deadline:
        time.sleep(0.2)
    result = own_cluster.submit(JOBS / "wordcount.py", SAMPLE / "kjv-pentateuch.txt", "-o", tmp_path / "after")
    assert result.returncode == 0, result.stderr


def test_workers_survive_a_coordinator_restart(own_cluster, tmp_path):
    own_cluster.restart_coordinator()
    result = own_cluster.submit(JOBS / "wordcount.py", SAMPLE / "kjv-pentateuch.txt", "-o", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert all(w.poll() is None for w in own_cluster.workers.values())


# -- security --------------------------------------------------------------------------------
def test_client_without_the_key_cannot_submit(cluster):
    from pymr.code import dump_job
    from pymr.job import load_job_class

    code = dump_job(load_job_class(JOBS / "wordcount.py"), {})
    spec = {"name": "x", "inputs": [str(SAMPLE)], "output": "/tmp/never", "reducers": 1, "has_reducer": True}
    for key in (None, generate_key()):
        with Client(cluster.address, key, connect_timeout_s=2) as client:
            with pytest.raises(ClusterError):
                client.submit(spec, code)
    assert not os.path.exists("/tmp/never")


@contextmanager
def peer(target: str, key, identity: bytes | None = None):
    """A DEALER connected to ``target`` with ``key`` (None: no CURVE), closed afterwards."""
    context = zmq.Context()
    try:
        sock = Security(context, key).client(proto.configure(context.socket(zmq.DEALER)))
        if identity:
            sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(target)
        yield sock
    finally:
        context.destroy(linger=0)


def test_peer_without_the_key_cannot_fetch_or_register(cluster):
    for target, message in ((cluster.shuffle_address("w0"), proto.pack(proto.FETCH_INDEX, {"path": "/etc/passwd"})),
                            (cluster.address, proto.pack(proto.REGISTER, {"slots": 1, "versions": proto.versions()}))):
        with peer(target, generate_key()) as sock:  # a key, but not the cluster's
            sock.send_multipart(message)
            assert not sock.poll(1500), f"{target} answered a peer without the cluster key"


def test_authenticated_peer_can_fetch_only_map_outputs(cluster):
    with peer(cluster.shuffle_address("w0"), read_key_file(str(cluster.key))) as sock:
        sock.send_multipart(proto.pack(proto.FETCH_INDEX, {"path": "/etc/passwd"}))
        assert sock.poll(5000)
        reply = proto.unpack(sock.recv_multipart())
        assert reply.kind == proto.FETCH_ERROR and "not a map output" in reply.body["error"]


def test_version_mismatch_is_refused_with_a_clear_message(cluster):
    with peer(cluster.address, read_key_file(str(cluster.key)), identity=b"old-worker") as sock:
        sock.send_multipart(proto.pack(proto.REGISTER, {"slots": 1, "versions": dict(proto.versions(), python="2.7")}))
        assert sock.poll(5000)
        reply = proto.unpack(sock.recv_multipart())
        assert reply.kind == proto.REFUSED and "python 2.7" in reply.body["error"]


def test_submit_from_other_versions_is_rejected(cluster):
    with peer(cluster.address, read_key_file(str(cluster.key))) as sock:
        sock.send_multipart(proto.pack(proto.SUBMIT, {"spec": {}, "versions": dict(proto.versions(), cloudpickle="0.1")},
                                       b"code"))
        assert sock.poll(5000)
        reply = proto.unpack(sock.recv_multipart())
        assert reply.kind == proto.REJECTED and "cloudpickle 0.1" in reply.body["error"]


def test_garbage_on_every_socket_leaves_the_cluster_working(cluster, tmp_path):
    key = read_key_file(str(cluster.key))
    targets = [cluster.address] + [cluster.shuffle_address(name) for name in cluster.workers]
    for target in targets:  # raw bytes on the TCP port, before any handshake
        host, port = target[len("tcp://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(os.urandom(4096) + b"\xff" * 1024)
    junk = [[b""], [b"x" * 100], [proto.VERSION, b"submit", b"{not json"], [proto.VERSION, b"nope", b"{}"],
            [b"PYMR/0", b"register", b"{}"], [proto.VERSION, b"task_done", b"[1, 2]"],
            [proto.VERSION, b"fetch_batch", b'{"path": 5}'], [os.urandom(64) for _ in range(5)]]
    for target in targets:  # well-formed ZeroMQ, authenticated, but nonsense messages
        with peer(target, key) as sock:
            for frames in junk:
                sock.send_multipart(frames)
            time.sleep(0.3)
    assert cluster.alive()
    result = cluster.submit(JOBS / "wordcount.py", SAMPLE / "kjv-pentateuch.txt", "-o", tmp_path / "o", "-r", "2")
    assert result.returncode == 0, result.stderr
    assert "malformed" in cluster.log("coordinator")


def test_keygen_makes_a_private_key_file(tmp_path):
    path = tmp_path / "k"
    subprocess.run([sys.executable, "-m", "pymr", "keygen", path], check=True, capture_output=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = subprocess.run([sys.executable, "-m", "pymr", "keygen", path], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
    path.chmod(0o644)
    refused = subprocess.run([sys.executable, "-m", "pymr", "worker", "--coordinator", "tcp://127.0.0.1:1",
                              "--secret-file", path], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "chmod 600" in refused.stderr


def test_non_loopback_without_a_secret_is_refused():
    for args in (["coordinator", "--bind", "tcp://0.0.0.0:5555"],
                 ["worker", "--coordinator", "tcp://192.0.2.10:5555"]):
        result = subprocess.run([sys.executable, "-m", "pymr", *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "--secret-file" in result.stderr
