"""End to end through `python -m pymr submit`: real worker processes, real sockets, real files."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import JOBS, SAMPLE, TEST_JOBS, read_parts, reference_word_counts, text_pairs, interrupt_when_running

import pymr
from pymr import progress
from pymr.tasks import run_task

BOOKS = sorted(SAMPLE.iterdir())


def test_wordcount_local_mode_matches_reference(pymr, tmp_path):
    out = tmp_path / "wc"
    result = pymr.run("submit", JOBS / "wordcount.py", SAMPLE, "-o", out, "--workers", "2", "--reducers", "4",
                      "--split-size", "1M", check=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_REPORT.json", "_SUCCESS", "part-00000", "part-00001", "part-00002", "part-00003"]
    expected = reference_word_counts(BOOKS)
    got = {word: int(count) for word, count in text_pairs(out).items()}
    assert got == dict(expected)
    for lines in read_parts(out):
        keys = [line.split("\t")[0] for line in lines]
        assert keys == sorted(keys), "keys must be sorted within a part file"
    assert "succeeded" in result.stderr and "shuffle" in result.stderr
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["map_tasks"] > len(BOOKS)  # 1M splits cut the bigger books
    assert report["counters"]["pymr"]["reduce output records"] == len(expected)


def test_inverted_index_matches_reference(pymr, tmp_path):
    out = tmp_path / "index"
    pymr.run("submit", JOBS / "inverted_index.py", SAMPLE, "-o", out, "-w", "2", "-r", "3", check=True)
    expected = defaultdict(set)
    for path in BOOKS:
        for word in path.read_text(encoding="utf-8").split():
            expected[word].add(str(path))
    got = {word: json.loads(files) for word, files in text_pairs(out).items()}
    assert got == {word: sorted(files) for word, files in expected.items()}


def test_grep_is_map_only_with_a_pattern_option(pymr, tmp_path):
    out = tmp_path / "grep"
    pymr.run("submit", JOBS / "grep.py", SAMPLE, "-o", out, "--pattern", r"whale|Noah", "-w", "2", check=True)
    got = sorted(line for lines in read_parts(out) for line in lines)
    expected = sorted(line for path in BOOKS for line in path.read_text(encoding="utf-8").splitlines()
                      if "whale" in line or "Noah" in line)
    assert got == expected and len(expected) > 10
    missing = pymr.run("submit", JOBS / "grep.py", SAMPLE, "-o", tmp_path / "g2")
    assert missing.returncode == 2 and "--pattern" in missing.stderr


def test_inline_and_local_give_identical_output(pymr, tmp_path):
    args = ["--reducers", "3", "--split-size", "128K"]
    books = [SAMPLE / "python-tutorial.txt", SAMPLE / "copyright-does-not-exist.txt"]
    pymr.run("submit", TEST_JOBS / "unicode_keys.py", *books, "-o", tmp_path / "local", "-w", "2", *args, check=True)
    pymr.run("submit", TEST_JOBS / "unicode_keys.py", *books, "-o", tmp_path / "inline", "--inline", *args,
             check=True)
    local, inline = read_parts(tmp_path / "local"), read_parts(tmp_path / "inline")
    assert local == inline and len(local) == 3
    assert any(line.startswith("null\t") for lines in local for line in lines)


def test_jsonl_output_format(pymr, tmp_path):
    out = tmp_path / "j"
    pymr.run("submit", TEST_JOBS / "unicode_keys.py", SAMPLE, "-o", out, "--output-format", "jsonl", "-w", "2",
             check=True)
    pairs = [json.loads(line) for lines in read_parts(out) for line in lines]
    assert all(isinstance(p, list) and len(p) == 2 for p in pairs)
    assert [None, sum(1 for path in BOOKS for line in path.read_text(encoding="utf-8").splitlines() if line)] in pairs


def test_failing_map_fails_cleanly_with_the_users_traceback(pymr, tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("fine\nthis will FAIL\nfine too\n")
    out = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "failing.py", data, "-o", out, "-w", "2")
    assert result.returncode == 1
    assert "failing.py" in result.stderr and "line 8" in result.stderr  # the user's file and line
    assert "ValueError: cannot handle line 'this will FAIL'" in result.stderr
    assert "map task 0" in result.stderr and str(data) in result.stderr  # which task and split
    assert "after 4 attempt(s)" in result.stderr
    assert not out.exists(), "a failed job must leave no output folder behind"


def test_failing_map_inline_names_the_task(pymr, tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("FAIL\n")
    result = pymr.run("submit", TEST_JOBS / "failing.py", data, "-o", tmp_path / "out", "--inline")
    assert result.returncode == 1 and "map task 0" in result.stderr and "failing.py" in result.stderr
    assert not (tmp_path / "out").exists()


def test_task_that_fails_once_is_retried(pymr, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "fail_once.py", SAMPLE, "-o", out, "-w", "2", "--marker-dir", markers, check=True)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["failed_attempts"] == len(BOOKS) and (out / "_SUCCESS").exists()
    counts = {k: int(v) for k, v in text_pairs(out).items()}
    expected = defaultdict(int)
    for path in BOOKS:
        for word in path.read_text(encoding="utf-8").split():
            expected[word] += 1
    assert counts == expected


def test_worker_process_that_dies_is_replaced(pymr, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    books = [SAMPLE / "python-tutorial.txt", SAMPLE / "us-declaration-and-constitution.txt"]
    result = pymr.run("submit", TEST_JOBS / "fail_once.py", *books, "-o", out, "-w", "2", "--marker-dir", markers,
                      "--crash", check=True)
    assert (out / "_SUCCESS").exists(), result.stderr
    assert sum(int(v) for v in text_pairs(out).values()) == sum(len(p.read_text().split()) for p in books)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["failed_attempts"] == 2


def test_tasks_run_at_the_same_time_in_different_processes(pymr, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    for i in range(4):
        (data / f"{i}.txt").write_text(f"line {i}\n")
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "spans.py", data, "-o", out, "-w", "2", "-r", "2", "--output-format", "jsonl",
             check=True)
    spans = defaultdict(list)
    for lines in read_parts(out):
        for line in lines:
            (kind, _), [pid, start, end] = json.loads(line)
            spans[kind].append((pid, start, end))
    for kind in ("map", "reduce"):
        runs = spans[kind]
        assert len({pid for pid, _, _ in runs}) == 2, f"{kind} tasks should run in two processes: {runs}"
        overlapping = any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in runs for b in runs)
        assert overlapping, f"no two {kind} tasks overlapped in time: {runs}"
    assert min(s for _, s, _ in spans["reduce"]) >= max(e for _, _, e in spans["map"]), "reduces start after maps"


def test_interrupt_cancels_cleanly(pymr, tmp_path):
    out = tmp_path / "out"
    proc = pymr.popen("submit", TEST_JOBS / "spans.py", SAMPLE, "-o", out, "-w", "2", "--sleep", "30")
    err = interrupt_when_running(proc, out)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists()


def test_existing_output_is_refused_unless_overwrite(pymr, tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("a b a\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("keep me")
    refused = pymr.run("submit", JOBS / "wordcount.py", data, "-o", out, "-w", "1")
    assert refused.returncode == 2 and "already exists" in refused.stderr and "--overwrite" in refused.stderr
    assert (out / "old").read_text() == "keep me"
    pymr.run("submit", JOBS / "wordcount.py", data, "-o", out, "-w", "1", "--overwrite", check=True)
    assert not (out / "old").exists() and text_pairs(out) == {"a": "2", "b": "1"}


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("mode", [["-w", "2"], ["--inline"]])
def test_failed_overwrite_puts_the_old_output_back(pymr, tmp_path, mode):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("a b\nc d\n")
    bad.write_text("a b\nFAIL c\n")
    out = tmp_path / "out"
    job = TEST_JOBS / "failing_reduce.py"
    pymr.run("submit", job, good, "-o", out, "--reducers", "2", *mode, check=True)
    (out / "notes").mkdir()
    (out / "notes" / "mine.txt").write_text("kept")
    before = _tree(out)
    assert "_SUCCESS" in before and "part-00001" in before
    failed = pymr.run("submit", job, bad, "-o", out, "--reducers", "3", "--overwrite", "--max-attempts", "1", *mode)
    assert failed.returncode == 1 and "reduce cannot handle FAIL" in failed.stderr
    assert _tree(out) == before  # parts, report, _SUCCESS and the user's folder, as they were; no _temporary
    pymr.run("submit", job, good, "-o", out, "--reducers", "1", "--overwrite", *mode, check=True)
    after = _tree(out)
    assert "notes" not in after and "part-00001" not in after and "_temporary" not in after
    assert text_pairs(out) == {w: "1" for w in "abcd"}


def test_overwrite_that_cannot_set_the_old_output_aside_leaves_it_whole(tmp_path, monkeypatch):
    """A mount point inside the output cannot be renamed; it is faked here (mounting needs
    privileges a test should not use) by making the rename of one entry fail."""
    from pymr.outputs import OutputCommitter

    out = tmp_path / "out"
    out.mkdir()
    for name in "abc":
        (out / name).write_text(name)
    rename = os.replace

    def rename_except_b(source, target):
        if os.path.basename(source) == "b" and "previous" in str(target):
            raise OSError(16, "Device or resource busy", source)
        return rename(source, target)

    monkeypatch.setattr(os, "replace", rename_except_b)
    with pytest.raises(OSError, match="busy"):
        OutputCommitter(str(out), "job_1").setup(overwrite=True)
    assert _tree(out) == {"a": b"a", "b": b"b", "c": b"c"}


@pytest.mark.parametrize("make_input, message", [
    (lambda d: d / "missing.txt", "does not exist"),
    (lambda d: (d / "empty.txt").write_text("") and d / "empty.txt" or d / "empty.txt", "input is empty"),
    (lambda d: (d / "emptydir").mkdir() or d / "emptydir", "no input files"),
    (lambda d: str(d / "*.nothing"), "matches no file"),
])
def test_bad_inputs_are_clear_errors(pymr, tmp_path, make_input, message):
    target = make_input(tmp_path)
    result = pymr.run("submit", JOBS / "wordcount.py", target, "-o", tmp_path / "out", "-w", "1")
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_job_scripts_are_clear_errors(pymr, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import pymr\nclass J(pymr.Job)\n    pass\n")
    result = pymr.run("submit", broken, SAMPLE, "-o", tmp_path / "out")
    assert result.returncode == 2 and "broken.py, line 2: SyntaxError" in result.stderr
    empty = tmp_path / "nojob.py"
    empty.write_text("x = 1\n")
    result = pymr.run("submit", empty, SAMPLE, "-o", tmp_path / "out")
    assert result.returncode == 2 and "defines no subclass of pymr.Job" in result.stderr
    raising = tmp_path / "raising.py"
    raising.write_text("import pymr\nraise ImportError('no such thing')\n")
    result = pymr.run("submit", raising, SAMPLE, "-o", tmp_path / "out")
    assert result.returncode == 2 and "no such thing" in result.stderr and "raising.py" in result.stderr
    two = tmp_path / "two.py"
    two.write_text("import pymr\nclass A(pymr.Job):\n    pass\nclass B(pymr.Job):\n    pass\n")
    result = pymr.run("submit", two, SAMPLE, "-o", tmp_path / "out")
    assert result.returncode == 2 and "--job" in result.stderr
    assert not (tmp_path / "out").exists()


def test_failing_reduce_names_the_users_line_and_the_task(pymr, tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("a b\nFAIL c\n")
    out = tmp_path / "out"
    result = pymr.run("submit", TEST_JOBS / "failing_reduce.py", data, "-o", out, "--inline", "--reducers", "2")
    assert result.returncode == 1
    assert "failing_reduce.py" in result.stderr and "line 20" in result.stderr  # the raise in reduce
    assert "ValueError: reduce cannot handle FAIL" in result.stderr and "reduce task 1" in result.stderr
    assert not out.exists()


def _submit_inline(pymr, tmp_path, job_body: str, data: str):
    """``pymr submit --inline`` of a job class ``J`` with ``job_body``, over one file of ``data``."""
    script = tmp_path / "job.py"
    script.write_text("import pymr\n\nclass J(pymr.Job):\n" + job_body)
    (tmp_path / "in.txt").write_text(data)
    return pymr.run("submit", script, tmp_path / "in.txt", "-o", tmp_path / "out", "--inline")


def test_reduce_that_yields_no_pairs_is_a_clear_error(pymr, tmp_path):
    result = _submit_inline(pymr, tmp_path, "    def map(self, key, line):\n        yield line, 1\n\n"
                            "    def reduce(self, key, values):\n        yield key\n", "ab\n")
    assert result.returncode == 1
    assert "J.reduce must yield (key, value) pairs; it yielded 'ab'" in result.stderr
    assert "reduce task 0" in result.stderr and not (tmp_path / "out").exists()


_NOT_PAIRS = {
    "combine": ("    def map(self, key, line):\n        yield from line.split()\n\n"
                "    def combine(self, key, values):\n        yield key, sum(values)\n"),
    "no combine": "    def map(self, key, line):\n        yield from map(len, line.split())\n",
    "map only": "    def map(self, key, line):\n        yield line\n",
    "map_final": ("    def map(self, key, line):\n        return ()\n\n"
                  "    def map_final(self):\n        yield 'abc'\n"),
    "step": ("    def steps(self):\n        return [pymr.Step(map=self.lines, reduce=self.reduce)]\n\n"
             "    def lines(self, key, line):\n        yield line\n"),
}


@pytest.mark.parametrize("kind", _NOT_PAIRS)
def test_map_that_yields_no_pairs_is_a_clear_error(pymr, tmp_path, kind):
    reduce = "" if kind == "map only" else "\n    def reduce(self, key, values):\n        yield key, len(list(values))\n"
    result = _submit_inline(pymr, tmp_path, _NOT_PAIRS[kind] + reduce, "ab cde\n")
    who = {"map_final": "map_final", "step": "lines"}.get(kind, "map")
    assert result.returncode == 1
    assert f"J.{who} must yield (key, value) pairs; it yielded something else" in result.stderr
    assert "map task 0" in result.stderr and not (tmp_path / "out").exists()


def test_a_users_own_unpacking_error_in_map_stays_the_users(pymr, tmp_path):
    result = _submit_inline(pymr, tmp_path, "    def map(self, key, line):\n        a, b = line.split()\n"
                            "        yield a, b\n", "one two three\n")
    assert result.returncode == 1 and "must yield" not in result.stderr
    assert "job.py" in result.stderr and "ValueError: too many values to unpack" in result.stderr


def test_undecodable_line_fails_or_is_skipped(pymr, tmp_path):
    data = tmp_path / "bad.txt"
    data.write_bytes(b"good line\n\xff\xfe broken\nlast line\n")
    result = pymr.run("submit", JOBS / "wordcount.py", data, "-o", tmp_path / "out", "-w", "1", "--max-attempts", "1")
    assert result.returncode == 1 and "byte offset 10" in result.stderr and str(data) in result.stderr
    pymr.run("submit", JOBS / "wordcount.py", data, "-o", tmp_path / "out", "-w", "1", "--skip-bad-records",
             check=True)
    assert text_pairs(tmp_path / "out") == {"good": "1", "line": "2", "last": "1"}
    report = json.loads((tmp_path / "out" / "_REPORT.json").read_text())
    assert report["counters"]["pymr"]["bad records skipped"] == 1


def test_python_api_runs_and_iterates(tmp_path):
    import pymr

    job = pymr.load_job_class(JOBS / "wordcount.py")
    result = job.run([str(SAMPLE / "us-declaration-and-constitution.txt")], output=str(tmp_path / "o"), workers=2)
    pairs = dict(result)
    assert pairs == dict(reference_word_counts([SAMPLE / "us-declaration-and-constitution.txt"]))
    assert result.counters["pymr"]["reduce output records"] == len(pairs)
    assert result.counter("pymr", "map input records") > 100


def test_a_job_whose_map_yields_nothing_reports_every_reduce_counter_as_zero(tmp_path):
    import pymr

    data = tmp_path / "blank.txt"
    data.write_text("  \n\n\t\n")  # lines, but no words
    job = pymr.load_job_class(JOBS / "wordcount.py")
    result = job.run([str(data)], output=str(tmp_path / "o"), workers=1)
    assert list(result) == []
    framework = result.counters["pymr"]
    assert [framework[name] for name in ("reduce input records", "reduce input groups", "reduce output records")] \
        == [0, 0, 0]


def test_python_api_raises_job_failed_with_the_users_exception(tmp_path):
    import pymr

    data = tmp_path / "in.txt"
    data.write_text("FAIL\n")
    job = pymr.load_job_class(TEST_JOBS / "failing.py")
    with pytest.raises(pymr.JobFailed) as info:
        job.run([str(data)], output=str(tmp_path / "o"), workers=1, max_attempts=2)
    assert isinstance(info.value.__cause__, ValueError)
    assert "failing.py" in info.value.task_error["traceback"]


def test_job_script_runs_on_its_own(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "wc"
    result = subprocess.run([sys.executable, str(JOBS / "wordcount.py"), str(SAMPLE / "kjv-pentateuch.txt"),
                             "-o", str(out), "-w", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (out / "_SUCCESS").exists()
    assert {k: int(v) for k, v in text_pairs(out).items()} == dict(
        reference_word_counts([SAMPLE / "kjv-pentateuch.txt"]))


def test_partitioning_is_stable_across_hash_seeds(pymr, tmp_path):
    outs = []
    for seed in ("0", "1", "987654"):
        pymr.env["PYTHONHASHSEED"] = seed
        out = tmp_path / f"out{seed}"
        pymr.run("submit", JOBS / "wordcount.py", SAMPLE / "kjv-pentateuch.txt", "-o", out, "-w", "2", "-r", "4",
                 "--split-size", "256K", check=True)
        outs.append(read_parts(out))
    assert outs[0] == outs[1] == outs[2]


def test_custom_partition_streaming_values_and_user_counters(pymr, tmp_path):
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "first_letter.py", SAMPLE / "kjv-pentateuch.txt", "-o", out, "-w", "2",
             "--output-format", "jsonl", "--sort-buffer", "64K", check=True)
    parts = read_parts(out)
    first = [json.loads(line)[0] for line in parts[0]]
    second = [json.loads(line)[0] for line in parts[1]]
    assert first and all(k <= "m" for k in first) and all(k > "m" for k in second)
    values = [json.loads(line)[1] for lines in parts for line in lines]
    assert all(kind != "list" for _, kind in values), "reduce must get a stream, not a list"
    words = [w for w in (SAMPLE / "kjv-pentateuch.txt").read_text().split() if w[0].isascii() and w[0].isalpha()]
    assert sum(total for total, _ in values) == len(words)
    report = json.loads((out / "_REPORT.json").read_text())
    assert report["counters"]["letters"]["words seen"] == len(words)
    assert report["counters"]["pymr"]["spilled records"] > 0


def test_tiny_sort_buffer_spills_and_gives_the_same_output(pymr, tmp_path):
    book = SAMPLE / "python-tutorial.txt"
    pymr.run("submit", JOBS / "wordcount.py", book, "-o", tmp_path / "big", "-w", "2", "-r", "2", check=True)
    pymr.run("submit", JOBS / "wordcount.py", book, "-o", tmp_path / "tiny", "-w", "2", "-r", "2",
             "--sort-buffer", "16K", check=True)
    assert read_parts(tmp_path / "big") == read_parts(tmp_path / "tiny")


def test_compressed_inputs_are_read_whole(pymr, tmp_path):
    import bz2
    import gzip

    data = tmp_path / "in"
    data.mkdir()
    text = (SAMPLE / "us-declaration-and-constitution.txt").read_bytes()
    (data / "a.txt.gz").write_bytes(gzip.compress(text))
    (data / "b.txt.bz2").write_bytes(bz2.compress(text))
    with pa.CompressedOutputStream(str(data / "c.txt.zst"), "zstd") as f:
        f.write(text)
    (data / ".hidden.txt").write_text("secret secret\n")
    out = tmp_path / "out"
    pymr.run("submit", JOBS / "wordcount.py", data, "-o", out, "-w", "2", "--split-size", "4K", check=True)
    expected = reference_word_counts([SAMPLE / "us-declaration-and-constitution.txt"])
    assert {k: int(v) for k, v in text_pairs(out).items()} == {k: 3 * v for k, v in expected.items()}
    assert json.loads((out / "_REPORT.json").read_text())["map_tasks"] == 3


def test_parquet_output_reads_as_one_dataset_and_json_report(pymr, tmp_path):
    import pyarrow.dataset as ds

    out = tmp_path / "out"
    result = pymr.run("submit", JOBS / "wordcount.py", SAMPLE / "kjv-pentateuch.txt", "-o", out, "-w", "2", "-r", "3",
                      "--output-format", "parquet", "--json", "-q", check=True)
    report = json.loads(result.stdout)
    assert report["state"] == "succeeded" and report["reduce_tasks"] == 3
    pymr_counters = report["counters"]["pymr"]
    assert report["bytes"] == {"read": (SAMPLE / "kjv-pentateuch.txt").stat().st_size,
                               "shuffled": pymr_counters["shuffle bytes"], "written": pymr_counters["output bytes"]}
    largest = report["largest_reduce_partitions"]
    assert sorted(p["partition"] for p in largest) == [0, 1, 2]
    assert [p["records"] for p in largest] == sorted((p["records"] for p in largest), reverse=True)
    assert sum(p["records"] for p in largest) == pymr_counters["reduce input records"]
    for phase in ("map", "reduce"):
        assert 0 < report["phases"][phase]["wall_s"] <= report["elapsed_s"]
        assert report["phases"][phase]["task_s"] > 0
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-0000{i}.parquet" for i in range(3)]
    table = ds.dataset(out, format="parquet", exclude_invalid_files=True).to_table()
    expected = reference_word_counts([SAMPLE / "kjv-pentateuch.txt"])
    assert table.num_rows == len(expected)
    import pymr as api

    assert table.schema.field("key").type == pa.string() and table.schema.field("value").type == pa.int64()
    assert dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist())) == dict(expected)
    got = dict(api.JobResult(str(out), "parquet", {}, report))
    assert got == dict(expected)


def test_parquet_parts_that_inferred_different_types_are_unified(pymr, tmp_path):
    """Part 0 holds ints, part 1 floats, part 2 nothing, part 3 ints and None: one schema for all."""
    import pyarrow.dataset as ds

    job = tmp_path / "mixed.py"
    job.write_text("import pymr\nclass Mixed(pymr.Job):\n    reducers = 4\n"
                   "    def map(self, _, line):\n        n = int(line)\n"
                   "        yield n, [n * 2, n + 0.5, None, None if n % 2 else n][n % 4]\n"
                   "    def partition(self, key, reducers):\n        return [0, 1, 3, 3][key % 4]\n"
                   "    def reduce(self, key, values):\n        yield key, next(values)\n")
    data = tmp_path / "numbers.txt"
    data.write_text("".join(f"{n}\n" for n in range(12)))
    out = tmp_path / "out"
    pymr.run("submit", job, data, "-o", out, "-w", "2", "--output-format", "parquet", check=True)
    schemas = {str(pq.read_schema(p).remove_metadata()) for p in out.glob("part-*")}
    assert len(schemas) == 1, schemas
    table = ds.dataset(out, format="parquet", exclude_invalid_files=True).to_table()
    assert table.schema.field("key").type == pa.int64() and table.schema.field("value").type == pa.float64()
    got = dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist()))
    assert got == {n: [n * 2, n + 0.5, None, None if n % 2 else n][n % 4] for n in range(12)}


def test_total_order_output_is_sorted_across_part_files(pymr, tmp_path):
    out = tmp_path / "out"
    pymr.run("submit", TEST_JOBS / "sort_words.py", SAMPLE, "-o", out, "-w", "2", "--split-size", "1M", check=True)
    parts = read_parts(out)
    assert len(parts) == 4
    keys = [line.split("\t")[0] for lines in parts for line in lines]
    assert keys == sorted(keys), "the part files in order must be one sorted output"
    assert len(keys) == len(reference_word_counts(BOOKS))
    sizes = [len(lines) for lines in parts]
    assert min(sizes) > len(keys) / 16, f"sampled ranges should be roughly even: {sizes}"


def test_map_counters_are_exact_when_a_small_buffer_combines_and_spills(pymr, tmp_path):
    """The map loop counts no pair itself; the counts it reports must still be exact."""
    data = tmp_path / "words.txt"
    lines = [" ".join(f"w{(i * 7 + j) % 3000}" for j in range(i % 13)) for i in range(20000)]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    pymr.run("submit", JOBS / "wordcount.py", data, "-o", out, "-w", "1", "-r", "2", "--sort-buffer", "256K",
             "-q", check=True)
    counters = json.loads((out / "_REPORT.json").read_text())["counters"]["pymr"]
    words = sum(len(line.split()) for line in lines)
    assert counters["map input records"] == len(lines) and counters["map output records"] == words
    # a spill holds each of the 3,000 words at most once: more spilled records mean several spills
    assert counters["spilled records"] > 3000 and counters["combine input records"] > counters["combine output records"]
    assert {w: int(n) for w, n in text_pairs(out).items()} == reference_word_counts([data])


class _ProgressSeen(pymr.Job):
    """Keys each line; its reduce notes how far the task says it has got, every 5,000 keys."""

    def map(self, key, line):
        yield line, 1

    def reduce_init(self):
        self.reduced = 0

    def reduce(self, key, values):
        if self.reduced % 5000 == 0:
            yield "seen", progress.fraction()
        self.reduced += 1


def test_a_reduce_says_how_much_of_its_partition_it_has_read(tmp_path):
    """What a reduce's executor reports (``progress.fraction``): the share of its
    partition's rows read from the map outputs, a batch at a time, up to 1."""
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i:06d}\n" for i in range(50_000)))
    split = {"path": str(lines), "start": 0, "end": lines.stat().st_size, "compressed": False, "format": "text"}
    output = str(tmp_path / "m" / "out.arrow")  # one map output: its 50,000 rows are read 8,192 at a time
    run_task(_ProgressSeen, {}, {"kind": "map", "split": split, "num_reducers": 1, "map_output": output})
    run_task(_ProgressSeen, {}, {"kind": "reduce", "partition": 0, "map_outputs": [{"path": output}],
                                 "attempt_dir": str(tmp_path / "attempt"), "output_format": "jsonl"})
    [part] = (tmp_path / "attempt").iterdir()
    seen = [json.loads(line)[1] for line in part.read_text().splitlines()]
    assert len(seen) == 10 and seen == sorted(seen), seen
    assert 0 < seen[0] < 0.5 < seen[-1] <= 1.0, seen
    assert progress.fraction() == 1.0  # every row of the partition was read
