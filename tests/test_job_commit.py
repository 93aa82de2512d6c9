"""The job commit (pymr/outputs.py): resumable after a crash at any point, and undone when it fails.

A crash is a real process that dies (``os._exit``, as under ``kill -9``) at a named point
of ``commit_job``, chosen by the test-only ``PYMR_TEST_COMMIT_FAULT``; a fresh process
then runs ``commit_job`` again for the same folder and job id, as a restarted
coordinator does. A full disk is a real one: a small tmpfs mounted for the test (this
needs root; the test is skipped without it) and filled so that the parts fit but the
report does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, TEST_JOBS, mounted_tmpfs, text_pairs

from pymr.outputs import COMMIT_FAULT_ENV

PARTS = {"part-00000": "apple\t3\n", "part-00001": "banana\t1\nberry\t2\n", "part-00002": "cherry\t7\n"}
OLD = {"part-00000": "old\t1\n", "part-00003": "older\t2\n", "_REPORT.json": "{}\n", "_SUCCESS": ""}

# One process of a job's life seen by its committer: "start" sets the folder up, commits
# each part as a task would, then commits the job; "resume" is a restarted coordinator's
# fresh committer, told the task commits again (an object store's committer holds them in memory).
DRIVER = r"""
import json, os, sys
from pymr import storage
from pymr.outputs import output_committer
phase, output, job_id, overwrite, parts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", json.loads(sys.argv[5])
committer = output_committer(storage.normalize(output), job_id)
if phase == "start":
    committer.setup(overwrite)
for index, (name, text) in enumerate(sorted(parts.items())):
    attempt = f"{job_id}-r{index:05d}-0"
    if phase == "start":
        folder = committer.attempt_dir(attempt)
        storage.makedirs(folder)
        local = os.path.join(os.environ["TMPDIR"], f"{attempt}-{name}")
        with open(local, "w") as f:
            f.write(text)
        storage.upload(local, storage.join(folder, name))
        committer.commit_task(attempt, [name])
    else:
        committer.recover_task(attempt, [name])
committer.commit_job({"job_id": job_id, "state": "succeeded"})
"""

LOCAL_POINTS = ["prepared", "plan", "part-1", "part-2", "part-3", "report", "temporary"]
REMOTE_POINTS = ["prepared", "plan", "part-1", "report", "temporary"]


def drive(phase: str, output: str, job_id: str, overwrite: bool, tmp_path: Path, fault: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != COMMIT_FAULT_ENV}
    env["TMPDIR"] = str(tmp_path)
    if fault:
        env[COMMIT_FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-c", DRIVER, phase, output, job_id, "1" if overwrite else "0",
                           json.dumps(PARTS)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)


def local_files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_final(files: dict[str, str], job_id: str) -> None:
    """Exactly this job's parts, its report and ``_SUCCESS``: nothing of the old output, no ``_temporary``."""
    assert sorted(files) == sorted([*PARTS, "_REPORT.json", "_SUCCESS"]), sorted(files)
    assert {name: files[name] for name in PARTS} == PARTS
    assert json.loads(files["_REPORT.json"])["job_id"] == job_id


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("point", LOCAL_POINTS)
def test_local_job_commit_resumes_after_a_crash(tmp_path, point, overwrite):
    output = tmp_path / "out"
    if overwrite:
        output.mkdir()
        for name, text in OLD.items():
            (output / name).write_text(text)
    job_id = f"job_{uuid.uuid4().hex[:8]}"
    crashed = drive("start", str(output), job_id, overwrite, tmp_path, fault=point)
    assert crashed.returncode == 99, f"no crash at {point}: {crashed.returncode}\n{crashed.stderr}"
    assert not (output / "_SUCCESS").exists(), "_SUCCESS before the commit ended"
    assert (output / "_temporary").exists()
    resumed = drive("resume", str(output), job_id, overwrite, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    check_final(local_files(output), job_id)
    again = drive("resume", str(output), job_id, overwrite, tmp_path)  # a commit that had ended: nothing changes
    assert again.returncode == 0, again.stderr
    check_final(local_files(output), job_id)


def test_job_commit_of_an_unknown_job_fails_and_changes_nothing(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    for name, text in OLD.items():
        (output / name).write_text(text)
    result = drive("resume", str(output), "job_never_started", False, tmp_path)
    assert result.returncode == 1 and "nothing to commit" in result.stderr, result.stderr
    assert local_files(output) == OLD


# -- S3 (moto) -------------------------------------------------------------------------------
try:
    from test_storage_s3 import s3  # the moto server fixture
except pytest.skip.Exception:  # no moto: the S3 tests below are skipped
    s3 = None


def s3_files(server, key: str) -> dict[str, str]:
    return {name: server.read(f"{key}/{name}").decode() for name in server.names(key)}


@pytest.mark.skipif(s3 is None, reason="needs the test extra (moto[server])")
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("point", REMOTE_POINTS)
def test_s3_job_commit_resumes_after_a_crash(s3, tmp_path, point, overwrite):
    key = f"t-{uuid.uuid4().hex[:10]}"
    if overwrite:
        for name, text in OLD.items():
            s3.put(f"{key}/out/{name}", text.encode())
    output = s3.uri(f"{key}/out")
    job_id = f"job_{uuid.uuid4().hex[:8]}"
    crashed = drive("start", output, job_id, overwrite, tmp_path, fault=point)
    assert crashed.returncode == 99, f"no crash at {point}: {crashed.returncode}\n{crashed.stderr}"
    assert "_SUCCESS" not in s3.names(f"{key}/out"), "_SUCCESS before the commit ended"
    resumed = drive("resume", output, job_id, overwrite, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    check_final(s3_files(s3, f"{key}/out"), job_id)


# -- a full disk ---------------------------------------------------------------------------------
PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted at the end (root only)."""
    with mounted_tmpfs(tmp_path / "disk", "size=2m") as mount_point:
        yield mount_point


def fill(disk: Path, leave_pages: int) -> None:
    """Fill the disk but ``leave_pages`` pages."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * (free - leave_pages * PAGE))
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize == leave_pages * PAGE


@pytest.mark.parametrize("spare_pages", [0, 1], ids=["full-at-plan", "full-at-report"])
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("mode", [["--workers", "1"], ["--inline"]], ids=["local", "inline"])
def test_disk_full_in_the_job_commit_leaves_the_output_as_it_was(pymr, small_disk, tmp_path, overwrite, spare_pages,
                                                                 mode):
    """The parts fit on the disk, and the commit plan (a page) or not; the report does not:
    the job fails (exit 1, saying the disk is full), and the output folder is as before:
    absent, or the old output."""
    words = tmp_path / "in.txt"
    words.write_text("one two three two three three\n" * 50)
    job = TEST_JOBS / "sort_words.py"
    output = small_disk / "out"
    reference = tmp_path / "reference"
    pymr.run("submit", job, words, "-o", reference, "--workers", "1", "-q", check=True)
    part_pages = sum(-(-p.stat().st_size // PAGE) for p in reference.iterdir() if p.name.startswith("part-"))
    old: dict[str, str] = {}
    if overwrite:
        pymr.run("submit", job, words, "-o", output, "--workers", "1", "-q", check=True)
        old = local_files(output)
    fill(small_disk, part_pages + spare_pages)
    result = pymr.run("submit", job, words, "-o", output, *mode, "-q", *(["--overwrite"] * overwrite))
    assert result.returncode == 1, result.stderr
    assert "failed: job commit failed: [Errno 28] No space left on device" in result.stderr, result.stderr
    if overwrite:
        assert local_files(output) == old
        assert text_pairs(output) == text_pairs(reference)
    else:
        assert not output.exists(), local_files(output)


def test_a_job_commit_missing_a_part_a_task_committed_fails_and_publishes_nothing(tmp_path):
    """The coordinator names the parts its tasks committed: a job never succeeds with part
    of its output (a rename that did not happen, a file deleted under it)."""
    from pymr.outputs import OutputCommitter

    committer = OutputCommitter(str(tmp_path / "out"), "job_x")
    committer.setup(overwrite=False)
    for part in ("part-00000", "part-00001"):
        attempt = committer.attempt_dir(f"job_x-r{part[-5:]}-0")
        os.makedirs(attempt)
        (Path(attempt) / part).write_text("a\t1\n")
    committer.commit_task("job_x-r00000-0", ["part-00000"])  # part 1's commit never happened
    with pytest.raises(FileNotFoundError, match="part-00001 missing"):
        committer.commit_job({"job_id": "job_x"}, expected=["part-00000", "part-00001"])
    committer.abort_job()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
