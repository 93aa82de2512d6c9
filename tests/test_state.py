"""The coordinator's state store: real SQLite files, a real writer process killed -9."""

from __future__ import annotations

import hashlib
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pymr.errors import StateError
from pymr.state import DATABASE_NAME, SCHEMA_VERSION, StateStore, TaskCommit

ROOT = Path(__file__).resolve().parent.parent


def map_commit(index: int, worker: str = "w1", attempt: int = 0) -> TaskCommit:
    location = {"path": f"/data/{worker}/job/map-{index}.arrow", "host": "127.0.0.2", "address": "tcp://127.0.0.2:7000"}
    return TaskCommit("map", index, f"job-m{index}-{attempt}", worker,
                      {"map_output": location, "partition_rows": [index, 1], "counters": {"pymr": {"n": index}}})


def reduce_commit(index: int) -> TaskCommit:
    return TaskCommit("reduce", index, f"job-r{index}-0", "w2", {"files": [f"part-{index:05d}"], "counters": {}})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_running_job_and_its_commits_survive_closing_and_reopening(tmp_path):
    spec = {"name": "WordCount", "inputs": ["/in/é.txt"], "reducers": 2}
    with StateStore(str(tmp_path)) as store:
        store.add_job("job_1", spec, b"\x00code\xff", "client-a", 1_700_000_000.5)
        store.commit_tasks("job_1", [map_commit(0), map_commit(1)])
        store.commit_tasks("job_1", [reduce_commit(1)])
        store.add_job("job_2", {"name": "Other"}, b"x", "client-b", 1_700_000_001.0)
    with StateStore(str(tmp_path)) as store:
        first, second = store.running_jobs()
        record = store.job("job_1")
    assert (first.job_id, first.spec, first.code, first.client_id, first.submitted_unix_s) == \
        ("job_1", spec, b"\x00code\xff", "client-a", 1_700_000_000.5)
    assert first.tasks == [map_commit(0), map_commit(1), reduce_commit(1)]
    assert first.tasks[1].map_output["path"] == "/data/w1/job/map-1.arrow" and first.tasks[2].files == ["part-00001"]
    assert (second.job_id, second.tasks) == ("job_2", [])
    assert record["state"] == "running" and record["report"] is None and record["name"] == "WordCount"


def test_the_database_is_wal_synchronous_full_and_private(tmp_path):
    with StateStore(str(tmp_path / "state")) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: every commit is fsynced
        other = sqlite3.connect(tmp_path / "state" / DATABASE_NAME)
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.close()
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700  # the database holds job code
    assert stat.S_IMODE((tmp_path / "state" / DATABASE_NAME).stat().st_mode) == 0o600


def test_a_batch_is_one_transaction_and_a_recommitted_task_replaces_its_row(tmp_path):
    with StateStore(str(tmp_path)) as store:
        store.add_job("job_1", {"name": "j"}, b"c", "c", 0.0)
        store.commit_tasks("job_1", [map_commit(i) for i in range(500)])
        store.commit_tasks("job_1", [map_commit(7, worker="w9", attempt=3)])  # rerun after w1 was lost
        with pytest.raises(ValueError, match="job_nope is not a running job"):
            store.commit_tasks("job_nope", [map_commit(0)])
        with pytest.raises(StateError, match="cannot write"):  # the second row breaks the kind check
            store.commit_tasks("job_1", [reduce_commit(0), TaskCommit("sort", 0, "a", "w", {})])
        tasks = store.running_jobs()[0].tasks
    assert len(tasks) == 500 and not any(t.kind == "reduce" for t in tasks)  # the broken batch left nothing
    assert tasks[7] == map_commit(7, worker="w9", attempt=3)


def test_ending_a_job_keeps_its_report_and_drops_what_only_recovery_needed(tmp_path):
    with StateStore(str(tmp_path)) as store:
        store.add_job("job_1", {"name": "j"}, b"code" * 1000, "c", 0.0)
        store.commit_tasks("job_1", [map_commit(0), reduce_commit(0)])
        store.end_job("job_1", "failed", "map 0 failed 4 times", {"state": "failed", "counters": {}})
        with pytest.raises(ValueError, match="not a running job"):  # a late commit cannot revive it
            store.commit_tasks("job_1", [map_commit(1)])
        with pytest.raises(ValueError, match="not 'running'"):
            store.end_job("job_1", "running", None, {})
        assert store.running_jobs() == []
        [record] = store.finished_jobs()
        assert store.job("job_1") == record and store.job("job_2") is None
    assert (record["state"], record["error"], record["report"]) == \
        ("failed", "map 0 failed 4 times", {"state": "failed", "counters": {}})
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    assert db.execute("SELECT code FROM jobs").fetchall() == [(None,)]
    assert db.execute("SELECT count(*) FROM task_commits").fetchone() == (0,)
    db.close()


def test_ended_jobs_are_pruned_by_count_and_by_age_running_jobs_never(tmp_path):
    with StateStore(str(tmp_path), keep_jobs=3) as store:
        store.add_job("running", {"name": "r"}, b"c", "c", 0.0)
        for i in range(6):
            store.add_job(f"job_{i}", {"name": "j"}, b"c", "c", float(i))
            store.end_job(f"job_{i}", "succeeded", None, {"n": i})
        assert [j["job_id"] for j in store.finished_jobs()] == ["job_5", "job_4", "job_3"]
        assert [j["job_id"] for j in store.finished_jobs(limit=1)] == ["job_5"]
    with StateStore(str(tmp_path), keep_s=0.05) as store:
        time.sleep(0.1)
        store.add_job("young", {"name": "y"}, b"c", "c", 9.0)
        store.end_job("young", "cancelled", "Ctrl-C", {})
        assert [j["job_id"] for j in store.finished_jobs()] == ["young"]
        assert [j.job_id for j in store.running_jobs()] == ["running"]


WRITER = """
import sys, time
from pymr.state import StateStore, TaskCommit
store = StateStore(sys.argv[1])
store.add_job("job_1", {"name": "j"}, b"code", "c", time.time())
print("ready", flush=True)
for batch in range(1_000_000):
    store.commit_tasks("job_1", [TaskCommit("map", batch * 10 + i, f"a{batch}", "w", {"n": i}) for i in range(10)])
    print(batch, flush=True)
"""


def test_a_writer_killed_mid_way_loses_nothing_it_returned_from_and_frees_the_dir(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "ready\n", writer.stderr.read()
        with pytest.raises(StateError, match=f"in use by another coordinator \\(pid {writer.pid} on host "
                                             f"{socket.gethostname()}\\)") as refused:
            StateStore(str(tmp_path))
        assert refused.value.exit_code == 2
        done = [writer.stdout.readline() for _ in range(30)]  # it keeps committing meanwhile
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    last_returned = int(done[-1])
    with StateStore(str(tmp_path)) as store:  # the kernel released the lock; the WAL is recovered
        [job] = store.running_jobs()
    indexes = [t.index for t in job.tasks]
    assert len(indexes) % 10 == 0, "a batch was torn"
    assert indexes == list(range(len(indexes))) and len(indexes) >= (last_returned + 1) * 10


def test_a_database_from_a_newer_pymr_is_refused_and_left_as_it_is(tmp_path):
    StateStore(str(tmp_path)).close()
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = digest(tmp_path / DATABASE_NAME)
    with pytest.raises(StateError, match=f"written by a newer pymr \\(schema version {SCHEMA_VERSION + 1}") as refused:
        StateStore(str(tmp_path))
    assert refused.value.exit_code == 2
    assert digest(tmp_path / DATABASE_NAME) == before


def test_a_file_that_is_not_a_database_is_refused_and_kept(tmp_path):
    (tmp_path / DATABASE_NAME).write_bytes(b"these are not the pages you are looking for\n" * 200)
    before = digest(tmp_path / DATABASE_NAME)
    with pytest.raises(StateError, match="unreadable or corrupt .*left as it is") as refused:
        StateStore(str(tmp_path))
    assert refused.value.exit_code == 2
    assert digest(tmp_path / DATABASE_NAME) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DATABASE_NAME, "coordinator.lock"])


def test_a_database_with_a_damaged_page_is_refused_and_kept(tmp_path):
    with StateStore(str(tmp_path)) as store:
        store.add_job("job_1", {"name": "j" * 3000}, b"c" * 20_000, "c", 0.0)
        store.commit_tasks("job_1", [map_commit(i) for i in range(200)])
    path = tmp_path / DATABASE_NAME
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size * 2: page_size * 2 + 200] = b"\xa5" * 200  # the third page: a table's b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="unreadable or corrupt"):
        StateStore(str(tmp_path))
    assert path.read_bytes() == bytes(data)


def test_an_sqlite_database_that_is_not_pymrs_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="not a pymr state database .*invoices"):
        StateStore(str(tmp_path))


def test_a_state_dir_that_cannot_be_used_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="is a file, not a folder"):
        StateStore(str(tmp_path / "file"))
    (tmp_path / "dir" / DATABASE_NAME).mkdir(parents=True)
    with pytest.raises(StateError, match=f"cannot open the state database .*{DATABASE_NAME}"):
        StateStore(str(tmp_path / "dir"))
