"""Multi-step jobs: the same result as the steps run as separate jobs; errors name the step."""

from __future__ import annotations

import json
import shutil

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
    shutil.rmtree(result.output_dir)  # a run without output= leaves its result in a temporary folder for us


def halving_input(tmp_path):
    numbers = {"a": 1000, "b": 5, "c": 1, "d": 64}
    path = tmp_path / "numbers.txt"
    path.write_text("".join(f"{k} {v}\n" for k, v in numbers.items()))
    return path


def test_repeated_step_runs_until_its_counters_say_stop(pymr, tmp_path):
    numbers = halving_input(tmp_path)
    for mode in (["-w", "2"], ["--inline"]):
        out = tmp_path / f"out{len(mode)}"
        pymr.run("submit", TEST_JOBS / "halve_until_small.py", numbers, "-o", out, "--output-format", "jsonl",
                 *mode, check=True)
        assert sorted(jsonl_pairs(out)) == [["a", 1], ["b", 1], ["c", 1], ["d", 1]]
        report = json.loads((out / "_REPORT.json").read_text())
        rounds = [s["round"] for s in report["steps"] if "round" in s]
        # 1000 needs 9 halvings to reach 1; the 9th round is the first with nothing above one
        assert rounds == list(range(1, 10))
        assert report["steps"][-1]["step"] == 2 and "round" not in report["steps"][-1]  # the copy into OUT
        assert sorted(p.name for p in out.iterdir()) == ["_REPORT.json", "_SUCCESS", "part-00000", "part-00001"]
        assert not list(tmp_path.glob(".pymr-steps-*"))


def test_repeated_step_stops_at_max_rounds_and_feeds_a_later_step(pymr, tmp_path):
    numbers = halving_input(tmp_path)
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "halve_until_small.py", numbers, "-o", out, "--max-rounds", "3", "--then-sum",
             "-w", "2", check=True)
    # three rounds: 1000 -> 125, 5 -> 1 (then stays), 1 -> 1, 64 -> 8
    assert (out / "part-00000").read_text() == "total\t135\n"
    report = json.loads((out / "_REPORT.json").read_text())
    assert [(s["step"], s.get("round")) for s in report["steps"]] == [(1, None), (2, 1), (2, 2), (2, 3), (3, None)]


def test_failure_in_a_round_names_step_and_round(pymr, tmp_path):
    numbers = halving_input(tmp_path)
    out = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "halve_until_small.py", numbers, "-o", out, "--fail-at", "16",
                      "-w", "2", "--max-attempts", "1")
    assert result.returncode == 1
    # 64 reaches 16 in round 2
    assert "step 2 of 2, round 2, reduce task" in result.stderr and "d reached 16" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".pymr-steps-*"))


def test_repeat_while_that_raises_is_a_clear_error(pymr, tmp_path):
    out = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "halve_until_small.py", halving_input(tmp_path), "-o", out,
                      "--bad-test", "--inline")
    assert result.returncode != 0
    assert "step 2 of 2, round 1: repeat_while raised KeyError" in result.stderr
    assert not out.exists()


def test_step_rejects_max_rounds_without_a_test():
    import pytest

    import pymr as api

    with pytest.raises(ValueError, match="needs repeat_while"):
        api.Step(max_rounds=3)
    with pytest.raises(ValueError, match="at least once"):
        api.Step(repeat_while=bool, max_rounds=0)


def test_total_order_on_a_multi_step_job_is_refused(tmp_path):
    import pytest

    import pymr as api

    class Sorted(api.Job):
        total_order = True

        def steps(self):
            return [api.Step(map=self.split), api.Step(reduce=self.first)]

        def split(self, _, line):
            yield line, 1

        def first(self, key, values):
            yield key, next(values)

    data = tmp_path / "in.txt"
    data.write_text("b\na\n")
    with pytest.raises(api.PymrError, match="total_order applies to one-step jobs"):
        Sorted.run([str(data)], output=str(tmp_path / "out"), inline=True)
    assert not (tmp_path / "out").exists()
