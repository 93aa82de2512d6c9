"""Multi-step jobs: the same result as the steps run as separate jobs; errors name the step."""

from __future__ import annotations

import json

from conftest import JOBS, SAMPLE, TEST_JOBS, read_parts

BOOKS = [SAMPLE / "us-declaration-and-constitution.txt", SAMPLE / "python-tutorial.txt"]


def jsonl_pairs(folder):
    return [json.loads(line) for lines in read_parts(folder) for line in lines]


def test_multi_step_job_matches_separate_jobs(pymr, tmp_path):
    separate_1, separate_2 = tmp_path / "s1", tmp_path / "s2"
    pymr.run("submit", JOBS / "wordcount.py", *BOOKS, "-o", separate_1, "-r", "3", "--output-format", "jsonl",
             "-w", "2", check=True)
    # the same word split as step 1 of top_words.py: plain str.split(), no lowercasing
    step1 = tmp_path / "plain_wordcount.py"
    step1.write_text("import pymr\nclass W(pymr.Job):\n    def map(self, k, line):\n"
                     "        for w in line.split():\n            yield w, 1\n"
                     "    def reduce(self, w, c):\n        yield w, sum(c)\n")
    pymr.run("submit", step1, *BOOKS, "-o", tmp_path / "p1", "-r", "3", "--output-format", "jsonl", "-w", "2",
             check=True)
    pymr.run("submit", TEST_JOBS / "invert_counts.py", f"jsonl:{tmp_path / 'p1'}", "-o", separate_2,
             "--output-format", "jsonl", "-w", "2", check=True)
    for mode in (["-w", "2"], ["--inline"]):
        out = tmp_path / f"steps{len(mode)}"
        result = pymr.run("submit", TEST_JOBS / "top_words.py", *BOOKS, "-o", out, "--output-format", "jsonl",
                          *mode, check=True)
        assert jsonl_pairs(out) == jsonl_pairs(separate_2)
        assert sorted(p.name for p in out.iterdir()) == ["_REPORT.json", "_SUCCESS", "part-00000"]
        report = json.loads((out / "_REPORT.json").read_text())
        assert len(report["steps"]) == 2  # the job's report covers every step
        assert report["counters"]["words by count"]["groups"] == len(jsonl_pairs(out))
        assert not list(tmp_path.glob(".pymr-steps-*")), "scratch folders of the steps must be removed"
        assert "succeeded" in result.stderr


def test_multi_step_error_names_the_step(pymr, tmp_path):
    out = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "top_words.py", BOOKS[0], "-o", out, "--fail-in-step2", "-w", "2",
                      "--max-attempts", "1")
    assert result.returncode == 1
    assert "step 2 of 2, reduce task 0 failed" in result.stderr
    assert "step two cannot take count" in result.stderr and "top_words.py" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".pymr-steps-*"))


def test_multi_step_from_python_sums_counters(tmp_path):
    import pymr as api

    job = api.load_job_class(TEST_JOBS / "top_words.py")
    result = job.run([str(b) for b in BOOKS], workers=2)
    pairs = dict((count, words) for count, words in result)
    assert result.counters["words by count"]["groups"] == len(pairs)
    total = sum(count * len(words) for count, words in pairs.items())
    assert total == sum(len(b.read_text(encoding="utf-8").split()) for b in BOOKS)
    assert len(result.report["steps"]) == 2
