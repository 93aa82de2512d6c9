"""Side files reach every task by a local path, in local and inline modes, files and folders."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import SAMPLE, TEST_JOBS, text_pairs

BOOK = SAMPLE / "kjv-pentateuch.txt"


@pytest.mark.parametrize("mode", [["-w", "2"], ["--inline"]])
def test_side_files_and_folders_reach_every_task(pymr, tmp_path, mode):
    stop = tmp_path / "stop.txt"
    stop.write_text("the and of\n")
    more = tmp_path / "more"
    more.mkdir()
    (more / "a.txt").write_text("And\n")
    (more / "b.txt").write_text("unto\n")
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "stopwords.py", BOOK, "-o", out, "--file", stop, "--file", more,
             "--split-size", "128K", *mode, check=True)
    expected = Counter(w for w in BOOK.read_text().split() if w not in {"the", "and", "of", "And", "unto"})
    assert {k: int(v) for k, v in text_pairs(out).items()} == dict(expected)


def test_missing_side_file_is_a_clear_error(pymr, tmp_path):
    result = pymr.run("submit", TEST_JOBS / "stopwords.py", BOOK, "-o", tmp_path / "out", "--file",
                      tmp_path / "nope.txt", "-w", "1")
    assert result.returncode == 2 and f"side file not found: {tmp_path / 'nope.txt'}" in result.stderr
    assert not (tmp_path / "out").exists()
