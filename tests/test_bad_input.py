"""Input that changes while the job runs, and an output folder that the input would include."""

from __future__ import annotations

import pytest
from conftest import TEST_JOBS

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

