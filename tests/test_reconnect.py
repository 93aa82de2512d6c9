"""Clients that lose the coordinator: real `pymr coordinator`, workers and `pymr submit` processes."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from cluster import Cluster
from conftest import SAMPLE, TEST_JOBS, text_pairs
from pymr.code import dump_job
from pymr.errors import ClusterError
from pymr.job import load_job_class
from pymr.runners import Client, job_spec
from pymr.security import read_key_file

BOOKS = sorted(SAMPLE.iterdir())


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path, workers=2)
    yield running
    running.stop()


def word_counts() -> dict[str, int]:
    counts: Counter = Counter()
    for path in BOOKS:
        counts.update(path.read_text(encoding="utf-8").split())
    return dict(counts)


def submit_slow_job(cluster: Cluster, out, *flags: str):
    job = cluster.popen_submit(TEST_JOBS / "slow_words.py", SAMPLE, "-o", out, "--delay", "1", "--split-size", "1M",
                               *flags)
    deadline = time.monotonic() + 60
    while not any(cluster.dir.glob("data-*/job_*")) and time.monotonic() < deadline:  # a map runs: accepted
        assert job.poll() is None, job.stderr.read()
        time.sleep(0.1)
    return job


def kill_coordinator(cluster: Cluster) -> float:
    cluster.coordinator.send_signal(signal.SIGKILL)
    cluster.coordinator.wait()
    return time.monotonic()


def start_coordinator(cluster: Cluster) -> None:
    cluster.coordinator = cluster._start("coordinator", ["coordinator", "--bind", cluster.address, "--secret-file",
                                                         str(cluster.key), "--worker-timeout", "3"])


def test_a_coordinator_restarted_without_state_makes_the_client_report_its_job_lost(cluster, tmp_path):
    job = submit_slow_job(cluster, tmp_path / "out", "--reconnect-timeout", "60")
    killed = kill_coordinator(cluster)
    start_coordinator(cluster)
    _, stderr = job.communicate(timeout=90)
    assert job.returncode == 3, stderr
    assert time.monotonic() - killed < 60, "the client waited out its reconnect timeout instead of asking"
    assert f"lost the connection to the coordinator at {cluster.address}" in stderr
    assert "restarted and does not know job job_" in stderr and "without --state-dir" in stderr
    assert "the job is lost; submit it again" in stderr


def test_a_client_gives_up_after_its_reconnect_timeout_and_says_how_to_follow_the_job(cluster, tmp_path):
    job = submit_slow_job(cluster, tmp_path / "out", "--reconnect-timeout", "2", "-q")
    killed = kill_coordinator(cluster)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 3, stderr
    assert time.monotonic() - killed >= 2
    assert "no answer for 2 s (--reconnect-timeout)" in stderr and "follow it with `pymr status job_" in stderr
    assert "lost the connection" not in stderr, "-q prints no notices"


def test_clients_that_follow_a_running_job_by_its_id_all_hear_it_to_the_end(cluster, tmp_path):
    job_class = load_job_class(str(TEST_JOBS / "slow_words.py"))
    spec = job_spec(job_class, [str(SAMPLE)], str(tmp_path / "out"), split_size="1M")
    key = read_key_file(str(cluster.key))
    progress: dict[str, list[dict]] = {"submitter": [], "first": [], "second": []}
    reports: dict[str, dict] = {}
    with Client(cluster.address, key) as submitter, Client(cluster.address, key) as first, \
            Client(cluster.address, key) as second:
        job_id = submitter.submit(spec, dump_job(job_class, {"delay": 0.5}, []))
        followers = [threading.Thread(target=lambda name=name, client=client: reports.__setitem__(
            name, client.follow(job_id, progress[name].append))) for name, client in (("first", first),
                                                                                     ("second", second))]
        for follower in followers:
            follower.start()
        reports["submitter"] = submitter.wait(job_id, progress["submitter"].append)
        for follower in followers:
            follower.join(timeout=60)
    assert {name: (r["job_id"], r["state"]) for name, r in reports.items()} == {
        name: (job_id, "succeeded") for name in progress}  # a follower takes nothing from the others
    for name in ("first", "second"):
        assert progress[name][0]["watch"] and progress[name][0]["job_id"] == job_id
        joined = progress[name][0]["elapsed_s"]
        assert any(p["elapsed_s"] > joined for p in progress["submitter"]), "the submitter heard no more"
    assert progress["submitter"][-1]["maps_done"] == progress["first"][-1]["maps_done"]
    assert {k: int(v) for k, v in text_pairs(tmp_path / "out").items()} == word_counts()
    with Client(cluster.address, key) as late:  # the coordinator still remembers how it ended
        assert late.follow(job_id)["counters"] == reports["submitter"]["counters"]
    with Client(cluster.address, key, reconnect_timeout_s=10) as stranger:
        with pytest.raises(ClusterError, match="does not know job job_nope"):
            stranger.follow("job_nope")


@pytest.mark.slow
def test_a_coordinator_that_falls_silent_and_comes_back_is_followed_to_the_end(cluster, tmp_path):
    out = tmp_path / "out"
    job = submit_slow_job(cluster, out)
    cluster.coordinator.send_signal(signal.SIGSTOP)  # silent, its connections open: a hung or partitioned host
    try:
        time.sleep(17)  # past the client's 15 s without news
    finally:
        cluster.coordinator.send_signal(signal.SIGCONT)
    _, stderr = job.communicate(timeout=180)
    assert job.returncode == 0, stderr + cluster.log("coordinator")
    assert "nothing heard from the coordinator" in stderr
    assert "answers again; job job_" in stderr and "is still running" in stderr
    assert {k: int(v) for k, v in text_pairs(out).items()} == word_counts()
