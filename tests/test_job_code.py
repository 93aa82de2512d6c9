"""Job scripts as users write them: helper modules beside the script and from --py-files,
side files found beside the script, and errors that name the user's own mistake."""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from cluster import Cluster, free_port
from conftest import ROOT, TEST_JOBS, text_pairs, interrupt_when_running

import pymr

BESIDE = TEST_JOBS / "helpers_beside"
WORDJOB = BESIDE / "wordjob.py"
FARJOB = TEST_JOBS / "helpers_elsewhere" / "farjob.py"
MISTAKES = TEST_JOBS / "mistakes.py"
TEXT = "The cat, and the hat.\nA cat sat; the Cat ran!\n" * 30


def expected_words() -> dict[str, int]:
    words = (w.strip(string.punctuation) for w in TEXT.lower().split())
    return dict(Counter(w for w in words if w and w not in {"the", "and"}))


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text(TEXT)
    return path


def run_elsewhere(pymr, cwd: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` (not the repository), this worktree's pymr on the path."""
    env = dict(pymr.env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


# -- helper modules travel with the job ------------------------------------------------------
@pytest.mark.parametrize("mode", [["-w", "2"], ["--inline"]], ids=["local", "inline"])
def test_submit_from_another_folder_ships_sibling_module_package_and_side_file(pymr, tmp_path, text, mode):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_elsewhere(pymr, elsewhere, "-m", "pymr", "submit", WORDJOB, text, "-o", tmp_path / "out",
                           "--split-size", "512", *mode)
    assert result.returncode == 0, result.stderr
    assert {k: int(v) for k, v in text_pairs(tmp_path / "out").items()} == expected_words()


def test_python_job_script_ships_its_helpers(pymr, tmp_path, text):
    result = run_elsewhere(pymr, tmp_path, WORDJOB, text, "-o", tmp_path / "out", "-w", "2", "--split-size", "512")
    assert result.returncode == 0, result.stderr
    assert {k: int(v) for k, v in text_pairs(tmp_path / "out").items()} == expected_words()


def test_job_run_after_sys_path_insert_ships_its_helpers(pymr, tmp_path, text):
    driver = tmp_path / "driver.py"
    driver.write_text(f"import sys\nsys.path.insert(0, {str(BESIDE)!r})\nfrom wordjob import WordJob\n"
                      f"result = WordJob.run([{str(text)!r}], workers=2, split_size=512)\n"
                      "print(dict(result))\n")
    result = run_elsewhere(pymr, tmp_path, driver)
    assert result.returncode == 0, result.stderr
    assert eval(result.stdout) == expected_words()


@pytest.mark.parametrize("inline", [False, True], ids=["local", "inline"])
def test_job_run_from_python_ships_its_helpers(text, inline):
    job = pymr.load_job_class(WORDJOB)
    result = job.run([str(text)], workers=2, inline=inline, split_size=512)
    try:
        assert dict(result) == expected_words()
    finally:
        shutil.rmtree(result.output_dir)  # a run without output= leaves its result for the caller


NOTEBOOK_CELL = """
import pymr
from helpers import tokenize          # beside the notebook: its current folder

class Cell(pymr.Job):
    def map(self, key, line):
        for word in tokenize(line):
            yield word, 1

    def reduce(self, word, counts):
        yield word, sum(counts)

print(dict(Cell.run([{text!r}], coordinator={address!r}, secret_file={key!r})))
"""


def test_cluster_mode_ships_helpers_to_workers_in_another_folder(pymr, tmp_path, text):
    cluster = Cluster(tmp_path, workers=2)  # its workers run in the repository's folder, not the script's
    try:
        submitted = run_elsewhere(pymr, tmp_path, "-m", "pymr", "submit", WORDJOB, text, "-o", tmp_path / "out",
                                  "--split-size", "512", "--reducers", "2", *cluster.submit_args())
        cell = NOTEBOOK_CELL.format(text=str(text), address=cluster.address, key=str(cluster.key))
        notebook = run_elsewhere(pymr, BESIDE, "-c", cell)  # a class with no file: its folder is the current one
    finally:
        cluster.stop()
    assert submitted.returncode == 0, submitted.stderr
    assert {k: int(v) for k, v in text_pairs(tmp_path / "out").items()} == expected_words()
    assert notebook.returncode == 0, notebook.stderr
    assert eval(notebook.stdout) == Counter(TEXT.lower().split())


@pytest.mark.parametrize("packed", ["zip", "py", "package"])
def test_py_files_ship_a_module_from_elsewhere(pymr, tmp_path, text, packed):
    module = TEST_JOBS / "helpers_lib" / "farlib.py"
    if packed == "zip":
        shipped = tmp_path / "farlib.zip"
        with zipfile.ZipFile(shipped, "w") as z:
            z.write(module, "farlib.py")
    elif packed == "package":
        shipped = tmp_path / "farlib"
        shipped.mkdir()
        shutil.copy(module, shipped / "__init__.py")
    else:
        shipped = module
    result = pymr.run("submit", FARJOB, text, "-o", tmp_path / "out", "-w", "2", "--py-files", shipped)
    assert result.returncode == 0, result.stderr
    assert text_pairs(tmp_path / "out")["CAT,"] == "30"


def test_code_that_cannot_load_in_a_worker_fails_at_once(pymr, tmp_path, text):
    result = pymr.run("submit", FARJOB, text, "-o", tmp_path / "out", "-w", "2", "--split-size", "256")
    assert result.returncode == 1
    assert "failed after 1 attempt(s): ModuleNotFoundError: No module named 'farlib'" in result.stderr
    assert "--py-files" in result.stderr
    assert "KeyError" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_script_importing_a_missing_module_names_it_and_py_files(pymr, tmp_path, text):
    script = tmp_path / "lonely.py"
    script.write_text("import pymr\nfrom nowhere_helpers import tokenize\n\n"
                      "class Lonely(pymr.Job):\n    pass\n")
    result = pymr.run("submit", script, text, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert "No module named 'nowhere_helpers'" in result.stderr and "--py-files" in result.stderr


# -- side files -------------------------------------------------------------------------------
def test_missing_side_file_gives_the_full_path_and_exit_2(pymr, tmp_path, text):
    looked_at = TEST_JOBS / "no_such_words.txt"
    submitted = pymr.run("submit", MISTAKES, text, "-o", tmp_path / "out", "--job", "MissingSideFile")
    script = run_elsewhere(pymr, tmp_path, MISTAKES, text, "-o", tmp_path / "out")
    for result in (submitted, script):
        assert result.returncode == 2, result.stderr
        assert f"pymr: error: side file not found: {looked_at}" in result.stderr
    assert not (tmp_path / "out").exists()


# -- errors that name the user's mistake --------------------------------------------------------
@pytest.mark.parametrize("mode", [["-w", "1"], ["--inline"]], ids=["local", "inline"])
@pytest.mark.parametrize("job, message", [
    ("OpenFile", "OpenFile.log_file: an open file cannot be sent to workers; open it in map_init"),
    ("GlobalLock", "LOCK (a global used by GlobalLock.map): a lock cannot be sent to workers"),
])
def test_what_cannot_be_sent_is_named_at_submit(pymr, tmp_path, text, job, message, mode):
    result = pymr.run("submit", MISTAKES, text, "-o", tmp_path / "out", "--job", job, *mode)
    assert result.returncode == 2, result.stderr
    assert f"pymr: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr and "cloudpickle" not in result.stderr


@pytest.mark.parametrize("mode", [["-w", "1"], ["--inline"]], ids=["local", "inline"])
def test_map_returning_none_fails_the_task(pymr, tmp_path, text, mode):
    result = pymr.run("submit", MISTAKES, text, "-o", tmp_path / "out", "--job", "MapReturnsNone",
                      "--max-attempts", "1", *mode)
    assert result.returncode == 1
    assert ("MapReturnsNone.map returned None; a map must yield (key, value) pairs or return an iterable of them"
            in result.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("job, function", [("ReduceReturnsNone", "reduce"), ("CombineReturnsNone", "combine")])
def test_reduce_or_combine_returning_none_fails_the_task(text, tmp_path, job, function):
    job_class = pymr.load_job_class(MISTAKES, job)
    with pytest.raises(TypeError, match=rf"^{job}.{function} returned None; a {function} must yield \(key, value\)"):
        job_class.run([str(text)], output=str(tmp_path / "out"), inline=True)


@pytest.mark.parametrize("mode", [["-w", "1", "--max-attempts", "1"], ["--inline"]], ids=["local", "inline"])
@pytest.mark.parametrize("job, user_line", [("MapYieldsNotAPair", "yield line.split()[0]"),
                                            ("ReduceYieldsNotAPair", "def reduce(self, word, counts):")])
def test_a_non_pair_shows_a_traceback_ending_in_the_users_code(pymr, tmp_path, text, job, user_line, mode):
    result = pymr.run("submit", MISTAKES, text, "-o", tmp_path / "out", "--job", job, *mode)
    assert result.returncode == 1
    traceback = result.stderr[result.stderr.index("Traceback (most recent call last):"):]
    frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)\n +(.*)', traceback)
    assert frames and frames[-1][0] == str(MISTAKES) and frames[-1][2] == user_line, traceback
    assert "contextlib" not in traceback
    assert f"{job}.{'map' if 'Map' in job else 'reduce'} must yield (key, value) pairs" in traceback


def test_an_unreachable_s3_endpoint_gives_only_the_clear_message(pymr, tmp_path, text):
    port = free_port()  # bound, then closed: nothing listens there
    started = time.monotonic()
    result = pymr.run("submit", WORDJOB, text, "-o", f"s3://bucket/out?endpoint_override=127.0.0.1:{port}&scheme=http",
                      "-w", "1")
    print(f"unreachable endpoint: failed in {time.monotonic() - started:.2f} s")  # (measured, not asserted)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pymr: error: cannot use s3://bucket/out: cannot reach the storage service at 127.0.0.1:{port} ([Errno 111] "
        "Connection refused): check the endpoint (AWS_ENDPOINT_URL, or ?endpoint_override=HOST:PORT&scheme=http "
        "on the URI)"]


def test_failed_run_leaves_no_temporary_folder(tmp_path, monkeypatch, text):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    job = pymr.load_job_class(MISTAKES, "MapReturnsNone")
    with pytest.raises(TypeError, match="returned None"):
        job.run([str(text)], inline=True)
    with pytest.raises(pymr.JobFailed, match="returned None"):
        job.run([str(text)], workers=1, max_attempts=1)
    with pytest.raises(TypeError, match=r"^run\(\) got an unexpected keyword argument 'reducer'; did you mean "
                                        r"'reducers'\?"):
        job.run([str(text)], reducer=2)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_misspelled_option_is_refused_as_the_command_line_refuses_it(tmp_path, text):
    job = pymr.load_job_class(TEST_JOBS / "slow_words.py")
    with pytest.raises(pymr.OptionError, match=r"job SlowWords has no option 'dealy'; did you mean 'delay'\?"):
        job.run([str(text)], output=str(tmp_path / "out"), inline=True, options={"dealy": 1.0})
    assert pymr.OptionError.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_cancelled_overwrite_says_the_old_output_was_kept(pymr, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000").write_text("old\t1\n")
    proc = pymr.popen("submit", TEST_JOBS / "spans.py", ROOT / "sample_data" / "books", "-o", out, "-w", "2",
                      "--sleep", "30", "--overwrite")
    err = interrupt_when_running(proc, out)
    assert proc.returncode == 130, err
    assert "interrupted: the job was cancelled and the old output kept" in err
    assert "removed" not in err
    assert (out / "part-00000").read_text() == "old\t1\n"


# -- results in Python ------------------------------------------------------------------------------
class TupleKeys(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield (word[0], len(word)), 1

    def reduce(self, key, counts):
        yield key, sum(counts)


@pytest.mark.parametrize("output_format", ["jsonl", "parquet", "text"])
def test_job_result_len_to_arrow_and_tuple_keys(tmp_path, output_format):
    data = tmp_path / "in.txt"
    data.write_text("ab ab cd xyz\nab q\n")
    result = TupleKeys.run([str(data)], output=str(tmp_path / "out"), output_format=output_format, inline=True)
    expected = {("a", 2): 3, ("c", 2): 1, ("x", 3): 1, ("q", 1): 1}
    if output_format == "text":  # a tuple key is the text of its JSON array
        expected = {f'["{k[0]}", {k[1]}]': v for k, v in expected.items()}
    assert dict(result) == expected and len(result) == 4
    table = result.to_arrow()
    assert table.column_names == ["key", "value"] and table.num_rows == 4
    assert table.column("value").type == pa.int64() and sorted(table.column("value").to_pylist()) == [1, 1, 1, 3]


def test_job_result_to_pandas_needs_pandas(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("ab ab\n")
    result = TupleKeys.run([str(data)], output=str(tmp_path / "out"), output_format="jsonl", inline=True)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"to_pandas\(\) needs pandas"):
            result.to_pandas()
    else:
        frame = result.to_pandas()
        assert list(frame.columns) == ["key", "value"] and frame["value"].tolist() == [2]


# -- packaging and docs -------------------------------------------------------------------------------
def test_readme_names_increment_counters_real_parameter_and_completion():
    import inspect

    readme = (ROOT / "README.md").read_text()
    parameters = list(inspect.signature(pymr.Job.increment_counter).parameters)
    assert f"self.increment_counter({parameters[1]}, {parameters[2]}, {parameters[3]}=1)" in readme
    assert "_PYMR_COMPLETE=bash_source pymr" in readme and "-vv" in readme
    script = subprocess.run([sys.executable, "-m", "pymr"], env=dict(os.environ, _PYMR_COMPLETE="bash_source"),
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "_pymr_completion" in script.stdout


def test_license_metadata_typed_marker_and_docstrings():
    import configparser
    import inspect

    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "MIT" and config["metadata"]["author"]
    assert "py.typed" in config["options.package_data"]["pymr"] and (ROOT / "pymr" / "py.typed").exists()
    undocumented = []
    for name in pymr.__all__:
        obj = getattr(pymr, name)
        members = vars(obj).items() if inspect.isclass(obj) else []
        for attr, value in [(None, obj), *members]:
            if attr is not None and attr.startswith("_") and attr not in ("__iter__", "__len__"):
                continue
            function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if (attr is None or callable(function)) and not inspect.getdoc(function):
                undocumented.append(f"{name}.{attr}" if attr else name)
    assert undocumented == []
