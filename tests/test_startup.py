"""Local mode's start-up: workers forked from one warm fork server, Arrow's thread pools
sized per task process, and what happens when the fork server itself is killed.
Real processes throughout; how fast start-up is lives in scripts/benchmark.py."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from cluster import Cluster
from conftest import SAMPLE, TEST_JOBS, processes_mentioning, text_pairs

from pymr import load_job_class
from pymr.errors import SettingError


def _fork_servers(pymr) -> list[int]:
    """The fork servers themselves (what they fork shares their command line)."""
    forked = {pid for pid, cmdline in pymr.leftovers() if "pymr.forkserver" in cmdline}
    return [pid for pid in forked if _parent(pid) not in forked]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_workers_and_their_task_processes_are_forked_from_one_server(pymr, tmp_path):
    out = tmp_path / "out"
    three = sorted(SAMPLE.glob("*.txt"))[:3]  # a map task each, all three at once
    proc = pymr.popen("submit", TEST_JOBS / "spans.py", *three, "-o", out, "-w", "3", "--sleep", "1.5")
    try:
        tree = _wait_for(lambda: _tree(pymr), lambda t: len(t) == 1 and all(len(w) == 1 for w in t[0][1].values())
                         and len(t[0][1]) == 3)
        assert len(tree) == 1, f"one fork server: {pymr.leftovers()}"
        [(_, workers)] = tree
        assert len(workers) == 3 and all(len(tasks) == 1 for tasks in workers.values()), \
            f"3 workers forked by the server, each forking its one task process: {tree}"
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_arrow_pools_hold_one_thread_unless_set(pymr, tmp_path):
    out = tmp_path / "one"
    pymr.run("submit", TEST_JOBS / "arrow_threads.py", SAMPLE / "kjv-pentateuch.txt", "-o", out, "-w", "2",
             check=True)
    assert text_pairs(out) == {"cpu threads": "1", "io threads": "1", "task process": "1"}

    pymr.env["PYMR_ARROW_THREADS"] = "3"
    out = tmp_path / "three"
    pymr.run("submit", TEST_JOBS / "arrow_threads.py", SAMPLE / "kjv-pentateuch.txt", "-o", out, "-w", "2",
             check=True)
    assert text_pairs(out)["cpu threads"] == "3" and text_pairs(out)["io threads"] == "3"

    out = tmp_path / "flag"  # the flag wins over the environment
    pymr.run("submit", TEST_JOBS / "arrow_threads.py", SAMPLE / "kjv-pentateuch.txt", "-o", out, "-w", "2",
             "--arrow-threads", "2", check=True)
    assert text_pairs(out)["cpu threads"] == "2" and text_pairs(out)["io threads"] == "2"


def test_a_cluster_worker_sizes_its_task_processes_arrow_pools(tmp_path):
    cluster = Cluster(tmp_path, workers=0)
    try:
        cluster.start_worker("w0", extra=["--arrow-threads", "2"])
        out = tmp_path / "out"
        result = cluster.submit(TEST_JOBS / "arrow_threads.py", SAMPLE / "kjv-pentateuch.txt", "-o", out,
                                "--arrow-threads", "3", "--workers", "4")
        assert result.returncode == 0, result.stderr
        assert text_pairs(out) == {"cpu threads": "2", "io threads": "2", "task process": "1"}
        assert "--workers, --arrow-threads: local mode only, ignored with --coordinator" in result.stderr
    finally:
        cluster.stop()


def test_a_bad_arrow_thread_count_is_a_usage_error(pymr, tmp_path):
    pymr.env["PYMR_ARROW_THREADS"] = "many"
    out = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "arrow_threads.py", SAMPLE / "kjv-pentateuch.txt", "-o", out)
    assert result.returncode == 2
    assert "PYMR_ARROW_THREADS must be a whole number of at least 1, got 'many'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()

    result = pymr.run("submit", TEST_JOBS / "arrow_threads.py", SAMPLE / "kjv-pentateuch.txt", "-o", out,
                      "--arrow-threads", "0")
    assert result.returncode == 2 and "--arrow-threads" in result.stderr and not out.exists()


def test_a_killed_fork_server_is_replaced_and_the_job_finishes(pymr, tmp_path):
    out = tmp_path / "out"
    proc = pymr.popen("submit", TEST_JOBS / "slow_words.py", SAMPLE, "-o", out, "-w", "2", "--delay", "2")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "_temporary").exists():
            time.sleep(0.05)
        [server] = _fork_servers(pymr)
        os.kill(server, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "fork server exited with status -9" in err
    report = json.loads((out / "_REPORT.json").read_text())
    words = sum(len(p.read_text(encoding="utf-8").split()) for p in SAMPLE.iterdir() if p.suffix == ".txt")
    assert sum(int(v) for v in text_pairs(out).values()) == words
    assert report["state"] == "succeeded"
    assert processes_mentioning(str(pymr.tmpdir)) == []


def _tree(pymr) -> list[tuple[int, dict[int, list[int]]]]:
    """Each fork server, with its children (workers) and theirs (task processes)."""
    return [(server, {w: _children(w) for w in _children(server)}) for server in _fork_servers(pymr)]


def _wait_for(get, done, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    value = get()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = get()
    return value


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


_PROBE = '''
import os, pathlib
import pymr
tmp = os.environ["TMPDIR"]
servers = []
for entry in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmdline = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\\0", b" ").decode()
    except OSError:
        continue
    if "pymr.forkserver" in cmdline and tmp in cmdline:
        servers.append(entry)
if os.environ.get("PROBE_OUT"):
    pathlib.Path(os.environ.pop("PROBE_OUT")).write_text(str(len(servers)))
{body}
'''


def test_local_mode_starts_its_fork_server_before_loading_the_job_and_stops_it_if_that_fails(pymr, tmp_path):
    probe = tmp_path / "servers"
    good = tmp_path / "probe_job.py"
    good.write_text(_PROBE.replace("{body}", "class Probe(pymr.Job):\n    pass\n"))
    pymr.env["PROBE_OUT"] = str(probe)
    pymr.run("submit", good, SAMPLE / "kjv-pentateuch.txt", "-o", tmp_path / "out", "-w", "1", check=True)
    assert probe.read_text() == "1"  # running while the submitting process imported the job script
    pymr.run("submit", good, SAMPLE / "kjv-pentateuch.txt", "-o", tmp_path / "inline", "--inline", check=True)
    assert probe.read_text() == "0"  # none for --inline (nor --coordinator)
    bad = tmp_path / "bad_job.py"
    bad.write_text(_PROBE.replace("{body}", "raise RuntimeError('broken at import')\n"))
    result = pymr.run("submit", bad, SAMPLE / "kjv-pentateuch.txt", "-o", tmp_path / "out2")
    assert result.returncode != 0 and "broken at import" in result.stderr
    assert probe.read_text() == "1" and not (tmp_path / "out2").exists()
    # (the fixture checks that no process, the early fork server included, is left running)


def test_inline_sizes_arrow_pools_as_a_task_process_for_the_run_only(monkeypatch):
    import pyarrow as pa

    monkeypatch.delenv("PYMR_ARROW_THREADS", raising=False)
    job_class = load_job_class(TEST_JOBS / "arrow_threads.py")
    before = pa.cpu_count(), pa.io_thread_count()
    assert dict(job_class.run([SAMPLE / "kjv-pentateuch.txt"], inline=True)) == {
        "cpu threads": 1, "io threads": 1, "task process": 1}
    assert dict(job_class.run([SAMPLE / "kjv-pentateuch.txt"], inline=True, arrow_threads=2))["io threads"] == 2
    assert (pa.cpu_count(), pa.io_thread_count()) == before


def test_run_takes_arrow_threads_and_refuses_a_bad_count():
    job_class = load_job_class(TEST_JOBS / "arrow_threads.py")
    assert dict(job_class.run([SAMPLE], workers=1, arrow_threads=2))["cpu threads"] == 2
    with pytest.raises(SettingError, match="arrow_threads must be a whole number of at least 1, got 2.5"):
        job_class.run([SAMPLE], workers=1, arrow_threads=2.5)


def test_a_worker_refused_for_its_settings_leaves_no_folder_behind(pymr):
    pymr.env["PYMR_ARROW_THREADS"] = "many"
    result = pymr.run("worker", "--coordinator", "tcp://127.0.0.1:1")
    assert result.returncode == 2
    assert "PYMR_ARROW_THREADS must be a whole number of at least 1, got 'many'" in result.stderr
    assert list(pymr.tmpdir.iterdir()) == []  # no pymr-worker-* data folder
