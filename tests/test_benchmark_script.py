"""scripts/benchmark.py itself: the rounds, the checks of every output, and --against.

How fast pymr is lives in the benchmark; this only checks that the benchmark measures
what it says, on a tiny corpus."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_against_runs_both_commits_in_the_same_rounds_and_checks_their_outputs(tmp_path):
    report = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--tasks", "wordcount", "--systems",
         "python,pymr-1,floor", "--processes", "1", "--size", "1M", "--repeat", "2", "--against", "HEAD",
         "--work-dir", str(tmp_path), "--markdown", str(report)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    for system in ("pymr-1", "pymr-1@HEAD", "floor"):  # every output checked against the baseline's
        assert re.search(rf"^\| wordcount \| {re.escape(system)} \|.*\| identical \|", text, re.M), text
    ratios = re.search(r"`pymr-1` / `pymr-1@HEAD`: wall round by round (\S+), (\S+) \(median", text)
    assert ratios, text  # one ratio per round, each pair measured side by side
    floor = re.search(r"`pymr-1` / `floor` \(1 processes\).*round by round (\S+), (\S+) \(median", text)
    assert floor, text
    assert list(tmp_path.glob("pymr-bench-*")) == []  # its temporary folder is gone
