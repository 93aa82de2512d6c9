"""Input that changes while the job runs, and an output folder that the input would include."""

from __future__ import annotations

import pytest
from conftest import JOBS, TEST_JOBS

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
