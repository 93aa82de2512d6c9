"""Seeing and steering a running cluster: the JSON API, /metrics and the `pymr jobs /
status / cancel / logs / workers` commands, against a real coordinator and workers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cluster import Cluster, free_port
from conftest import ROOT, TEST_JOBS

pytestmark = pytest.mark.slow


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """A cluster of two workers whose coordinator serves its page on a known port."""
    port = free_port()
    monkeypatch.setenv("PYMR_HTTP", f"127.0.0.1:{port}")
    cluster = Cluster(tmp_path, workers=2)
    cluster.http = f"http://127.0.0.1:{port}"
    _wait_for(lambda: len(_get(cluster, "/api/workers")) == 2, "both workers registered")
    yield cluster
    cluster.stop()


def _get(cluster: Cluster, path: str):
    with urllib.request.urlopen(cluster.http + path, timeout=10) as response:
        body = response.read().decode()
    return body if path == "/metrics" else json.loads(body)


def _wait_for(check, what: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _pymr(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymr", *args, *cluster.submit_args()], capture_output=True,
                          text=True, env=cluster.env, cwd=ROOT, timeout=timeout)


def _inputs(tmp_path, count: int, text: str = "alpha beta gamma\n") -> str:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        (folder / f"part{i:02d}.txt").write_text(text * (i + 1))
    return str(folder)


def test_a_running_job_is_listed_with_growing_progress_and_followed_to_its_end(watched, tmp_path):
    out = tmp_path / "out"
    job = watched.popen_submit(TEST_JOBS / "chatty.py", _inputs(tmp_path, 8), "-o", out, "--delay", "0.7")
    running = _wait_for(lambda: [j for j in _get(watched, "/api/jobs") if j["state"] == "running"], "a running job")
    job_id = running[0]["job_id"]
    assert running[0]["name"] == "Chatty" and running[0]["maps_total"] == 8
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", running[0]["submitted"])
    follow = subprocess.Popen([sys.executable, "-m", "pymr", "status", job_id, "--follow", *watched.submit_args()],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=watched.env, cwd=ROOT)
    listed = _pymr(watched, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["state"] for j in json.loads(listed.stdout) if j["job_id"] == job_id] == ["running"]
    seen = set()
    while job.poll() is None:
        for entry in _get(watched, "/api/jobs"):
            if entry["job_id"] == job_id:
                seen.add((entry["maps_done"], entry["map_bytes_done"]))
        time.sleep(0.2)
    stdout, stderr = job.communicate()
    assert job.returncode == 0, stderr
    assert f"pymr: job {job_id}" in stderr  # printed at the start, to follow or cancel it from elsewhere
    assert "map task starting" not in stdout + stderr  # task output is captured, not on the terminal
    done_counts = sorted(seen)
    assert len(done_counts) >= 3 and done_counts[0][0] < done_counts[-1][0], done_counts  # progress grew
    follow_out, follow_err = follow.communicate(timeout=30)
    assert follow.returncode == 0, follow_err
    assert "succeeded" in follow_err

    detail = _get(watched, f"/api/jobs/{job_id}")
    assert detail["state"] == "succeeded" and detail["maps_done"] == 8 and detail["reduces_done"] == 1
    assert detail["counters"]["pymr"]["map input records"] == sum(range(1, 9))
    assert {t["task_id"] for t in detail["tasks"]} == {f"m{i:05d}" for i in range(8)} | {"r00000"}
    for task in detail["tasks"]:
        assert task["kind"] in ("map", "reduce") and task["state"] == "done"
        winner = [a for a in task["attempts"] if a["state"] == "succeeded"]
        assert len(winner) == 1 and winner[0]["worker_id"] in ("w0", "w1") and winner[0]["seconds"] > 0
        assert winner[0]["error"] is None
    assert detail["phases"]["map"]["bytes_done"] == detail["phases"]["map"]["bytes_total"] > 0

    workers = json.loads(_pymr(watched, "workers", "--json").stdout)
    assert sorted(w["worker_id"] for w in workers) == ["w0", "w1"]
    assert all(w["slots"] == 1 and w["running"] == [] and w["last_heartbeat_s"] < 5 for w in workers)
    assert all(set(w) >= {"host", "failed_attempts"} for w in workers)

    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(_get(watched, "/metrics"))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("pymr_jobs", (("state", "succeeded"),))] == 1
    assert samples[("pymr_workers", ())] == 2
    assert samples[("pymr_task_duration_seconds_count", (("kind", "map"),))] == 8
    assert samples[("pymr_bytes_total", (("kind", "read"),))] == detail["map_bytes_total"]
    assert families["pymr_task_duration_seconds"].type == "histogram"


def test_a_running_map_shows_how_much_of_its_split_it_has_read(watched, tmp_path):
    """Progress inside a task: one map over 8 MB that reads it slowly; before it ends, the
    job, its phase and its attempt say how far it has read, and the figure grows."""
    data = tmp_path / "lines.txt"
    data.write_bytes((b"x" * 99 + b"\n") * 80_000)
    out = tmp_path / "out"
    job = watched.popen_submit(TEST_JOBS / "slow_lines.py", data, "-o", out, "--split-size", "64M",
                               "--pause", "0.2", "--every", "4000")
    job_id = _wait_for(lambda: [j["job_id"] for j in _get(watched, "/api/jobs") if j["state"] == "running"],
                       "a running job")[0]
    read_while_mapping = []
    while job.poll() is None:
        detail = _get(watched, f"/api/jobs/{job_id}")
        if detail["maps_done"] == 0:
            phase = detail["phases"]["map"]
            [attempt] = [a for a in detail["tasks"][0]["attempts"] if a["state"] == "running"] or [None]
            fraction = attempt["progress"] if attempt else None
            read_while_mapping.append((detail["map_bytes_read"], phase["bytes_read"], phase["fraction"], fraction))
            assert detail["map_bytes_done"] == phase["bytes_done"] == 0 and phase["bytes_total"] == 8_000_000
        time.sleep(0.2)
    _, stderr = job.communicate()
    assert job.returncode == 0, stderr
    partly = sorted({entry for entry in read_while_mapping if 0 < entry[0] < 8_000_000})
    assert len({entry[0] for entry in partly}) >= 2, read_while_mapping  # it grew before the map ended
    for read, phase_read, phase_fraction, attempt_fraction in partly:
        assert read == phase_read and phase_fraction == attempt_fraction == round(read / 8_000_000, 4)
    detail = _wait_for(lambda: [d for d in [_get(watched, f"/api/jobs/{job_id}")] if d["ended"]], "the job's end")[0]
    assert detail["map_bytes_read"] == detail["map_bytes_done"] == 8_000_000
    assert all(a["progress"] is None for t in detail["tasks"] for a in t["attempts"])  # none runs now


def test_a_failing_job_shows_its_error_and_the_attempts_output(watched, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("fine line\nthis will FAIL <script>alert(1)</script>\n")
    result = watched.submit(TEST_JOBS / "chatty.py", bad, "-o", tmp_path / "out", "--max-attempts", "2",
                            "--noise", "3000")  # 300 KB of output: more than one ZeroMQ frame
    assert result.returncode == 1
    assert "last lines of the failed attempt's output:" in result.stderr
    assert "about to fail on 'this will FAIL" in result.stderr.split("output:")[-1]
    job_id = re.search(r"pymr: job (\S+)", result.stderr).group(1)

    logs = _pymr(watched, "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.count("map task starting") == 2  # both failed attempts
    assert logs.stdout.count("noise 002999 ") == 2 and len(logs.stdout) > 2 * 300_000
    assert "WARNING chatty: a warning from logging" in logs.stdout
    assert "==> m00000 attempt 0 on w" in logs.stderr and "==> m00000 attempt 1 on w" in logs.stderr
    one = _pymr(watched, "logs", job_id, "m00000", "--attempt", "1")
    assert one.returncode == 0 and one.stdout.count("map task starting") == 1

    detail = _get(watched, f"/api/jobs/{job_id}")
    assert detail["state"] == "failed" and detail["failed_attempts"] == 2
    error = detail["failed"][-1]["error"]
    assert error["type"] == "ValueError" and "about to fail" in error["log_tail"]
    attempt_id = detail["failed"][-1]["attempt_id"]
    with urllib.request.urlopen(f"{watched.http}/api/jobs/{job_id}/logs/{attempt_id}", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")  # never rendered as HTML
        assert "about to fail on 'this will FAIL <script>" in response.read().decode()
    try:
        urllib.request.urlopen(f"{watched.http}/api/jobs/{job_id}/logs/{job_id}-m00000-9", timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    else:
        raise AssertionError("an unknown attempt's log was served")
    status = _pymr(watched, "status", job_id)
    assert status.returncode == 0 and "failed" in status.stdout and "about to fail" in status.stdout
    followed = _pymr(watched, "status", job_id, "--follow")
    assert followed.returncode == 1 and "about to fail" in followed.stderr  # the exit status submit had

    assert _pymr(watched, "logs", "job_nope").returncode == 2
    assert _pymr(watched, "logs", job_id, "m00042").returncode == 2
    assert _pymr(watched, "status", "job_nope").returncode == 2
    assert _pymr(watched, "cancel", "job_nope").returncode == 2


def test_cancel_removes_the_output_and_the_job_shows_cancelled(watched, tmp_path):
    out = tmp_path / "out"
    job = watched.popen_submit(TEST_JOBS / "chatty.py", _inputs(tmp_path, 2), "-o", out, "--delay", "60")
    job_id = _wait_for(lambda: [j["job_id"] for j in _get(watched, "/api/jobs") if j["running"] == 2],
                       "both maps running")[0]
    cancelled = _pymr(watched, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {job_id} cancelled" in cancelled.stderr
    assert job.wait(timeout=30) == 130  # the submitting terminal sees it as a Ctrl-C would end it
    assert not out.exists()
    assert _get(watched, f"/api/jobs/{job_id}")["state"] == "cancelled"
    assert json.loads(_pymr(watched, "jobs", "--json").stdout) == []  # no longer running
    assert [j["state"] for j in json.loads(_pymr(watched, "jobs", "--all", "--json").stdout)] == ["cancelled"]


def test_commands_exit_3_when_the_coordinator_cannot_be_reached(tmp_path):
    env = {"PYMR_COORDINATOR": f"tcp://127.0.0.1:{free_port()}"}
    result = subprocess.run([sys.executable, "-m", "pymr", "jobs"], capture_output=True, text=True, cwd=ROOT,
                            env={**__import__("os").environ, **env}, timeout=60)
    assert result.returncode == 3
    assert "no answer from the coordinator" in result.stderr


def test_local_mode_serves_the_page_while_the_job_runs_and_keeps_task_output_off_the_terminal(pymr, tmp_path):
    job = pymr.popen("submit", TEST_JOBS / "chatty.py", _inputs(tmp_path, 2), "-o", tmp_path / "out", "-w", "2",
                     "--delay", "3")
    try:
        url, seen = None, []
        for line in job.stderr:
            seen.append(line)
            match = re.match(r"status page: (http://127\.0\.0\.1:\d+/)$", line.rstrip("\n"))
            if match:
                url = match.group(1)
                break
        assert url is not None
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
        assert '<script src="/static/app.js"' in page and "cdn" not in page.lower()

        def states():
            with urllib.request.urlopen(url + "api/jobs", timeout=10) as response:
                return [j["state"] for j in json.loads(response.read())]

        assert _wait_for(states, "the job listed on the page") == ["running"]
        stderr = "".join(seen) + job.stderr.read()  # (read through the same buffer the loop above filled)
        stdout = job.stdout.read()
        assert job.wait(timeout=60) == 0, stderr
        assert re.search(r"^pymr: job job_\S+$", stderr, re.M)
        assert "map task starting" not in stdout + stderr
        try:
            urllib.request.urlopen(url + "api/jobs", timeout=5)
        except OSError:
            pass  # the page ends with the run
        else:
            raise AssertionError("the local status page outlived its run")
    finally:
        if job.poll() is None:  # a failed check above: its workers exit with it
            job.kill()
            job.wait()

    quiet = pymr.run("submit", TEST_JOBS / "chatty.py", _inputs(tmp_path, 1), "-o", tmp_path / "q", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = pymr.run("-v", "submit", TEST_JOBS / "chatty.py", _inputs(tmp_path, 1), "-o", tmp_path / "v", "-w", "1",
                       "--http", "off")
    assert verbose.returncode == 0, verbose.stderr
    assert "status page" not in verbose.stderr
    assert "[m00000] map task starting" in verbose.stderr  # -v shows task output live, with the task id
    assert "[m00000] WARNING chatty: a warning from logging" in verbose.stderr


def test_finished_jobs_stay_listed_after_a_restart_on_the_state_dir(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("PYMR_HTTP", f"127.0.0.1:{port}")
    cluster = Cluster(tmp_path, workers=1, state_dir=tmp_path / "state")
    cluster.http = f"http://127.0.0.1:{port}"
    try:
        done = cluster.submit(TEST_JOBS / "chatty.py", _inputs(tmp_path, 2), "-o", tmp_path / "out")
        assert done.returncode == 0, done.stderr
        job_id = re.search(r"pymr: job (\S+)", done.stderr).group(1)
        cluster.restart_coordinator()
        listed = _wait_for(lambda: _pymr(cluster, "jobs", "--all", "--json").stdout, "the new coordinator")
        assert [(j["job_id"], j["state"], j["maps_done"]) for j in json.loads(listed)] == [(job_id, "succeeded", 2)]
        detail = _wait_for(lambda: _get(cluster, f"/api/jobs/{job_id}"), "the page of the new coordinator")
        assert detail["ended"] and detail["counters"]["pymr"]["map input records"] == 3
        assert "tasks" not in detail  # an earlier coordinator's job: its report, not its attempts
        assert _pymr(cluster, "logs", job_id).returncode == 2  # says its attempts are no longer listed
    finally:
        cluster.stop()
