"""Grouping sorted windows by key for reduce and combine (pymr/grouping.py), and writing
a reduce's pairs a chunk at a time (``PartWriter.write_columns``)."""

from __future__ import annotations

import pickle
from collections import namedtuple
from itertools import groupby

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymr import grouping
from pymr.grouping import apply_per_key, columns_of, key_groups
from pymr.keys import decode_key, encode_key
from pymr.outputs import PartWriter, format_text


def windows_of(pairs, cuts, key_type=pa.large_string(), value_type=pa.int64()):
    """Sorted ``pairs`` as tables cut before the given row numbers (empty windows included)."""
    bounds = [0, *cuts, len(pairs)]
    for start, end in zip(bounds, bounds[1:]):
        chunk = pairs[start:end]
        yield pa.table({"key": pa.array([k for k, _ in chunk], key_type),
                        "value": pa.array([v for _, v in chunk], value_type)})


def flat(blocks):
    return [(key, list(values)) for keys, iters in blocks for key, values in zip(keys, iters)]


def reference(pairs):
    return [(key, [v for _, v in group]) for key, group in groupby(pairs, key=lambda kv: kv[0])]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_groups_over_any_window_cuts_equal_groupby(data):
    keys = data.draw(st.lists(st.sampled_from(["", "a", "b", "é", "\x00", "zz"]), min_size=1, max_size=40))
    pairs = [(key, i) for i, key in enumerate(sorted(keys))]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(pairs)), max_size=8)))
    assert flat(key_groups(windows_of(pairs, cuts), "str", "int")) == reference(pairs)


def test_encoded_keys_are_decoded_and_pickled_values_loaded():
    keys = sorted([(1, "a"), None, 2.5, b"x", (1, "a"), 2.5], key=encode_key)
    pairs = [(encode_key(k), pickle.dumps({"n": i})) for i, k in enumerate(keys)]
    windows = windows_of(pairs, [1, 3], pa.large_binary(), pa.large_binary())
    got = flat(key_groups(windows, "enc", "pickle"))
    want = [(decode_key(k), [pickle.loads(v) for v in vs]) for k, vs in reference(pairs)]
    assert got == want and [k for k, _ in got] == [None, 2.5, b"x", (1, "a")]


def test_a_key_over_many_windows_streams_its_values():
    pairs = [("a", 0)] + [("hot", i) for i in range(1, 1001)] + [("z", 1001)]
    pulled = []

    def windows():
        for number, window in enumerate(windows_of(pairs, range(10, len(pairs), 10))):
            pulled.append(number)
            yield window

    blocks = key_groups(windows(), "str", "int")
    keys, iters = next(blocks)
    assert keys == ["a"] and list(next(iter(iters))) == [0]
    keys, iters = next(blocks)
    hot = next(iter(iters))
    assert keys == ["hot"] and [next(hot) for _ in range(25)] == list(range(1, 26))
    assert len(pulled) == 3, "values are read a window ahead at most, not gathered first"
    assert sum(hot) == sum(range(26, 1001))
    assert flat(blocks) == [("z", [1001])]


def test_values_left_unread_do_not_become_the_next_key():
    pairs = [("a", i) for i in range(30)] + [("b", 30), ("c", 31), ("c", 32)]
    seen = []
    for keys, iters in key_groups(windows_of(pairs, [7, 14, 21, 31]), "str", "int"):
        for key, values in zip(keys, iters):
            seen.append((key, next(values)))  # one value only
    assert seen == [("a", 0), ("b", 30), ("c", 31)]


def test_apply_per_key_takes_lists_and_generators_and_refuses_none():
    def reduce(key, values):
        total = sum(values)
        if key == "none":
            return None
        if key == "list":
            return [(key, total), (key + "!", -total)]
        return ((key, total) for _ in range(1))

    blocks = [(["gen", "list"], [iter([1, 2]), iter([4, 5])])]
    assert list(apply_per_key(reduce, blocks, "Job.reduce")) == [(["gen", "list", "list!"], [3, 9, -9])]
    with pytest.raises(TypeError, match=r"^Job.reduce returned None; a reduce must yield \(key, value\) pairs"):
        list(apply_per_key(reduce, [(["gen", "none"], [iter([1]), iter([2])])], "Job.reduce"))


def test_apply_per_key_hands_over_bounded_chunks(monkeypatch):
    monkeypatch.setattr(grouping, "PAIRS_PER_CHUNK", 4)
    blocks = [(["k"], [iter(range(10))])]
    chunks = list(apply_per_key(lambda key, values: ((key, v) for v in values), blocks, "Job.reduce"))
    assert [len(keys) for keys, _ in chunks] == [4, 4, 2]
    assert [v for _, values in chunks for v in values] == list(range(10))


@pytest.mark.parametrize("bad", [5, ("k",), ("k", 1, 2), None, {"a": 1, "b": 2}, "ab", b"ab"])
def test_a_result_that_is_not_a_pair_names_the_function_and_the_item(bad):
    with pytest.raises(TypeError, match=r"Words\.reduce must yield \(key, value\) pairs; it yielded ") as info:
        columns_of([("fine", 1), bad], "Words.reduce")
    assert repr(bad) in str(info.value)


def test_any_sequence_of_two_is_a_pair():
    Pair = namedtuple("Pair", "key value")
    assert columns_of([Pair("a", 1), ["b", 2], ("c", 3)], "Job.reduce") == (["a", "b", "c"], [1, 2, 3])
    assert columns_of([], "Job.reduce") == ([], [])


TEXT_VALUES = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=4), st.none(), st.booleans(),
                        st.floats(allow_nan=False), st.lists(st.integers(), max_size=2))


@settings(max_examples=150, deadline=None)
@given(keys=st.lists(st.one_of(st.text(max_size=4), st.integers()), min_size=0, max_size=12),
       values=st.data())
def test_write_columns_writes_what_write_writes(tmp_path_factory, keys, values):
    kinds = values.draw(st.sampled_from(["int", "str", "any"]))
    strategy = {"int": st.integers(-(2**63), 2**63 - 1), "str": st.text(max_size=4), "any": TEXT_VALUES}[kinds]
    column = [values.draw(strategy) for _ in keys]
    path = tmp_path_factory.mktemp("out") / "part"
    writer = PartWriter(str(path), "text")
    writer.write_columns(keys, column)
    writer.close()
    assert path.read_bytes().decode("utf-8") == "".join(map(format_text, keys, column))
    assert writer.records == len(keys)
