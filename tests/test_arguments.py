"""A map that never reads its key is given None instead of a built ``(path, offset)``:
which functions count as reading an argument, and that a tracer still sees keys."""

from __future__ import annotations

import functools
import sys

import pytest

import pymr
from pymr.arguments import reads_argument
from pymr.tasks import run_task


def _wraps(function):
    @functools.wraps(function)
    def wrapper(*args):
        return function(*args)
    return wrapper


class Ignores(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield word, 1


class Underscore(pymr.Job):
    def map(self, _, line):
        yield from ((word, 1) for word in line.split())


def _yields_key(self, key, line):
    yield line, key


def _in_comprehension(self, key, line):
    yield line, [part for part in (key,)]


def _in_closure(self, key, line):
    yield line, (lambda: key)()


def _sees_locals(self, key, line):
    yield line, len(locals())


def _star_args(self, *args):
    yield args[1], 1


def _reassigned(self, key, line):
    key = 5
    yield line, key


def _deleted(self, key, line):
    del key
    yield line, 1


def _breakpoint(self, key, line):
    breakpoint()
    yield line, 1


@pytest.mark.parametrize("map_", [_yields_key, _in_comprehension, _in_closure, _sees_locals, _star_args,
                                  _reassigned, _deleted, _breakpoint, _wraps(Ignores.map), pymr.Job.map])
def test_any_use_of_the_key_or_of_the_frame_counts_as_reading_it(map_):
    job = type("J", (pymr.Job,), {"map": map_})()
    assert reads_argument(job.map, 0)


def test_a_map_that_only_splits_its_line_does_not_read_its_key():
    assert not reads_argument(Ignores().map, 0) and reads_argument(Ignores().map, 1)
    assert not reads_argument(Underscore().map, 0)
    assert not reads_argument(lambda key, line: [(line, 1)], 0) and reads_argument(print, 0)


def _text_map_task(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("a b\nc\n")
    split = {"path": str(path), "start": 0, "end": path.stat().st_size, "compressed": False, "format": "text"}
    return {"kind": "map", "split": split, "num_reducers": 1, "map_output": str(tmp_path / "m" / "out.arrow")}, path


def test_keys_are_left_out_for_such_a_map_unless_a_tracer_could_show_them(tmp_path):
    task, path = _text_map_task(tmp_path)
    seen = []

    def watch(frame, event, arg):  # a profiler sees each call (and resumption) of map, with its arguments
        if event == "call" and frame.f_code is Ignores.map.__code__:
            seen.append(frame.f_locals["key"])
        return watch

    previous = sys.gettrace()  # (coverage's, if the suite runs under it)
    sys.settrace(None)
    sys.setprofile(watch)
    try:
        run_task(Ignores, {}, task)
    finally:
        sys.setprofile(None)
        sys.settrace(previous)
    assert set(seen) == {None}
    seen.clear()
    sys.settrace(watch)  # a debugger (or coverage): keys are built, as the docs say
    try:
        run_task(Ignores, {}, dict(task, map_output=str(tmp_path / "m2" / "out.arrow")))
    finally:
        sys.settrace(previous)
    assert set(seen) == {(str(path), 0), (str(path), 4)}


class IgnoresRecordKey(pymr.Job):
    def map(self, key, record):
        yield repr(record), 1


class ReadsRecordKey(pymr.Job):
    def map(self, key, record):
        yield key[1], 1


def _write_table(path, fmt):
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    table = pa.table({"w": ["a", "b", "c"]})
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=2)
    else:
        feather.write_feather(table, path, chunksize=2)


@pytest.mark.parametrize("fmt, text, offsets", [("jsonl", '{"w": 1}\n\n[2]\n', [0, 10]),
                                                ("csv", 'w,n\n"a\nb",1\nc,2\n', [4, 12]),
                                                ("parquet", None, [0, 1, 2]), ("arrow", None, [0, 1, 2])])
def test_records_of_every_format_are_keyed_as_text_lines_are(tmp_path, fmt, text, offsets):
    from pymr.inputs import plan_splits

    path = tmp_path / f"in.{fmt}"
    if text is None:
        _write_table(path, fmt)
    else:
        path.write_text(text)
    [split] = [s.to_dict() for s in plan_splits([str(path)], 1 << 20, None)]
    seen = {IgnoresRecordKey.map.__code__: set(), ReadsRecordKey.map.__code__: set()}

    def watch(frame, event, arg):  # (a call event for each call and each resumption of map)
        if event == "call" and frame.f_code in seen:
            seen[frame.f_code].add(frame.f_locals["key"])

    previous = sys.gettrace()
    sys.settrace(None)
    sys.setprofile(watch)
    try:
        for n, job_class in enumerate([IgnoresRecordKey, ReadsRecordKey]):
            run_task(job_class, {}, {"kind": "map", "split": split, "num_reducers": 1,
                                     "map_output": str(tmp_path / f"m{n}" / "out.arrow")})
    finally:
        sys.setprofile(None)
        sys.settrace(previous)
    assert list(seen.values()) == [{None}, {(str(path), offset) for offset in offsets}]
