"""The windowed Arrow merge gives exactly what a stable heap merge of the runs gives."""

from __future__ import annotations

import heapq
from operator import itemgetter

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pymr.merge import merge_windows

KEY_TYPES = {"str": (pa.large_string(), st.text(alphabet="ab\u00e9\U0001F600", max_size=3)),
             "int": (pa.int64(), st.integers(-5, 5)),
             "enc": (pa.large_binary(), st.binary(max_size=2))}


def batches(rows: list[tuple], key_type: pa.DataType, batch_rows: int) -> list[pa.RecordBatch]:
    out = []
    for at in range(0, len(rows), batch_rows):
        chunk = rows[at:at + batch_rows]
        out.append(pa.record_batch([pa.array([k for k, _ in chunk], key_type),
                                    pa.array([v for _, v in chunk], pa.large_string())], names=["key", "value"]))
    return out


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(KEY_TYPES)), data=st.data(), batch_rows=st.integers(1, 5),
       window_rows=st.integers(1, 12), sort=st.booleans())
def test_windows_match_a_stable_heap_merge(kind, data, batch_rows, window_rows, sort):
    key_type, keys = KEY_TYPES[kind]
    runs = []
    for run in range(data.draw(st.integers(1, 4), label="runs")):
        run_keys = sorted(data.draw(st.lists(keys, max_size=25), label=f"run {run}"))
        runs.append([(k, f"{run}:{i}") for i, k in enumerate(run_keys)])  # values name run and position
    windows = list(merge_windows([iter(batches(r, key_type, batch_rows)) for r in runs], window_rows, sort=sort))
    got = [row for w in windows for row in zip(w.column("key").to_pylist(), w.column("value").to_pylist())]
    if sort:
        assert got == list(heapq.merge(*runs, key=itemgetter(0)))
    else:  # each window holds the right rows; a caller sorts them
        assert sorted(got, key=itemgetter(0)) == sorted(heapq.merge(*runs, key=itemgetter(0)), key=itemgetter(0))
        flat = [sorted(zip(w.column("key").to_pylist(), w.column("value").to_pylist())) for w in windows]
        assert all(a[-1][0] <= b[0][0] for a, b in zip(flat, flat[1:]))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(KEY_TYPES)), data=st.data(), batch_rows=st.integers(1, 4),
       window_rows=st.integers(1, 6))
def test_runs_of_unique_keys_never_split_a_key_between_windows(kind, data, batch_rows, window_rows):
    """Runs of partial aggregates: a key split between windows would be aggregated twice."""
    key_type, keys = KEY_TYPES[kind]
    runs = []
    for run in range(data.draw(st.integers(2, 4), label="runs")):
        run_keys = sorted(set(data.draw(st.lists(keys, max_size=15), label=f"run {run}")))
        runs.append([(k, f"{run}") for k in run_keys])
    windows = list(merge_windows([iter(batches(r, key_type, batch_rows)) for r in runs], window_rows,
                                 sort=False, unique_keys=True))
    seen_in = {}
    for index, window in enumerate(windows):
        for key in window.column("key").to_pylist():
            assert seen_in.setdefault(key, index) == index, f"{key!r} in windows {seen_in[key]} and {index}"
    assert sorted(k for w in windows for k in w.column("key").to_pylist()) == sorted(k for r in runs for k, _ in r)
