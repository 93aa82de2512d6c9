"""The fast paths (in-memory combining, built-in aggregates, batch map) give exactly the
output of the plain per-record path: random inputs with many duplicate and skewed keys,
tiny sort buffers so that spills and merges happen."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pymr


def parse_key(token: str):
    """Keys of several types from one token, to exercise typed and encoded columns."""
    if token.isdigit():
        return int(token)
    if token.startswith("t"):
        return (token[1:], len(token))
    return token


class Plain(pymr.Job):
    def map(self, key, line):
        token, value = line.split()
        yield parse_key(token), int(value)

    def reduce(self, key, values):
        yield key, sum(values)


class Combined(Plain):
    def combine(self, key, values):
        yield key, sum(values)


class Aggregated(Plain):
    aggregate = "sum"
    reduce = pymr.Job.reduce


class BatchAggregated(pymr.Job):
    aggregate = "sum"

    def map_batch(self, batch):
        parts = pc.split_pattern(batch.column("line"), " ")
        tokens = pc.list_element(parts, 0).to_pylist()
        values = pc.list_element(parts, 1).cast(pa.int64())
        if all(not t.isdigit() and not t.startswith("t") for t in tokens):  # all plain str keys: stay in Arrow
            return pa.table({"key": pc.list_element(parts, 0), "value": values})
        return [(parse_key(t), v) for t, v in zip(tokens, values.to_pylist())]


class BatchPairs(Plain):
    def map_batch(self, batch):
        for line in batch.column("line").to_pylist():
            token, value = line.split()
            yield parse_key(token), int(value)


def _minmax(name):
    class Reduced(Plain):
        def reduce(self, key, values):
            yield key, (min if name == "min" else max)(values)

    class Builtin(Plain):
        aggregate = name
        reduce = pymr.Job.reduce

    return Reduced, Builtin


class Counted(Plain):
    def reduce(self, key, values):
        yield key, sum(1 for _ in values)


class CountAggregate(Plain):
    aggregate = "count"
    reduce = pymr.Job.reduce


TOKENS = st.one_of(st.sampled_from(["a", "b", "c", "hot"]), st.sampled_from(["7", "42", "tx", "ty"]),
                   st.text(alphabet="abcdé", min_size=1, max_size=4))
RECORDS = st.lists(st.tuples(st.one_of(st.just("hot"), TOKENS), st.integers(-1000, 1000)), min_size=1,
                   max_size=400)


def run_inline(job, path, tmp_path, name, **settings):
    return job.run([str(path)], output=str(tmp_path / name), inline=True, output_format="jsonl",
                   overwrite=True, reducers=3, buffer_bytes=settings.pop("buffer_bytes", 2048), **settings)


def outputs(job, path, tmp_path, name, **settings):
    result = run_inline(job, path, tmp_path, name, **settings)
    return [tuple(map(lambda x: tuple(x) if isinstance(x, list) else x, pair)) for pair in result]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS, split=st.sampled_from([64, 300, 1 << 20]))
@example(records=[("hot", 0)] * 7 + [(t, 0) for t in ("a", "b", "c", "7", "42", "tx", "ty", "aa", "aaa", "hot")],
         split=300)  # two spills of different key kinds, once merged without being summed: ('y', 2) twice
def test_fast_paths_match_the_plain_path(tmp_path, records, split):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{token} {value}\n" for token, value in records))
    expected = outputs(Plain, path, tmp_path, "plain", split_size=split)
    for job in (Combined, Aggregated, BatchAggregated, BatchPairs):
        assert outputs(job, path, tmp_path, job.__name__, split_size=split) == expected, job.__name__
    assert outputs(CountAggregate, path, tmp_path, "count", split_size=split) == \
        outputs(Counted, path, tmp_path, "counted", split_size=split)
    for name in ("min", "max"):
        reduced, builtin = _minmax(name)
        assert outputs(builtin, path, tmp_path, f"b{name}", split_size=split) == \
            outputs(reduced, path, tmp_path, f"r{name}", split_size=split)


def test_batch_aggregate_stays_in_arrow_and_matches(tmp_path):
    path = tmp_path / "in.txt"
    lines = [f"{'hot' if i % 3 else 'k' + str(i % 97)} {i % 11}\n" for i in range(20000)]
    path.write_text("".join(lines))
    expected = outputs(Plain, path, tmp_path, "plain", buffer_bytes=1 << 20)
    assert outputs(BatchAggregated, path, tmp_path, "batch", buffer_bytes=4096) == expected
    assert outputs(Combined, path, tmp_path, "combined", buffer_bytes=4096) == expected


def test_fast_wordcount_job_matches_the_plain_one_on_sample_data(tmp_path):
    from conftest import JOBS, SAMPLE

    fast = pymr.load_job_class(JOBS / "wordcount_fast.py")
    plain = pymr.load_job_class(JOBS / "wordcount.py")
    books = [str(SAMPLE / "kjv-pentateuch.txt"), str(SAMPLE / "python-tutorial.txt")]
    a = fast.run(books, output=str(tmp_path / "fast"), workers=2, reducers=2, split_size="256K")
    b = plain.run(books, output=str(tmp_path / "plain"), workers=2, reducers=2, split_size="256K")
    assert list(a) == list(b)
    assert a.counters["pymr"]["combine output records"] < a.counters["pymr"]["combine input records"]


def test_fast_wordcount_splits_at_every_character_str_split_does(tmp_path):
    import sys

    from conftest import JOBS

    fast = pymr.load_job_class(JOBS / "wordcount_fast.py")
    plain = pymr.load_job_class(JOBS / "wordcount.py")
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() and chr(c) not in "\n\r"]
    assert len(spaces) == 27 and "\x1c" in spaces and "\u3000" in spaces
    not_spaces = ["\u200b", "\ufeff", "\u180e", "\x00", "\x1b"]  # zero-width and control: part of a word
    lines = [f"a{s}b{s}{s}c{s}" for s in spaces] + [f"x{c}y z" for c in not_spaces] + ["a\r", "b\rc\r\n"]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    a = dict(fast.run([str(path)], output=str(tmp_path / "fast"), inline=True))
    b = dict(plain.run([str(path)], output=str(tmp_path / "plain"), inline=True))
    assert a == b
    assert b["a"] == 28 and b["c"] == 28 and b["x\u200by"] == 1


def test_aggregate_name_is_checked(tmp_path):
    class Bad(Plain):
        aggregate = "median"

    path = tmp_path / "in.txt"
    path.write_text("a 1\n")
    with pytest.raises(pymr.PymrError, match="unknown aggregate 'median'"):
        Bad.run([str(path)], output=str(tmp_path / "o"), inline=True)


@settings(max_examples=60, deadline=None)
@given(runs=st.lists(st.dictionaries(st.text(alphabet="abcxyzé", max_size=3), st.integers(-50, 50), max_size=40),
                     min_size=1, max_size=6),
       batch_rows=st.integers(1, 7))
def test_merge_aggregate_windows_equal_a_plain_sum(runs, batch_rows):
    from collections import Counter

    from pymr.aggregate import merge_aggregate

    def stream(run):
        table = pa.table({"key": pa.array(sorted(run), pa.large_string()),
                          "value": pa.array([run[k] for k in sorted(run)], pa.int64())})
        return iter(table.to_batches(max_chunksize=batch_rows))

    expected: Counter = Counter()
    for run in runs:
        expected.update(run)
    tables = list(merge_aggregate([stream(run) for run in runs], "sum"))
    keys = [k for t in tables for k in t.column("key").to_pylist()]
    assert keys == sorted(expected), "windows must come out in key order, each key once"
    assert dict(zip(keys, (v for t in tables for v in t.column("value").to_pylist()))) == dict(expected)


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(alphabet="ab\u00e9\U0001F600 ~\x00", max_size=4), min_size=1, max_size=40),
       other_cuts=st.lists(st.sampled_from([None, 3, -1.5, b"x", ("a",)]), max_size=3),
       cut_count=st.integers(min_value=1, max_value=6), data=st.data())
def test_range_partitioner_in_arrow_matches_the_per_key_partitioner(keys, other_cuts, cut_count, data):
    from pymr.keys import encode_key
    from pymr.sampling import RangePartitioner

    cut_keys = [data.draw(st.sampled_from(keys)) for _ in range(cut_count)] + other_cuts
    partitioner = RangePartitioner(sorted(encode_key(k) for k in cut_keys))
    half = len(keys) // 2
    column = pa.chunked_array([pa.array(keys[:half], pa.large_string()), pa.array(keys[half:], pa.large_string())])
    expected = [partitioner(k, len(cut_keys) + 1) for k in keys]
    assert partitioner.partition_array(column).to_pylist() == expected
    assert partitioner.partition_array(pa.array([1, 2])) is None  # not str: the caller asks per key


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.one_of(st.text(alphabet="ab\u00e9\U0001F600 ~\x00", max_size=4),
                               st.tuples(st.integers(-5, 5), st.text(max_size=2)), st.none(), st.floats(-9, 9)),
                     min_size=1, max_size=40),
       partitions=st.integers(min_value=2, max_value=9))
def test_default_partition_of_a_column_matches_partition_for(tmp_path_factory, keys, partitions):
    """The buffer hashes a key column in C; every key must land where ``partition_for``
    (the per-key path, and every other process) puts it."""
    from pymr.keys import encode_key, partition_for
    from pymr.shuffle import MapOutputBuffer

    buffer = MapOutputBuffer(str(tmp_path_factory.mktemp("p")), partitions, partition_for, default_partitioner=True)
    text = [k for k in keys if type(k) is str]
    for column, originals in ((pa.array(text, pa.large_string()), text),
                              (pa.array([encode_key(k) for k in keys], pa.large_binary()), keys)):
        got = buffer._partition_array(pa.chunked_array([column], column.type)).to_pylist()
        assert got == [partition_for(k, partitions) for k in originals]


def test_fast_paths_match_with_tiny_batches_and_merge_windows(tmp_path, monkeypatch):
    """Batches of 3 rows and windows of a few: every merge splits keys across batches and windows."""
    from pymr import aggregate, shuffle

    monkeypatch.setattr(shuffle, "BATCH_ROWS", 3)
    monkeypatch.setattr(shuffle, "MERGE_WINDOW_ROWS", 4)
    monkeypatch.setattr(aggregate, "WINDOW_ROWS", 2)
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{'hot' if i % 3 else 'k' + str(i % 37)} {i % 11}\n" for i in range(3000)))
    expected = outputs(Plain, path, tmp_path, "plain", split_size=2000, buffer_bytes=1 << 20)
    for job in (Combined, Aggregated, BatchAggregated, BatchPairs):
        assert outputs(job, path, tmp_path, job.__name__, split_size=2000) == expected, job.__name__
    assert outputs(CountAggregate, path, tmp_path, "count", split_size=2000) == \
        outputs(Counted, path, tmp_path, "counted", split_size=2000, buffer_bytes=1 << 20)


class SortedPairs(Plain):
    """An identity reduce, per key and per block."""

    def reduce(self, key, values):
        for value in values:
            yield key, value


class SortedPairsBatch(SortedPairs):
    def reduce_batch(self, table):
        return table


class SortedPairsBatchAsPairs(SortedPairs):
    def reduce_batch(self, table):
        return zip(table.column("key").to_pylist(), table.column("value").to_pylist())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS, split=st.sampled_from([64, 300, 1 << 20]))
def test_reduce_batch_matches_reduce(tmp_path, records, split):
    """Typed str or int keys go through reduce_batch; tuple keys fall back to reduce."""
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{token} {value}\n" for token, value in records))
    expected = sorted(outputs(SortedPairs, path, tmp_path, "plain", split_size=split), key=repr)
    for job in (SortedPairsBatch, SortedPairsBatchAsPairs):
        assert sorted(outputs(job, path, tmp_path, job.__name__, split_size=split), key=repr) == expected
    groups = {job: run_inline(job, path, tmp_path, "counted", split_size=split).counter("pymr", "reduce input groups")
              for job in (SortedPairs, SortedPairsBatch)}
    assert groups[SortedPairsBatch] == groups[SortedPairs]


def test_reduce_batch_gets_sorted_blocks_and_is_used_for_typed_columns(tmp_path, monkeypatch):
    from pymr import shuffle

    monkeypatch.setattr(shuffle, "BATCH_ROWS", 5)  # many small blocks
    monkeypatch.setattr(shuffle, "MERGE_WINDOW_ROWS", 10)
    calls = []

    class Recording(SortedPairsBatch):
        def reduce(self, key, values):
            raise AssertionError("reduce_batch should have been used")

        def reduce_batch(self, table):
            calls.append(table.num_rows)
            keys = table.column("key").to_pylist()
            assert keys == sorted(keys)
            return table

    path = tmp_path / "in.txt"
    path.write_text("".join(f"w{i % 50} {i}\n" for i in range(600)))
    result = run_inline(Recording, path, tmp_path, "recorded", split_size=400)
    got = [tuple(pair) for pair in result]
    assert len(calls) > 3 and sum(calls) == 600
    # windows of 10 rows cut keys of 12 values: a key on two windows is one group
    assert result.counter("pymr", "reduce input groups") == 50
    assert sorted(got, key=repr) == sorted(((f"w{i % 50}", i) for i in range(600)), key=repr)


def test_reduce_batch_without_reduce_and_untyped_keys_is_a_clear_error(tmp_path):
    class OnlyBatch(pymr.Job):
        def map(self, key, line):
            yield ("tuple", line), 1

        def reduce_batch(self, table):
            return table

    path = tmp_path / "in.txt"
    path.write_text("a\nb\n")
    with pytest.raises(TypeError, match="reduce_batch needs typed columns"):  # inline: the task's own error
        OnlyBatch.run([str(path)], output=str(tmp_path / "out"), inline=True)


def test_reduce_batch_gives_way_to_reduce_when_values_must_be_sorted(tmp_path):
    class SortedValues(SortedPairsBatch):
        sort_values = True

        def reduce_batch(self, table):
            raise AssertionError("sort_values asks for whole, sorted groups: reduce must run")

    path = tmp_path / "in.txt"
    path.write_text("".join(f"k{i % 3} {(i * 7) % 10}\n" for i in range(30)))
    got = outputs(SortedValues, path, tmp_path, "sorted", split_size=100)
    for key in ("k0", "k1", "k2"):
        values = [v for k, v in got if k == key]
        assert values == sorted(values) and len(values) == 10


def test_an_aggregates_map_output_holds_each_key_once_when_pairs_and_tables_meet(tmp_path):
    """A map_batch that returns pairs for some batches and tables for others: the buffer
    aggregates each apart, and the run they share must still hold each key once, since
    the reduce side merges an aggregate's runs as such (before: "a" came out twice)."""
    from pymr.shuffle import MapOutputBuffer, RunReader
    from pymr.tasks import run_task

    buffer = MapOutputBuffer(str(tmp_path), 1, lambda key, count: 0, None, 1 << 30, aggregate="sum")
    buffer.put("a", 1)
    buffer.put(7, 1)
    buffer.add_table(pa.table({"key": pa.array(["a", "b"], pa.large_string()), "value": pa.array([2, 3], pa.int64())}))
    path = buffer.close(str(tmp_path / "map.arrow"))
    assert [(key, value) for _, key, value in RunReader(path).triples(0, False)] == [(7, 1), ("a", 3), ("b", 3)]

    class Sum(pymr.Job):
        aggregate = "sum"

    run_task(Sum, {}, {"kind": "reduce", "partition": 0, "map_outputs": [{"path": path}],
                       "attempt_dir": str(tmp_path / "attempt"), "output_format": "text"})
    [part] = (tmp_path / "attempt").iterdir()
    assert part.read_text().splitlines() == ["7\t1", "a\t3", "b\t3"]
