"""Map output runs: spill, sort, partition, combine, merge and group (pymr/shuffle.py).

Every test writes real run files with ``MapOutputBuffer`` and reads them back with
``RunReader`` + ``merge_partition`` + ``group_pairs``; the expected groups come from a
plain-Python reference: pairs split by partition, stably sorted by ``encode_key``,
grouped by equal encodings.
"""

from __future__ import annotations

import math
import os
import random
from itertools import groupby

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pymr
from pymr.keys import encode_key, partition_for
from pymr import shuffle
from pymr.shuffle import MapOutputBuffer, RunReader, _group_key, group_pairs, merge_partition, partition_groups


class Point:
    """A user value type: pickled by reference (it lives at module level)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x!r}, {self.y!r})"


def make_local_class():
    class Local:
        """Defined in a function: plain pickle refuses it, so it needs cloudpickle."""

        def __init__(self, payload):
            self.payload = payload

        def __eq__(self, other):
            return type(other).__name__ == "Local" and self.payload == other.payload

        def __repr__(self):
            return f"Local({self.payload!r})"

    return Local


Local = make_local_class()


# -- helpers ---------------------------------------------------------------------------------
def tag(value):
    """``value`` with exact types made visible, so 1, 1.0, True and -0.0, 0.0 differ."""
    if type(value) is float:
        return ("float", repr(value))
    if type(value) is tuple:
        return ("tuple", tuple(tag(v) for v in value))
    if type(value) is list:
        return ("list", [tag(v) for v in value])
    if type(value) is dict:
        return ("dict", [(tag(k), tag(v)) for k, v in value.items()])
    return (type(value).__qualname__, value)


def write_map(folder, name, pairs, num_partitions, *, partitioner=partition_for, combiner=None,
              buffer_bytes=1, spill_at=(), on_combine=None):
    """Run one map's pairs through a buffer; returns the run path and how many spills came before close."""
    attempt = os.path.join(str(folder), name)
    os.makedirs(attempt)
    buffer = MapOutputBuffer(attempt, num_partitions, partitioner, combiner, buffer_bytes, on_combine=on_combine)
    spill_at = set(spill_at)
    for i, (key, value) in enumerate(pairs):
        if i in spill_at:
            buffer.spill()
        buffer.add(key, value)
    spills = len(buffer.runs)
    final = os.path.join(attempt, "map.arrow")
    assert buffer.close(final) == final
    assert os.listdir(attempt) == ["map.arrow"], "spill files left behind"
    return final, spills


def read_groups(paths, num_partitions):
    """Every partition's groups as a reduce sees them (``partition_groups``), checked
    against the key-by-key merge (``group_pairs`` over ``merge_partition``)."""
    readers = [RunReader(p) for p in paths]
    result = []
    for p in range(num_partitions):
        groups = [(key, list(values)) for keys, iters in partition_groups(readers, p)
                  for key, values in zip(keys, iters)]
        by_pairs = [(key, list(values)) for key, values in group_pairs(merge_partition(readers, p))]
        assert tagged([groups]) == tagged([by_pairs])
        result.append(groups)
    return result


def reference_groups(pairs, num_partitions, partitioner=partition_for):
    by_partition = [[] for _ in range(num_partitions)]
    for key, value in pairs:
        by_partition[partitioner(key, num_partitions)].append((key, value))
    result = []
    for items in by_partition:
        items.sort(key=lambda kv: encode_key(kv[0]))
        groups = []
        for _, group in groupby(items, key=lambda kv: encode_key(kv[0])):
            group = list(group)
            groups.append((group[0][0], [v for _, v in group]))
        result.append(groups)
    return result


def tagged(groups):
    return [[(tag(k), [tag(v) for v in values]) for k, values in part] for part in groups]


# -- deterministic data ----------------------------------------------------------------------
WORDS = ["", "a", "b", "ab", "a\x00", "\x00", "zebra", "Zebra", "éclair", "日本", "\U0001d11e", "10", "9"] + [
    f"w{i:03d}" for i in range(120)
]


def skewed(rng, pool, count):
    weights = [1 / (i + 1) for i in range(len(pool))]  # Zipf-like: a few hot keys, a long tail
    return rng.choices(pool, weights, k=count)


KEY_POOLS = {
    "str": WORDS,
    "int": [0, 1, -1, 2, 255, 256, -256, 10**6, -(10**6), 2**63 - 1, -(2**63)] + list(range(100, 220)),
    "mixed": [None, False, True, 0, 1, -5, 2**70, -(2**70), 0.0, 1.5, -2.5, math.inf, -math.inf, 1.0,
              b"", b"\x00", b"a", "", "a", "1", "\udc80", (), (1,), ("a", 1), ("a", (b"\x00", None))]
    + [f"m{i}" for i in range(40)] + list(range(40)),
    "tuple": [("user", i % 17, b"\x00" * (i % 3), i % 5 == 0) for i in range(120)] + [(), ("user",), (("x",),)],
    "surrogate_str": ["a", "b\udc80", "\ud800", "plain"] + WORDS[:30],
}


def make_values(kind, rng, count):
    if kind == "int":
        return [rng.randint(-(10**9), 10**9) for _ in range(count)]
    if kind == "float":
        return [rng.choice([rng.uniform(-1e6, 1e6), -0.0, math.inf, 0.5]) for _ in range(count)]
    if kind == "str":
        return [rng.choice(WORDS) + str(i) for i in range(count)]
    if kind == "none":
        return [None] * count
    if kind == "dict":
        return [{"n": i, "tags": [rng.choice(WORDS)], "nested": {"x": i * 0.5}} for i in range(count)]
    if kind == "object":
        return [Point(i, rng.choice(WORDS)) for i in range(count)]
    if kind == "local_object":
        return [Local((i, rng.random())) for i in range(count)]
    if kind == "mixed":
        choices = [lambda i: i, lambda i: i * 0.25, lambda i: str(i), lambda i: None, lambda i: i % 2 == 0,
                   lambda i: b"b%d" % i, lambda i: 2**80 + i, lambda i: Point(i, i), lambda i: [i, {"k": i}]]
        return [rng.choice(choices)(i) for i in range(count)]
    raise AssertionError(kind)


VALUE_KINDS = ["int", "float", "str", "mixed", "none", "dict", "object"]
KEY_KINDS = ["str", "int", "mixed", "tuple", "surrogate_str"]


# -- one map, many spills --------------------------------------------------------------------
@pytest.mark.parametrize("key_kind", KEY_KINDS)
def test_tiny_buffer_spills_and_reads_back_exactly(tmp_path, key_kind):
    rng = random.Random(f"tiny/{key_kind}")
    count = 2200
    pairs = list(zip(skewed(rng, KEY_POOLS[key_kind], count), make_values("mixed", rng, count)))
    path, spills = write_map(tmp_path, "map-0", pairs, 4, buffer_bytes=1)
    assert spills >= 2, "a 1-byte buffer must spill every 1024 pairs"
    assert tagged(read_groups([path], 4)) == tagged(reference_groups(pairs, 4))
    assert sum(RunReader(path).rows(p) for p in range(4)) == count


@pytest.mark.parametrize("value_kind", VALUE_KINDS)
@pytest.mark.parametrize("key_kind", KEY_KINDS)
def test_spilled_runs_read_back_exactly(tmp_path, key_kind, value_kind):
    # explicit spills every 70 pairs: the same path a full buffer takes, with less data
    rng = random.Random(f"{key_kind}/{value_kind}")
    count = 400
    pairs = list(zip(skewed(rng, KEY_POOLS[key_kind], count), make_values(value_kind, rng, count)))
    path, spills = write_map(tmp_path, "map-0", pairs, 4, spill_at=range(70, count, 70), buffer_bytes=1 << 30)
    assert spills == 5
    assert tagged(read_groups([path], 4)) == tagged(reference_groups(pairs, 4))


@pytest.mark.parametrize("key_kind", ["str", "mixed"])
def test_values_of_a_class_that_needs_cloudpickle(tmp_path, key_kind):
    rng = random.Random(f"local/{key_kind}")
    pairs = list(zip(skewed(rng, KEY_POOLS[key_kind], 250), make_values("local_object", rng, 250)))
    path, _ = write_map(tmp_path, "map-0", pairs, 3, spill_at=(60, 120, 200))
    got = read_groups([path], 3)
    assert tagged(got) == tagged(reference_groups(pairs, 3))
    assert any(type(v).__qualname__ == "make_local_class.<locals>.Local" for part in got for _, vs in part for v in vs)


def test_values_of_a_key_keep_emission_order_across_spills(tmp_path):
    pairs = [(f"k{i % 3}", i) for i in range(5000)]
    path, spills = write_map(tmp_path, "map-0", pairs, 2, buffer_bytes=1)
    assert spills >= 4
    groups = [g for part in read_groups([path], 2) for g in part]
    assert sorted(k for k, _ in groups) == ["k0", "k1", "k2"]
    for key, values in groups:
        assert values == [i for i in range(5000) if f"k{i % 3}" == key]


def test_empty_map_output_has_every_partition_empty(tmp_path):
    path, spills = write_map(tmp_path, "map-0", [], 3)
    assert spills == 0
    assert read_groups([path], 3) == [[], [], []]


def test_single_partition_and_single_key(tmp_path):
    pairs = [("only", i) for i in range(3000)]
    path, _ = write_map(tmp_path, "map-0", pairs, 1)
    assert read_groups([path], 1) == [[("only", list(range(3000)))]]


def test_custom_partitioner_is_used(tmp_path):
    def by_parity(key, num_partitions):
        return key % 2

    pairs = [(i % 50, str(i)) for i in range(1500)]
    path, _ = write_map(tmp_path, "map-0", pairs, 2, partitioner=by_parity)
    got = read_groups([path], 2)
    assert [k for k, _ in got[0]] == list(range(0, 50, 2))
    assert [k for k, _ in got[1]] == list(range(1, 50, 2))
    assert got == reference_groups(pairs, 2, by_parity)


def test_everything_in_one_partition(tmp_path):
    pairs = [(f"k{i % 7}", i) for i in range(2100)]
    path, _ = write_map(tmp_path, "map-0", pairs, 5, partitioner=lambda key, n: 3)
    got = read_groups([path], 5)
    assert [len(part) for part in got] == [0, 0, 0, 7, 0]
    assert got == reference_groups(pairs, 5, lambda key, n: 3)


# -- combiner --------------------------------------------------------------------------------
def sum_combiner(key, values):
    yield key, sum(values)


@pytest.mark.parametrize("key_kind", ["str", "int", "mixed", "tuple"])
@pytest.mark.parametrize("value_kind", ["int", "halves"])
def test_sum_combiner_totals_match(tmp_path, key_kind, value_kind):
    rng = random.Random(f"combine/{key_kind}/{value_kind}")
    count = 3500
    keys = skewed(rng, KEY_POOLS[key_kind], count)
    values = [rng.randint(-1000, 1000) for _ in range(count)]
    if value_kind == "halves":  # floats whose sums are exact in any order
        values = [v / 2 for v in values]
    pairs = list(zip(keys, values))
    calls = []
    path, spills = write_map(tmp_path, "map-0", pairs, 3, combiner=sum_combiner,
                             on_combine=lambda n_in, n_out: calls.append((n_in, n_out)))
    assert spills >= 3
    assert calls and all(n_out <= n_in for n_in, n_out in calls)
    got = read_groups([path], 3)
    want = [[(k, [sum(vs)]) for k, vs in part] for part in reference_groups(pairs, 3)]
    # the merge at close combines again, so each key leaves the map with one value
    assert tagged(got) == tagged(want)


@pytest.mark.parametrize("spills", [1, 2])
def test_a_merge_of_fewer_than_three_runs_leaves_the_combiner_out(tmp_path, spills):
    pairs = [(key, 1) for key in ["a", "b", "a", "c", "a", "b"] * 3]
    path, before_close = write_map(tmp_path, "map", pairs, 2, combiner=sum_combiner, buffer_bytes=1 << 30,
                                   spill_at=[6, 12][:spills])
    assert before_close == spills  # and close spills the rest: spills + 1 runs merged
    runs = spills + 1
    # each run holds a key once (combined at its spill); only a merge of 3 runs combines again
    per_key = {key: values for part in read_groups([path], 2) for key, values in part}
    assert {key: sum(values) for key, values in per_key.items()} == {"a": 9, "b": 6, "c": 3}
    assert {len(values) for values in per_key.values()} == ({1} if runs >= 3 else {runs})


def test_a_buffer_full_of_distinct_keys_spills_without_a_combine_pass(tmp_path):
    """Combining frees values, never keys: when keys fill the buffer it spills at once
    instead of running the combiner over every key first."""
    calls = []
    path, spills = write_map(tmp_path, "map", [(f"key{i:05d}", i) for i in range(3000)], 1,
                             combiner=sum_combiner, buffer_bytes=64 * 1024,
                             on_combine=lambda n_in, n_out: calls.append((n_in, n_out)))
    assert spills >= 3 and calls == []  # no key had two values: nothing for a combiner to do
    assert [key for key, _ in read_groups([path], 1)[0]] == [f"key{i:05d}" for i in range(3000)]


def test_a_combiner_may_change_keys_and_give_several_pairs(tmp_path):
    def combiner(key, values):
        values = list(values)
        yield key.upper(), sum(values)
        yield key, len(values)

    pairs = [("a", 1), ("c", 4), ("a", 2), ("b", 3), ("c", 5)]
    path, _ = write_map(tmp_path, "map", pairs, 2, combiner=combiner, buffer_bytes=1 << 30)
    combined = [("A", 3), ("a", 2), ("b", 3), ("C", 9), ("c", 2)]  # "b" has one value: not combined
    assert tagged(read_groups([path], 2)) == tagged(reference_groups(combined, 2))


def test_combining_in_the_buffer_keeps_what_the_combiner_yields(tmp_path):
    def combiner(key, values):
        total = sum(values)
        if key != "drop":
            yield key.upper() if isinstance(key, str) else (key[0], key[1].upper()), total

    buffer = MapOutputBuffer(str(tmp_path), 1, partition_for, combiner, 1 << 30)
    for key in ["a", "a", "B", "drop", "drop", "c", (1, "t"), (1, "t")]:
        buffer.add(key, 1)
    assert buffer._compact() == 4  # what a full buffer does before it would spill
    # "B" and "c" hold one value each, so the combiner does not run on them
    assert buffer.groups == {"A": [2], "B": [1], "c": [1], _group_key((1, "T")): [2]}
    buffer.close(str(tmp_path / "map.arrow"))
    assert read_groups([str(tmp_path / "map.arrow")], 1) == [[("A", [2]), ("B", [1]), ("c", [1]), ((1, "T"), [2])]]


def test_combiner_over_several_maps(tmp_path):
    rng = random.Random("combine/maps")
    maps = [[(rng.choice(WORDS[:20]), rng.randint(0, 9)) for _ in range(1500)] for _ in range(3)]
    paths = [write_map(tmp_path, f"map-{i}", pairs, 2, combiner=sum_combiner)[0] for i, pairs in enumerate(maps)]
    totals = {}
    for pairs in maps:
        for key, value in pairs:
            totals[key] = totals.get(key, 0) + value
    got = {}
    for part in read_groups(paths, 2):
        for key, values in part:
            assert key not in got
            assert 1 <= len(values) <= 3  # at most one combined value per map
            got[key] = sum(values)
    assert got == totals


@pytest.mark.parametrize("shared", [True, False])
def test_buffer_counts_a_shared_value_once(tmp_path, shared):
    """200,000 pairs over 1,000 keys: with one shared value (word count's 1) they hold
    about 2 MB and fit a 4 MiB buffer without combining; as 200,000 distinct floats
    they hold about 6.5 MB and must be combined to stay within it."""
    calls = []
    buffer = MapOutputBuffer(str(tmp_path), 2, partition_for, combiner=sum_combiner, buffer_bytes=4 << 20,
                             on_combine=lambda n_in, n_out: calls.append((n_in, n_out)))
    one = 1
    for i in range(200_000):
        buffer.add(f"word{i % 1000}", one if shared else i + 0.5)
    assert bool(calls) is not shared
    buffer.close(str(tmp_path / "out.arrow"))
    totals = {k: v for part in read_groups([str(tmp_path / "out.arrow")], 2) for k, (v,) in part}
    assert totals["word7"] == (200 if shared else sum(i + 0.5 for i in range(7, 200_000, 1000)))


# -- several maps ----------------------------------------------------------------------------
def check_merged(paths, maps, num_partitions):
    """The merged stream of every partition is sorted, complete, and keeps each map's order."""
    readers = [RunReader(p) for p in paths]
    all_pairs = [pair for pairs in maps for pair in pairs]
    want = reference_groups(all_pairs, num_partitions)
    for partition in range(num_partitions):
        stream = list(merge_partition(readers, partition))
        encodings = [encode_key(key) for _, key, _ in stream]
        assert encodings == sorted(encodings), f"partition {partition} not sorted"
        assert all(partition_for(key, num_partitions) == partition for _, key, _ in stream)
        groups = [(key, list(values)) for key, values in group_pairs(iter(stream))]
        assert [tag(k) for k, _ in groups] == [tag(k) for k, _ in want[partition]]
        for (key, values), (_, want_values) in zip(groups, want[partition]):
            assert sorted(values) == sorted(want_values), f"values of {key!r}"
            for map_id in range(len(maps)):
                mine = [v for v in values if v[0] == map_id]
                assert mine == sorted(mine), f"values of {key!r} from map {map_id} out of emission order"


def test_merging_maps_with_different_key_columns(tmp_path):
    # str-only, int-only, int beyond int64, mixed and surrogate keys: every key column kind
    rng = random.Random("maps")
    pools = [KEY_POOLS["str"], KEY_POOLS["int"], [2**64, -(2**64), 5, 7], KEY_POOLS["mixed"],
             KEY_POOLS["surrogate_str"]]
    maps = [[(key, (map_id, seq)) for seq, key in enumerate(skewed(rng, pool, 1300))]
            for map_id, pool in enumerate(pools)]
    paths = [write_map(tmp_path, f"map-{i}", pairs, 4)[0] for i, pairs in enumerate(maps)]
    check_merged(paths, maps, 4)


def test_merging_maps_with_the_same_hot_keys(tmp_path):
    rng = random.Random("hot")
    maps = [[(key, (map_id, seq)) for seq, key in enumerate(skewed(rng, WORDS[:5], 1100 + 300 * map_id))]
            for map_id in range(4)]
    paths = [write_map(tmp_path, f"map-{i}", pairs, 3)[0] for i, pairs in enumerate(maps)]
    check_merged(paths, maps, 3)


# -- property test ---------------------------------------------------------------------------
SURROGATES = st.sampled_from(["\ud800", "\udc80", "\udfff"])
key_families = {
    "str": st.text(st.one_of(st.sampled_from(["a", "b", "\x00", "é", "\U0001d11e"]), SURROGATES), max_size=4),
    "int": st.one_of(st.integers(-300, 300), st.integers(-(2**70), 2**70)),
    "tuple": st.tuples(st.sampled_from(["u", "v", ""]), st.integers(-3, 3), st.binary(max_size=2)),
}
key_families["mixed"] = st.one_of(
    st.none(), st.booleans(), key_families["int"], st.floats(allow_nan=False).filter(lambda x: x != 0.0),
    st.binary(max_size=3), key_families["str"], key_families["tuple"], st.just(0.0),
)
value_families = {
    "int": st.integers(-(2**62), 2**62),
    "big_int": st.integers(-(2**80), 2**80),
    "float": st.floats(),
    "str": st.text(max_size=5),
    "mixed": st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3), st.binary(max_size=3),
                       st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                       st.builds(Point, st.integers(), st.text(max_size=2))),
}


@pytest.mark.parametrize("windows", ["default", "tiny"])
@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_maps_read_back_like_the_reference(tmp_path_factory, monkeypatch, windows, data):
    if windows == "tiny":  # batches of 2 rows, merged 4 rows at a time: keys straddle windows
        monkeypatch.setattr(shuffle, "BATCH_ROWS", 2)
        monkeypatch.setattr(shuffle, "MERGE_WINDOW_ROWS", 4)
    folder = tmp_path_factory.mktemp("maps")
    key_family = data.draw(st.sampled_from(sorted(key_families)), label="key family")
    value_family = data.draw(st.sampled_from(sorted(value_families)), label="value family")
    pool = data.draw(st.lists(key_families[key_family], min_size=1, max_size=8, unique_by=encode_key), label="keys")
    hot = st.just(pool[0])
    keys = st.one_of(hot, hot, st.sampled_from(pool))  # about two thirds of pairs on one key
    num_partitions = data.draw(st.integers(1, 5), label="partitions")
    num_maps = data.draw(st.integers(1, 3), label="maps")
    maps = []
    paths = []
    for map_id in range(num_maps):
        pairs = data.draw(st.lists(st.tuples(keys, value_families[value_family]), max_size=40), label=f"map {map_id}")
        spill_at = data.draw(st.sets(st.integers(0, max(0, len(pairs) - 1)), max_size=4), label="spill at")
        paths.append(write_map(folder, f"map-{map_id}", pairs, num_partitions, spill_at=spill_at)[0])
        maps.append(pairs)
    got = read_groups(paths, num_partitions)
    want = reference_groups([pair for pairs in maps for pair in pairs], num_partitions)
    # maps are read in order, so a key's values come map after map, each in emission order
    assert tagged(got) == tagged(want)


# -- the buffer's own grouped loop (a per-record map with a combiner) ------------------------
def feed_records(folder, records, num_partitions, combiner, buffer_bytes, chunk_size=1024):
    """Run ``records`` (each the list of pairs its map call yields) through the buffer's
    own grouped loop in chunks, as a map task does; returns the run, records read, pairs
    counted and spills."""
    folder.mkdir()
    buffer = MapOutputBuffer(str(folder), num_partitions, partition_for, combiner, buffer_bytes)
    numbered = list(enumerate(records))
    chunks = [(len(numbered[i:i + chunk_size]), iter(numbered[i:i + chunk_size]))
              for i in range(0, len(numbered), chunk_size)]
    read, emitted = buffer.feed_loop()(lambda _, pairs: iter(pairs), chunks)
    spills = len(buffer.runs)
    return buffer.close(str(folder / "map.arrow")), read, emitted, spills


def identity_combiner(key, values):
    for value in values:
        yield key, value


def sorted_groups(groups):
    return [[(tag(key), sorted(values)) for key, values in part] for part in groups]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_grouped_loop_keeps_every_pair_and_counts_them(tmp_path_factory, data):
    key_family = data.draw(st.sampled_from(sorted(key_families)), label="key family")
    pool = data.draw(st.lists(key_families[key_family], min_size=1, max_size=8, unique_by=encode_key), label="keys")
    pairs = st.lists(st.tuples(st.sampled_from(pool), st.integers(-5, 5)), max_size=6)
    records = data.draw(st.lists(pairs, max_size=60), label="records")
    buffer_bytes = data.draw(st.sampled_from([1, 2048, 1 << 30]), label="buffer bytes")
    chunk_size = data.draw(st.integers(1, 8), label="records per chunk")
    num_partitions = data.draw(st.integers(1, 3), label="partitions")
    path, read, emitted, _ = feed_records(tmp_path_factory.mktemp("feed") / "map", records, num_partitions,
                                          identity_combiner, buffer_bytes, chunk_size)
    everything = [pair for record in records for pair in record]
    assert (read, emitted) == (len(records), len(everything))
    assert sorted_groups(read_groups([path], num_partitions)) == sorted_groups(
        reference_groups(everything, num_partitions))


def test_the_grouped_loop_counts_a_repeated_value_and_the_combiner_still_sees_every_value(tmp_path):
    # word count's ``1`` is only counted per key; a key that also gets other values (before
    # and after a combine, and in the same spill) hands the combiner all of them
    seen = []

    def recording_sum(key, values):
        values = list(values)
        seen.append((key, sorted(values)))
        yield key, sum(values)

    one, other = 1, 10**20  # the repeated object, and values that are not it
    records = ([[("a", one), (f"b{i % 2000}", one)] for i in range(6000)] + [[("a", other), (7, one)]]
               + [[("a", one), (f"c{i}", one)] for i in range(3000)] + [[("a", other + 1)]])
    path, read, emitted, spills = feed_records(tmp_path / "map", records, 2, recording_sum, 256 * 1024, 64)
    assert spills >= 2 and (read, emitted) == (len(records), sum(map(len, records)))
    totals = {}
    for part in read_groups([path], 2):
        for key, values in part:
            totals[key] = totals.get(key, 0) + sum(values)
    expected = {"a": 9000 + 2 * other + 1, 7: 1, **{f"b{i}": 3 for i in range(2000)},
                **{f"c{i}": 1 for i in range(3000)}}
    assert totals == expected
    assert any(key == "a" and other in values and one in values for key, values in seen)


def test_the_grouped_loop_keeps_keys_that_python_finds_equal_apart(tmp_path):
    # 1 == 1.0 == True in a dict, and a bytes key could equal another key's encoded form
    lookalikes = [1, 1.0, True, encode_key(1), "1", (1,), (True,), (1.0,)]
    assert encode_key(1) == _group_key(1)[1]
    records = [[(key, 1)] for key in lookalikes] + [[(key, 1) for key in lookalikes]]
    path, read, emitted, _ = feed_records(tmp_path / "map", records, 1, lambda k, vs: [(k, sum(vs))], 1 << 30)
    got = sorted((tag(key), values) for key, values in read_groups([path], 1)[0])
    assert got == sorted((tag(key), [2]) for key in lookalikes) and emitted == 2 * len(lookalikes)


def test_the_grouped_loop_spills_when_a_map_starts_yielding_late(tmp_path):
    # no pairs for the first records, so the pairs-per-record estimate starts at zero
    records = [[] for _ in range(5000)] + [[(f"key{i:06d}-{j}", 1) for j in range(20)] for i in range(5000)]
    path, read, emitted, spills = feed_records(tmp_path / "map", records, 2, identity_combiner, 256 * 1024)
    assert spills >= 3, "the buffer never noticed it was full"
    assert (read, emitted) == (10000, 100000)
    assert sum(len(part) for part in read_groups([path], 2)) == 100000


def test_the_grouped_loop_reports_an_unhashable_key_as_a_bad_key(tmp_path):
    with pytest.raises(pymr.KeyTypeError, match="list"):
        feed_records(tmp_path / "map", [[("a", 1)], [(["a"], 1)]], 1, identity_combiner, 1 << 30)


def test_a_type_error_in_map_is_the_users_own(tmp_path):
    buffer = MapOutputBuffer(str(tmp_path), 1, partition_for, identity_combiner, 1 << 30)

    def map_(_, value):
        yield "a", 1
        raise TypeError(f"bad record {value}")

    with pytest.raises(TypeError, match="bad record x"):
        buffer.feed_loop()(map_, [(1, iter([(0, "x")]))])


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [4, 5, -1, 100, 1.0, "0", None, True])
def test_partition_out_of_range_is_a_clear_value_error(tmp_path, bad):
    buffer = MapOutputBuffer(str(tmp_path), 4, lambda key, n: bad)
    buffer.add("key", 1)
    with pytest.raises(ValueError) as info:
        buffer.close(str(tmp_path / "map.arrow"))
    message = str(info.value)
    assert "partition" in message and repr(bad) in message and "0..3" in message


def test_partition_out_of_range_on_a_spill(tmp_path):
    buffer = MapOutputBuffer(str(tmp_path), 2, lambda key, n: 0 if key < 1500 else n, buffer_bytes=1)
    with pytest.raises(ValueError, match="partition"):
        for i in range(3000):
            buffer.add(i, i)
        buffer.close(str(tmp_path / "map.arrow"))


@pytest.mark.parametrize("key, type_name", [([1], "list"), ({"a": 1}, "dict"), (Point(1, 2), "Point")])
def test_unsupported_key_raises_key_type_error(tmp_path, key, type_name):
    for partitioner in (partition_for, lambda k, n: 0):
        buffer = MapOutputBuffer(str(tmp_path), 2, partitioner)
        buffer.add("fine", 1)
        buffer.add(key, 2)
        with pytest.raises(pymr.KeyTypeError, match=type_name):
            buffer.close(str(tmp_path / "map.arrow"))
