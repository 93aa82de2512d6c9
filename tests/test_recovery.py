"""A coordinator killed (-9) mid-job and started again on its --state-dir resumes the job
(issue 14): the `pymr submit` that was waiting exits 0 with the exact output, nothing
committed before the kill runs again, and nothing is left behind. Real coordinator,
worker and client processes (tests/cluster.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from cluster import ROOT, Cluster
from conftest import SAMPLE, TEST_JOBS, text_pairs, wait_for, word_counts_as_text

pytestmark = pytest.mark.slow
BOOK = SAMPLE / "kjv-pentateuch.txt"


def expected_counts() -> dict[str, str]:
    return word_counts_as_text([BOOK])


def commits(state_dir: Path) -> dict[str, set[int]]:
    """The task commits in the state database (none while it is being created)."""
    found: dict[str, set[int]] = {"map": set(), "reduce": set()}
    if not (state_dir / "coordinator.sqlite").exists():
        return found
    with closing(sqlite3.connect(f"file:{state_dir / 'coordinator.sqlite'}?mode=ro", uri=True)) as db:
        try:
            for kind, index in db.execute("SELECT kind, task_index FROM task_commits"):
                found[kind].add(index)
        except sqlite3.OperationalError:  # no schema yet
            pass
    return found


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path, workers=3, state_dir=tmp_path / "state")
    yield running
    running.stop()


def submit(cluster: Cluster, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "out"
    process = cluster.popen_submit(TEST_JOBS / "slow_reduce.py", BOOK, "-o", out, "--reconnect-timeout", "60",
                                   *extra)
    return process, out


def finish_and_check(cluster: Cluster, process: subprocess.Popen, out: Path, before: dict[str, set[int]]) -> dict:
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr + cluster.log("coordinator")
    assert "restarted" in stderr  # the client says what happened
    assert text_pairs(out) == expected_counts()
    assert not (out / "_temporary").exists()
    report = json.loads((out / "_REPORT.json").read_text())
    resumed = report["resumed"]
    assert resumed["restarts"] == 1
    assert resumed["kept"] == {kind: len(indices) for kind, indices in before.items() if indices}
    assert all(not again for again in resumed["ran_again"].values())  # every worker came back
    for name in cluster.workers:  # the job's map outputs are deleted once it ended
        data = cluster.dir / f"data-{name}"
        wait_for(lambda: not any(p.name.startswith("job_") for p in data.iterdir()), 15, f"{name}'s data dir empty")
    return report


def test_killed_during_maps_the_job_resumes(cluster, tmp_path):
    process, out = submit(cluster, tmp_path, "-r", "2", "--split-size", "96K", "--map-delay", "0.6")
    wait_for(lambda: len(commits(cluster.state_dir)["map"]) >= 2, 120, "two committed maps")
    cluster.kill_coordinator()
    before = commits(cluster.state_dir)
    assert 2 <= len(before["map"]) < 11 and not before["reduce"]
    cluster.start_coordinator()
    finish_and_check(cluster, process, out, before)


def test_killed_during_reduces_the_committed_reduces_stay(cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    process, out = submit(cluster, tmp_path, "-r", "6", "--marker-dir", markers, "--reduce-delay", "1.5")
    wait_for(lambda: len(list(markers.iterdir())) >= 4, 120, "a reduce committed and the next ones running")
    wait_for(lambda: commits(cluster.state_dir)["reduce"], 30, "a committed reduce")
    cluster.kill_coordinator()
    before = commits(cluster.state_dir)
    assert before["reduce"] and len(before["reduce"]) < 6
    cluster.start_coordinator()
    report = finish_and_check(cluster, process, out, before)
    assert report["resumed"]["kept"]["map"] == len(before["map"])  # every map output was still on its worker


def test_a_worker_restarted_with_the_coordinator_serves_its_kept_map_outputs_from_its_new_port(cluster, tmp_path):
    """Its committed map outputs count as done again, and reduces on other workers fetch
    them where it serves them now: before, they were sent its old port, waited there, and
    only backup attempts on that worker itself (which read them from disk) finished."""
    markers = tmp_path / "markers"
    markers.mkdir()
    process, out = submit(cluster, tmp_path, "-r", "3", "--split-size", "96K", "--marker-dir", markers,
                          "--reduce-delay", "1")
    wait_for(lambda: any(markers.iterdir()), 120, "the reduces to start (every map committed)")
    cluster.kill_coordinator()
    before = commits(cluster.state_dir)
    held = [p.name for p in (cluster.dir / "data-w0").rglob("*") if p.name == "map.arrow"]
    assert held, "w0 holds map outputs"
    cluster.kill_worker("w0")
    cluster.start_worker("w0", host="127.0.0.2")  # the same machine and data dir, a new shuffle port
    cluster.start_coordinator()
    report = finish_and_check(cluster, process, out, before)
    assert report["resumed"]["kept"]["map"] == len(before["map"])  # w0's outputs were kept, not rerun
    assert report["backup_attempts"] == 0 and report["killed_attempts"] == 0, report


def test_killed_during_the_job_commit_the_commit_is_finished(cluster, tmp_path):
    cluster.kill_coordinator()
    cluster.start_coordinator(env={"PYMR_TEST_COMMIT_FAULT": "part-1"})  # dies as kill -9 would, half way
    process, out = submit(cluster, tmp_path, "-r", "3")
    wait_for(lambda: cluster.coordinator.poll() is not None, 120, "the coordinator to die in the job commit")
    before = commits(cluster.state_dir)
    assert len(before["reduce"]) == 3
    assert not (out / "_SUCCESS").exists()
    cluster.start_coordinator()
    finish_and_check(cluster, process, out, before)


def test_a_multi_step_job_resumes_in_the_step_it_was_in(cluster, tmp_path):
    out = tmp_path / "out"
    process = cluster.popen_submit(TEST_JOBS / "top_words.py", BOOK, "-o", out, "--reconnect-timeout", "60")
    wait_for(lambda: "(step 2)" in cluster.log("coordinator"), 120, "step 2 to start")
    cluster.kill_coordinator()
    cluster.start_coordinator()
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr + cluster.log("coordinator")
    log = cluster.log("coordinator")
    assert log.count("(step 1)") == 1  # step 1 was not run again: only step 2 resumed
    assert "resumed" in log
    assert (out / "_SUCCESS").exists()


def test_a_second_coordinator_on_the_same_state_dir_is_refused(cluster):
    wait_for(lambda: "listening" in cluster.log("coordinator"), 30, "the coordinator to start")
    second = subprocess.run([sys.executable, "-m", "pymr", "coordinator", "--bind", "tcp://127.0.0.1:0",
                             "--state-dir", str(cluster.state_dir)], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert second.returncode == 2
    assert "in use by another coordinator" in second.stderr and f"pid {cluster.coordinator.pid}" in second.stderr
    assert "Traceback" not in second.stderr


@pytest.mark.parametrize("run", range(10))
def test_coordinator_and_workers_killed_at_random_moments_the_output_is_the_same(tmp_path, run):
    """The crash test: during one job the coordinator is killed (-9) and started again
    three times and a worker is killed and replaced, at moments drawn at random (seeded
    per run, so a failure can be replayed); the output equals a failure-free reference."""
    import random

    chance = random.Random(run)
    cluster = Cluster(tmp_path, workers=3, state_dir=tmp_path / "state")
    try:
        out = tmp_path / "out"
        process = cluster.popen_submit(TEST_JOBS / "slow_reduce.py", BOOK, "-o", out, "-r", "3", "--split-size",
                                       "128K", "--map-delay", "0.4", "--reduce-delay", "0.8",
                                       "--reconnect-timeout", "60")
        wait_for(lambda: "map tasks" in cluster.log("coordinator"), 60, "the job to be accepted")
        victim = chance.choice(sorted(cluster.workers))
        for kill in range(3):
            time.sleep(chance.uniform(0.1, 1.5))
            if process.poll() is not None:
                break
            cluster.kill_coordinator()
            if kill == 1:  # a worker dies too, while the coordinator is down
                cluster.kill_worker(victim)
                cluster.start_worker(victim, host=f"127.0.0.{2 + sorted(cluster.workers).index(victim)}")
            time.sleep(chance.uniform(0.0, 0.5))
            cluster.start_coordinator()
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr + cluster.log("coordinator")
        assert text_pairs(out) == expected_counts()
        assert (out / "_SUCCESS").exists() and not (out / "_temporary").exists()
        assert ") resumed:" in cluster.log("coordinator")  # a kill did land in the middle of the job
    finally:
        cluster.stop()
