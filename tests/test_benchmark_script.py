"""scripts/benchmark.py itself: the rounds, the checks of every output, and --against.

How fast pymr is lives in the benchmark; this only checks that the benchmark measures
what it says, on a tiny corpus."""

from __future__ import annotations

import collections
import importlib.util
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
         "python,pymr-1,floor,floor-mr", "--processes", "1", "--size", "1M", "--repeat", "2", "--against", "HEAD",
         "--work-dir", str(tmp_path), "--markdown", str(report)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    for system in ("pymr-1", "pymr-1@HEAD", "floor", "floor-mr"):  # every output checked against the baseline's
        assert re.search(rf"^\| wordcount \| {re.escape(system)} \|.*\| identical \|", text, re.M), text
    ratios = re.search(r"`pymr-1` / `pymr-1@HEAD`: wall round by round (\S+), (\S+) \(median", text)
    assert ratios, text  # one ratio per round, each pair measured side by side
    for pair in ("`pymr-1` / `floor`", "`pymr-1` / `floor-mr`", "`floor-mr` / `floor`"):
        assert re.search(rf"{pair} \(1 processes\).*round by round (\S+), (\S+) \(median", text), text
    assert list(tmp_path.glob("pymr-bench-*")) == []  # its temporary folder is gone


def test_the_mapreduce_floor_partitions_sorts_and_reduces_every_word_once(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "benchmark", benchmark)  # its Pool's tasks are found by module name
    spec.loader.exec_module(benchmark)
    monkeypatch.setattr(benchmark, "PROCESSES", 2)
    text = "".join(f"w{i % 97} x{i % 13} u{i} naïve\tthe end\n" for i in range(5000))  # u{i}: once
    source = tmp_path / "in.txt"
    source.write_text(text, encoding="utf-8")
    benchmark.wc_floor_mr(str(source), str(tmp_path / "out"), 20_000, str(tmp_path))  # several maps
    parts = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in parts] == ["part-00000", "part-00001"]
    counts = collections.Counter()
    for part in parts:
        words = [line.split("\t")[0] for line in part.read_text(encoding="utf-8").splitlines()]
        assert words == sorted(words)  # each part sorted by key
        pairs = (line.split("\t") for line in part.read_text(encoding="utf-8").splitlines())
        counts.update({word: int(n) for word, n in pairs})
    assert counts == collections.Counter(text.split())  # every word once, in one part, with its total
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("floor-mr-")] == []
