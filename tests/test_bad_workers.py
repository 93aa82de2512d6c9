"""Machines that fail: a worker with a read-only disk, a host lost during reduces, a
worker that comes back after its job ended. Real `pymr coordinator` and `pymr worker`
processes on loopback (tests/cluster.py); the read-only disk is a real read-only tmpfs
mount (needs root: skipped elsewhere, saying so)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from cluster import Cluster
from conftest import SAMPLE, TEST_JOBS, mounted_tmpfs, text_pairs, wait_for, word_counts_as_text

pytestmark = pytest.mark.slow
BOOK = SAMPLE / "kjv-pentateuch.txt"


def expected_counts() -> dict[str, str]:
    return word_counts_as_text([BOOK])


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only filesystem of its own (writes fail even for root)."""
    with mounted_tmpfs(tmp_path / "read-only", "size=1m,ro") as path:
        yield path


def test_a_worker_with_a_read_only_disk_does_not_fail_the_job(tmp_path, read_only_dir):
    cluster = Cluster(tmp_path, workers=0)
    try:
        cluster.start_worker("broken", data_dir=read_only_dir)
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        for name in cluster.workers:
            cluster.shuffle_address(name)
        out = tmp_path / "out"
        result = cluster.submit(TEST_JOBS / "slow_reduce.py", BOOK, "-o", out, "-r", "3", "--split-size", "64K",
                                "--exclude-after", "1")
        assert result.returncode == 0, result.stderr + cluster.log("coordinator")
        assert text_pairs(out) == expected_counts()
        report = json.loads((out / "_REPORT.json").read_text())
        log = cluster.log("coordinator")
        assert log.count("failed on worker broken") == report["failed_attempts"] == 1  # then it got no more
        assert report["excluded_workers"] == ["broken"]
        assert "worker broken excluded from the job after 1 failed attempts" in log
        assert "Read-only file system" in log
    finally:
        cluster.stop()


def test_reduces_are_told_at_once_when_a_host_with_their_input_is_lost(tmp_path):
    """They are killed and rerun after the lost maps, not left to time out fetching."""
    cluster = Cluster(tmp_path, workers=3, worker_timeout_s=2.0)
    try:
        markers = tmp_path / "markers"
        markers.mkdir()
        out = tmp_path / "out"
        submit = cluster.popen_submit(TEST_JOBS / "slow_reduce.py", BOOK, "-o", out, "-r", "3", "--split-size",
                                      "128K", "--marker-dir", markers, "--reduce-delay", "4")
        wait_for(lambda: len(list(markers.iterdir())) >= 3, 120, "three reduces to start")
        cluster.kill_worker("w2")  # it holds map outputs every reduce needs
        _, stderr = submit.communicate(timeout=180)
        assert submit.returncode == 0, stderr + cluster.log("coordinator")
        assert text_pairs(out) == expected_counts()
        log = cluster.log("coordinator")
        assert "lost worker w2" in log
        assert "cannot fetch its input" not in log  # no reduce waited for a dead host
        report = json.loads((out / "_REPORT.json").read_text())
        assert report["killed_attempts"] >= 3 and report["failed_attempts"] == 0
    finally:
        cluster.stop()


def test_a_worker_that_comes_back_after_its_job_ended_deletes_the_job_files(tmp_path):
    cluster = Cluster(tmp_path, workers=2, worker_timeout_s=2.0)
    try:
        out = tmp_path / "out"
        markers = tmp_path / "markers"
        markers.mkdir()
        submit = cluster.popen_submit(TEST_JOBS / "slow_reduce.py", BOOK, "-o", out, "-r", "2", "--split-size",
                                      "256K", "--marker-dir", markers, "--reduce-delay", "1")
        wait_for(lambda: any(markers.iterdir()), 120, "the reduces to start")
        stalled = cluster.workers["w1"]
        data = tmp_path / "cluster" / "data-w1"
        assert any(p.name.startswith("job_") for p in data.iterdir())  # it holds map outputs
        stalled.send_signal(signal.SIGSTOP)  # declared lost; the job goes on without it
        try:
            _, stderr = submit.communicate(timeout=180)
            assert submit.returncode == 0, stderr
        finally:
            stalled.send_signal(signal.SIGCONT)
        wait_for(lambda: not any(p.name.startswith("job_") for p in data.iterdir()), 30,
                 "the stalled worker to delete the ended job's files")
        assert text_pairs(out) == expected_counts()
    finally:
        cluster.stop()


def test_a_worker_deletes_stale_job_files_at_start_up(tmp_path):
    cluster = Cluster(tmp_path, workers=0)
    try:
        data = tmp_path / "data"
        old, recent, mine = data / "job_20200101_000000_aaaaaa", data / f"job_{uuid.uuid4().hex[:6]}", data / "keep"
        for folder in (old, recent, mine):
            (folder / "m").mkdir(parents=True)
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        cluster.start_worker("w0", data_dir=data, extra=["--stale-job-age", "3600"])
        cluster.shuffle_address("w0")
        assert not old.exists() and mine.exists()
        # The recent one is an unknown job too: the coordinator says so when the worker registers.
        wait_for(lambda: not recent.exists(), 10, "the unknown job's files to be deleted")
    finally:
        cluster.stop()
