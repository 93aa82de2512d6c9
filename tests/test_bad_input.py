"""Input that changes while the job runs, and an output folder that the input would include."""

from __future__ import annotations

import time
import uuid

import pytest
from conftest import JOBS, TEST_JOBS

from pymr.errors import InputChanged
from pymr.inputs import plan_splits, unchanged_input

LINES = "".join(f"line {i} has some words in it\n" for i in range(2000))  # 62 KB: 8 splits of 8K


@pytest.mark.parametrize("change", ["truncate", "rewrite"])
@pytest.mark.parametrize("mode", [["--workers", "2"], ["--inline"]], ids=["local", "inline"])
def test_input_that_changes_while_the_job_runs_fails_the_job(pymr, tmp_path, change, mode):
    """The first map cuts its file in half (or writes it again, same size): the job fails
    at once, naming the file, and commits nothing (it used to commit a partial count, exit 0)."""
    words = tmp_path / "words.txt"
    words.write_text(LINES)
    output = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "changes_its_input.py", words, "-o", output, "--split-size", "8K",
                      "--change", change, "-q", *mode)
    assert result.returncode == 1, result.stderr
    assert f"input {words} changed while the job ran" in result.stderr, result.stderr
    if mode[0] == "--workers":
        assert "failed after 1 attempt(s)" in result.stderr, result.stderr  # not retried
    assert not output.exists()



def test_output_inside_an_input_folder_is_refused_at_submit(pymr, tmp_path):
    """``-o in/out`` with input ``in`` is refused (exit 2, saying why) before anything is
    written; it used to run once, then fail every rerun with --overwrite after 4 attempts
    (the old output was listed as input, then moved away). A hidden name (``in/_out``) is
    left out of the input listing and reruns fine."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("x y x\n")
    wordcount = JOBS / "wordcount.py"
    for given in [folder, f"{folder}/*"]:
        result = pymr.run("submit", wordcount, given, "-o", folder / "out", "--overwrite", "-q", "--workers", "1")
        assert result.returncode == 2, result.stderr
        assert f"the output folder {folder / 'out'} is inside the input {given}" in result.stderr, result.stderr
        assert not (folder / "out").exists()
    for _ in range(2):
        pymr.run("submit", wordcount, folder, "-o", folder / "_out", "--overwrite", "-q", "--workers", "1", check=True)
        assert (folder / "_out" / "part-00000").read_text() == "x\t2\ny\t1\n"


def test_input_inside_the_output_folder_is_refused_at_submit(pymr, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "part-00000").write_text("x\t1\n")
    wordcount = JOBS / "wordcount.py"
    result = pymr.run("submit", wordcount, output / "part-00000", "-o", output, "--overwrite", "-q", "--inline")
    assert result.returncode == 2, result.stderr
    assert "is inside the output folder" in result.stderr, result.stderr
    assert (output / "part-00000").read_text() == "x\t1\n"


try:
    from test_storage_s3 import s3  # the moto server fixture
except pytest.skip.Exception:  # no moto: the S3 test below is skipped
    s3 = None


@pytest.mark.skipif(s3 is None, reason="needs the test extra (moto[server])")
def test_an_object_replaced_while_the_job_runs_is_seen(s3, tmp_path):
    """On S3 the object's size and last-modified time are recorded, and a task of a split
    planned before the object was replaced fails (same size: only the time tells)."""
    key = f"t-{uuid.uuid4().hex[:10]}/words.txt"
    s3.put(key, LINES.encode())
    splits = plan_splits([s3.uri(key)], 8192)
    assert len(splits) == 8 and {s.file_size for s in splits} == {len(LINES)}
    with unchanged_input(splits[3]):
        pass  # nothing changed: the task runs
    time.sleep(1.1)  # S3's last-modified time counts seconds
    s3.put(key, LINES.upper().encode())
    with pytest.raises(InputChanged, match=r"input s3://.*/words.txt changed while the job ran \(same size"), \
            unchanged_input(splits[3]):
        pass
