"""Memory stays bounded: with a small sort buffer, a worker's task process peaks at about
the same RSS over an input 4x larger (spills take the rest). Real worker processes; the
peak is the task process's own ru_maxrss, reported in the job's report."""

from __future__ import annotations

import json
import random

import pytest

from conftest import JOBS

pytestmark = pytest.mark.slow


def write_distinct_words(path, megabytes: int, seed: int) -> None:
    """Lines of mostly distinct words, so combining cannot shrink the map output."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        written = 0
        while written < megabytes * 1024 * 1024:
            line = " ".join(f"w{rng.getrandbits(40):x}" for _ in range(12)) + "\n"
            f.write(line)
            written += len(line)


def peak_rss(pymr, data, out, buffer: str) -> float:
    pymr.run("submit", JOBS / "wordcount.py", data, "-o", out, "-w", "1", "-r", "2", "--sort-buffer", buffer,
             "--split-size", "1G", "-q", check=True)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["counters"]["pymr"]["spilled records"] > report["counters"]["pymr"]["map output records"] / 2
    return report["peak_task_rss_mib"]


def test_worker_memory_does_not_grow_with_input(pymr, tmp_path):
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    write_distinct_words(small, 3, seed=1)
    write_distinct_words(large, 12, seed=2)
    small_peak = peak_rss(pymr, small, tmp_path / "o1", "4M")
    large_peak = peak_rss(pymr, large, tmp_path / "o2", "4M")
    print(f"peak task RSS: {small_peak} MiB (3 MiB input), {large_peak} MiB (12 MiB input)")
    assert large_peak < 512, f"a task process peaked at {large_peak} MiB"
    assert large_peak < small_peak * 1.5, f"peak RSS grew with input: {small_peak} -> {large_peak} MiB"
