"""Map output on disk: sorted, partitioned Arrow IPC runs, and their merge on the reduce side.

A map task appends its pairs to a ``MapOutputBuffer``. When the buffer's estimated
size passes its limit, the buffer is *spilled*: every pair gets its partition (the
job's ``partition``), the pairs are sorted by ``(partition, key)`` in Arrow, the
combiner (if any) runs over each key's values, and the result is written as one *run*.
At the end of the task the runs are merged into one run file, the map output.

Run file layout (Arrow IPC file format, one file per map attempt):

* columns ``key`` and ``value``. ``key`` is ``large_string`` when every key of the
  run is a ``str``, ``int64`` when every key is an ``int`` that fits, and otherwise
  ``large_binary`` holding ``keys.encode_key`` (order-preserving bytes). ``value`` is
  ``large_string`` / ``int64`` / ``float64`` when every value has that type, else
  ``large_binary`` pickles.
* each partition's rows are whole record batches; the file footer's metadata
  ``pymr.index`` is a JSON list ``[[first_batch, num_batches, num_rows], ...]`` with
  one entry per partition, so a reducer reads only its batches, memory-mapped.

A reducer opens the runs of its partition from every map output and merges them with
a streaming k-way merge (one batch per run in memory), then groups equal keys.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import pickle
import resource
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import gt, itemgetter, not_
from typing import Any

import cloudpickle
import pyarrow as pa
import pyarrow.compute as pc

from . import keys as keyenc
from . import progress
from .aggregate import aggregate_table, arrow_ok, merge_aggregate, python_aggregate
from .errors import KeyTypeError
from .grouping import Block, apply_per_key, function_name, key_groups, returned_none, single_groups
from .merge import merge_windows

DEFAULT_BUFFER_BYTES = 128 * 1024 * 1024  # the distinct words of a 32 MiB split of text (about 180 bytes each)
BATCH_ROWS = 8192
MERGE_WINDOW_ROWS = 262144  # rows held over all runs while merging them (at least a batch each)
MERGE_FACTOR = 16  # runs merged at once
MIN_RUNS_TO_COMBINE = 3  # a merge of fewer runs skips the combiner: Arrow merges them, no row in Python (as Hadoop)
_INT64 = (-(2**63), 2**63 - 1)
_KEY_TYPES = {"str": pa.large_string(), "int": pa.int64(), "enc": pa.large_binary()}
_VALUE_TYPES = {"str": pa.large_string(), "int": pa.int64(), "float": pa.float64(), "pickle": pa.large_binary()}

Partitioner = Callable[[Any, int], int]
Combiner = Callable[[Any, Iterator[Any]], Iterable[tuple[Any, Any]]]


class MapOutputBuffer:
    """Collects a map task's pairs in bounded memory and writes its sorted, partitioned runs.

    Three ways in, chosen by the job:

    * plain pairs (``add``): kept in two lists, sorted in Arrow at each spill;
    * pairs of a job with a combiner or a built-in ``aggregate`` (``add`` as well): kept
      in a dict by key, so each distinct key is held once; a combiner runs over a key's
      values whenever the buffer fills (and the buffer spills only when that does not
      free enough), an aggregate keeps one running value per key. In the per-record
      loop (``feed_loop``) a str key whose value is the very object the last pairs had
      (word count's ``1``) is only counted (``repeats``), as a hand-written fold would:
      appending it to a list cost half as much again as the whole fold;
    * Arrow tables from ``map_batch`` (``add_table``): ``key``/``value`` columns, kept
      as tables and aggregated in C at spill time.
    """

    def __init__(
        self,
        directory: str,
        num_partitions: int,
        partitioner: Partitioner,
        combiner: Combiner | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        on_combine: Callable[[int, int], None] | None = None,
        aggregate: str | None = None,
        default_partitioner: bool = False,
    ):
        self.directory = directory
        self.num_partitions = num_partitions
        self.partitioner = partitioner
        self.default_partitioner = default_partitioner
        self.aggregate = aggregate
        self.combiner = combiner if aggregate is None else _aggregate_combiner(aggregate)
        self.buffer_bytes = buffer_bytes
        self.on_combine = on_combine
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.groups: dict[Any, Any] = {}
        self.repeats: dict[str, int] = {}  # key -> how many of its values are ``self.common``
        self.common: Any = _MISSING  # the one value object ``repeats`` counts
        self.listed_share = 1.0  # of the pairs held, those in ``groups`` lists (as of the last count)
        self.tables: list[pa.Table] = []
        self.table_bytes = 0
        self.buffered = 0
        self.runs: list[str] = []
        self.spilled_records = 0
        self._first_check = 1024 if buffer_bytes >= 1 << 20 else 16  # tiny buffers (tests) check early
        self.next_check = self._first_check
        self._counted = 0
        self._added = 0
        if aggregate is not None:
            self.put = self._add_aggregated(aggregate)  # type: ignore[method-assign]
        elif combiner is not None:
            self.put = self._add_grouped()  # type: ignore[method-assign]

    # -- taking pairs in ------------------------------------------------------------------
    # ``add`` is called once per pair a map emits: the hot path of a per-record job, so it
    # is a closure over local names and counts nothing; the caller counts the pairs it
    # added and calls ``check(total)`` once per input record, which is cheap until
    # ``total`` reaches ``next_check``.
    def add(self, key: Any, value: Any) -> None:
        """Add one pair (counted and checked; the map loop uses ``put`` and ``check``)."""
        self.put(key, value)
        self._added += 1
        self.check(self._added)

    def put(self, key: Any, value: Any) -> None:
        self.keys.append(key)
        self.values.append(value)

    def _add_grouped(self) -> Callable[[Any, Any], None]:
        groups = self.groups
        held_values = groups.get
        encode = _group_key

        def add(key: Any, value: Any) -> None:
            # A dict would take 1, 1.0 and True for one key: only str keys are used as they are.
            if type(key) is not str:
                key = encode(key)
            held = held_values(key)
            if held is None:
                groups[key] = [value]
            else:
                held.append(value)

        return add

    def _add_aggregated(self, name: str) -> Callable[[Any, Any], None]:
        groups = self.groups
        fold = _FOLDS[name]
        encode = _group_key

        def add(key: Any, value: Any) -> None:
            if type(key) is not str:
                key = encode(key)
            groups[key] = fold(groups.get(key, _MISSING), value)

        return add

    def feed_loop(self) -> Callable[[Callable, Iterable[tuple[int, Iterable]]], tuple[int, int]] | None:
        """The buffer's own per-record loop, ``loop(map, chunks) -> (records, pairs)``
        over ``(count, records)`` chunks (``InputFormat.record_chunks``), or None (an
        aggregate folds with ``put``). The hot loop of a per-record job: inlined here,
        each pair costs a dict lookup and a list append, and no function call or count
        of ours."""
        if self.aggregate is not None:
            return None
        return self._feed_grouped if self.combiner is not None else self._feed_plain

    def _feed_grouped(self, map_, chunks) -> tuple[int, int]:
        """Group every pair by key; the pairs held are counted (a pass over the dict)
        only when ``_PairMeter`` says a check may be due, never per pair.

        A pair whose value is ``common`` and whose key is a str is only counted in
        ``repeats``. Any other pair is appended to its key's list in ``groups``; while
        nothing is counted, its value becomes ``common`` (so the first pairs pick it).
        In both dicts only a new key's type is looked at: a str is kept as it is,
        anything else goes through ``put`` (``_group_key``), so 1, 1.0 and True stay
        three keys. A non-str key never finds a slot it does not own: the dicts hold str
        keys and tagged tuples that no user key equals (only a str subclass, which
        fails as a key anyway, could equal a str)."""
        groups, put, repeats = self.groups, self.put, self.repeats
        held_values, repeated = groups.get, repeats.get
        common = self.common
        meter = _PairMeter(self)
        read = 0
        out_key = None
        try:
            for count, chunk in chunks:
                for key, value in chunk:
                    pairs = map_(key, value)  # (a local: errors point at its yield)
                    for out_key, out_value in pairs:
                        if out_value is common:
                            n = repeated(out_key)
                            if n is not None:  # a key counted before: a str (or equal to one)
                                repeats[out_key] = n + 1
                                continue
                            if type(out_key) is str:
                                repeats[out_key] = 1
                                continue
                        if not repeats:
                            common = out_value
                        held = held_values(out_key)
                        if held is None:
                            if type(out_key) is str:
                                groups[out_key] = [out_value]
                            else:
                                put(out_key, out_value)
                        else:
                            held.append(out_value)
                read += count
                if meter.due(count):
                    self.common = common  # what ``repeats`` counts, for a combine or spill
                    meter.check()
        except TypeError:
            _raise_if_unhashable(out_key)
            raise
        finally:
            self.common = common
        meter.count()
        return read, meter.emitted

    def _feed_plain(self, map_, chunks) -> tuple[int, int]:
        keys, values, check = self.keys, self.values, self.check
        add_key, add_value = keys.append, values.append
        read = spilled = 0
        next_check = self.next_check
        for count, chunk in chunks:
            for key, value in chunk:
                pairs = map_(key, value)  # (a local: errors point at its yield)
                for out_key, out_value in pairs:
                    add_key(out_key)
                    add_value(out_value)
                if spilled + len(keys) >= next_check:
                    before = len(keys)
                    check(spilled + before)
                    spilled += before - len(keys)
                    next_check = self.next_check
            read += count
        check(spilled + len(keys))
        return read, spilled + len(keys)

    def check(self, total: int) -> None:
        """``total`` pairs were added so far: compact or spill if the buffer is full."""
        if total >= self.next_check:
            self.buffered += total - self._counted
            self._counted = total
            self._check_size()

    def add_table(self, table: pa.Table) -> None:
        """Take ``key``/``value`` columns from a batch map, as they are."""
        if table.num_rows:
            self.tables.append(_normalize_table(table))
            self.table_bytes += table.nbytes
            if self.table_bytes >= self.buffer_bytes:
                self.spill()

    def _check_size(self) -> None:
        size, key_bytes, per_value = self._size()
        if size >= self.buffer_bytes:
            # combining frees values, never keys: worth a pass over every key only if the keys leave room
            if self.groups and not self.aggregate and key_bytes < self.buffer_bytes / 2:
                size = key_bytes + self._compact() * per_value  # what is left in lists
            if size >= self.buffer_bytes / 2:
                self.spill()
        self._schedule_check()

    def _schedule_check(self) -> None:
        held_now = len(self.keys) if self.keys else self.buffered  # after any spill or compaction
        self.next_check = self._counted + max(self._first_check, held_now // 8)

    def _size(self) -> tuple[float, float, float]:
        """The estimated bytes held (with ``buffered`` pairs), the keys' part of them, and
        the bytes per value (a pair only counted in ``repeats`` holds none)."""
        key_bytes = per_value = 0.0
        if self.groups or self.repeats:
            most = self.groups if len(self.groups) >= len(self.repeats) else self.repeats
            sample = list(itertools.islice(most, 64))
            per_key = 120 + sum(map(sys.getsizeof, sample)) / len(sample)
            if self.aggregate:
                key_bytes, per_value = len(self.groups) * (per_key + 32), 0.0
            else:
                values = [v for held in itertools.islice(self.groups.values(), 64) for v in held[:4]]
                key_bytes = (len(self.groups) + len(self.repeats)) * per_key
                per_value = 8 + (sum(map(_owned_size, values)) / len(values) if values else 0)
            size = key_bytes + self.buffered * self.listed_share * per_value
        else:
            held = len(self.keys)
            sample_range = range(max(0, held - 64), held)
            size = held * (72 + sum(_owned_size(self.keys[i]) + _owned_size(self.values[i])
                                    for i in sample_range) / max(1, len(sample_range)))
        return size, key_bytes, per_value

    def _compact(self) -> int:
        """Combine the values of every key that holds more than one, in the buffer
        (what the combiner yields is added back as map output); returns the values left."""
        groups = self.groups
        slots, held = list(groups), list(groups.values())
        before = sum(map(len, held))
        many = list(map(gt, map(len, held), itertools.repeat(1)))
        many_slots, many_held = list(itertools.compress(slots, many)), list(itertools.compress(held, many))
        keys = _slot_keys(many_slots)
        combined = list(apply_per_key(self.combiner, [(keys, map(iter, many_held))], function_name(self.combiner)))
        deque(map(list.clear, many_held), maxlen=0)
        for chunk_keys, chunk_values in combined:
            deque(map(self.put, chunk_keys, chunk_values), maxlen=0)
        for slot in itertools.compress(many_slots, map(not_, many_held)):  # a key the combiner dropped or moved
            del groups[slot]
        left = sum(map(len, groups.values()))
        self._held(left)
        if self.on_combine is not None:
            self.on_combine(before, left)
        return left

    def _held(self, listed: int) -> int:
        """Set ``buffered`` (and ``listed_share``) from the pairs in lists; returns all pairs held."""
        self.buffered = held = listed + sum(self.repeats.values())
        self.listed_share = listed / held if held else 1.0
        return held

    # -- writing runs ---------------------------------------------------------------------
    def spill(self) -> None:
        """Sort (and combine) what is buffered and write it as one run."""
        table, distinct = self._take_buffered()
        if table is None or not table.num_rows:
            return
        if self.aggregate is not None and not distinct:
            table, distinct = self._aggregate_partials(table), True
        path = os.path.join(self.directory, f"spill-{len(self.runs):05d}.arrow")
        self.spilled_records += table.num_rows
        write_table_run(path, table, self._partition_array(table.column("key"), distinct), self.num_partitions)
        self.runs.append(path)

    def _take_buffered(self) -> tuple[pa.Table | None, bool]:
        """What is buffered, as one table, and whether its keys are known to be distinct."""
        parts: list[tuple[pa.Table, bool]] = []
        if self.keys:
            keys, values = self.keys.copy(), self.values.copy()
            self.keys.clear()  # in place: the feed loop holds these lists
            self.values.clear()
            if self.combiner is not None and self.aggregate is None:
                keys, values = self._combine_sorted(keys, values)
            parts.append((pairs_table(keys, values), False))
        if self.groups or self.repeats:
            parts.append(self._groups_table())
        if self.tables:
            arrow = pa.concat_tables(self.tables, promote_options="permissive")
            self.tables, self.table_bytes = [], 0
            parts.append(self._combine_table(arrow))
        if len(parts) <= 1:
            return parts[0] if parts else (None, False)
        return _concat([table for table, _ in parts]), False

    def _aggregate_partials(self, table: pa.Table) -> pa.Table:
        """One row per key of an aggregate's partial values (its groups and its ``map_batch``
        tables, aggregated apart, may share keys): the reduce side merges an aggregate's
        runs as holding each key once."""
        if arrow_ok(self.aggregate, table.schema.field("value").type, "reduce"):
            return aggregate_table(table, self.aggregate, "reduce")
        return pairs_table(*self._combine_sorted(*_table_columns(table)))

    def _groups_table(self) -> tuple[pa.Table, bool]:
        """The held groups as pairs, and whether each key is in one pair only."""
        slots, held = list(self.groups), list(self.groups.values())
        repeats = self.repeats.copy()
        self.repeats.clear()  # in place, as groups: the feed loop holds both
        self.groups.clear()
        self.buffered, self.listed_share = 0, 1.0
        keys = _slot_keys(slots)
        if self.aggregate:
            return pairs_table(keys, held), True
        return self._combine_groups(keys, held, repeats)

    def _combine_groups(self, keys: list[Any], held: list[list[Any]], repeats: dict[str, int]) -> tuple[pa.Table, bool]:
        """The combiner over every key with more than one value, driven from C; a key
        with one value is taken as it is. A key's values are ``repeats[key]`` times
        ``self.common``, then its list. The keys stay distinct unless the combiner
        changes them or gives more than one pair for a key."""
        common = self.common
        if repeats and keys:  # keys with repeated and listed values: one iterator of both
            both = repeats.keys() & set(keys)
            if both:
                for index in [i for i, key in enumerate(keys) if key in both]:
                    held[index] = _Values(common, repeats.pop(keys[index]), held[index])
        lengths = list(map(len, held))  # a _Values holds two or more
        many = list(map(gt, lengths, itertools.repeat(1)))
        out_keys = list(itertools.compress(keys, map(not_, many)))
        out_values = list(map(itemgetter(0), itertools.compress(held, map(not_, many))))
        counts = list(repeats.values())
        repeated_many = list(map(gt, counts, itertools.repeat(1)))
        repeated_once = list(itertools.compress(repeats, map(not_, repeated_many)))
        out_keys += repeated_once
        out_values += [common] * len(repeated_once)
        many_keys = list(itertools.compress(keys, many)) + list(itertools.compress(repeats, repeated_many))
        if not many_keys:
            return pairs_table(out_keys, out_values), True
        block = (many_keys, itertools.chain(map(iter, itertools.compress(held, many)),
                                            map(itertools.repeat, itertools.repeat(common),
                                                itertools.compress(counts, repeated_many))))
        combined_keys: list[Any] = []
        single = len(out_keys)
        for chunk_keys, chunk_values in apply_per_key(self.combiner, [block], function_name(self.combiner)):
            combined_keys += chunk_keys
            out_values += chunk_values
        if self.on_combine is not None:
            self.on_combine(sum(lengths) + sum(counts), single + len(combined_keys))
        distinct = combined_keys == many_keys
        return pairs_table(out_keys + combined_keys, out_values), distinct

    def _combine_table(self, table: pa.Table) -> tuple[pa.Table, bool]:
        """The buffered tables combined, and whether their keys are known to be distinct
        (an Arrow aggregate's are: then no dictionary is needed to partition them)."""
        if self.aggregate is not None:
            if arrow_ok(self.aggregate, table.schema.field("value").type, "map"):
                combined = aggregate_table(table, self.aggregate, "map")
                if self.on_combine is not None:
                    self.on_combine(table.num_rows, combined.num_rows)
                return combined, True
        if self.combiner is None:
            return table, False
        keys, values = _table_columns(table)
        return pairs_table(*self._combine_sorted(keys, values)), self.aggregate is not None  # one pair per key

    def _combine_sorted(self, keys: list[Any], values: list[Any]) -> tuple[list[Any], list[Any]]:
        """Run the combiner over each key's values, in sorted order."""
        table = pairs_table(keys, values)
        order = pc.sort_indices(table, sort_keys=[("key", "ascending")])
        out_keys: list[Any] = []
        out_values: list[Any] = []
        for key, group in group_pairs(_table_pairs(table.take(order))):
            pairs = self.combiner(key, group)
            if pairs is None:
                raise returned_none(function_name(self.combiner))
            for new_key, new_value in pairs:
                out_keys.append(new_key)
                out_values.append(new_value)
        if self.on_combine is not None:
            self.on_combine(len(keys), len(out_keys))
        return out_keys, out_values

    def _partition_array(self, keys: pa.ChunkedArray, distinct: bool = False) -> pa.Array:
        """The partition of every key: hashed once per distinct key, in C where possible
        (``distinct``: the keys are known to be so, and need no dictionary to find out)."""
        count = self.num_partitions
        if count == 1:
            return pa.nulls(len(keys), pa.int32()).fill_null(0)
        in_arrow = getattr(self.partitioner, "partition_array", None)  # a range partitioner's C path
        if in_arrow is not None:
            parts = in_arrow(keys)
            if parts is not None:
                return parts
        column = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        encoded = None if distinct else pc.dictionary_encode(column)
        unique = column if encoded is None else encoded.dictionary
        if self.default_partitioner and keys.type in (pa.large_string(), pa.large_binary()):
            # keys.partition_for in C: crc32 of the key's encoded form, the str tag as the seed
            seed = _STR_CRC if keys.type == pa.large_string() else 0
            raw = unique.cast(pa.large_binary()).to_pylist()
            parts = [crc % count for crc in map(zlib.crc32, raw, itertools.repeat(seed))]
        else:
            unique_keys = unique.to_pylist()
            if keys.type == pa.large_binary():
                unique_keys = [keyenc.decode_key(k) for k in unique_keys]
            partitioner = self.partitioner
            parts = [partitioner(k, count) for k in unique_keys]
            if not all(type(p) is int and 0 <= p < count for p in parts):
                bad = next(p for p in parts if type(p) is not int or not 0 <= p < count)
                raise ValueError(f"partition() returned {bad!r}; it must be an int in 0..{count - 1}")
        array = pa.array(parts, pa.int32())
        return array if encoded is None else array.take(encoded.indices)

    def close(self, final_path: str) -> str:
        """Spill what is left and leave exactly one run at ``final_path``."""
        self.spill()
        if not self.runs:
            write_run(final_path, [], [], [], self.num_partitions)
        else:
            runs = self._merge_down(self.runs)
            if len(runs) == 1:
                os.replace(runs[0], final_path)
            else:
                self._merge(runs, final_path)
        self.runs = [final_path]
        return final_path

    def _merge_down(self, runs: list[str]) -> list[str]:
        """Merge runs in passes of ``MERGE_FACTOR`` until that few are left, so that a
        merge never holds more than ``MERGE_FACTOR`` batches in memory (Hadoop's io.sort.factor)."""
        passes = 0
        while len(runs) > MERGE_FACTOR:
            passes += 1
            merged = []
            for start in range(0, len(runs), MERGE_FACTOR):
                group = runs[start:start + MERGE_FACTOR]
                if len(group) == 1:
                    merged.append(group[0])
                    continue
                path = os.path.join(self.directory, f"merge-{passes}-{start:05d}.arrow")
                self._merge(group, path)
                merged.append(path)
            runs = merged
        return runs

    def _merge(self, runs: list[str], path: str) -> None:
        if not (self.aggregate and merge_aggregated_runs(runs, path, self.num_partitions, self.aggregate)):
            # an aggregate's runs are always combined: the reduce side takes each key once per run
            combiner = self.combiner if len(runs) >= MIN_RUNS_TO_COMBINE or self.aggregate else None
            merge_run_files(runs, path, self.num_partitions, combiner)
        for run in runs:
            os.unlink(run)


_MISSING = object()
_SHARED_REFS = 16


def _owned_size(value: Any) -> int:
    """The bytes a buffered value adds: none if it is shared (word count's ``1``, an
    interned string), else its size. Counting a shared int once per pair overstated a
    word count's buffer 4-fold, and it combined and spilled long before it was full."""
    return 0 if sys.getrefcount(value) > _SHARED_REFS else sys.getsizeof(value)


def _fold_sum(current: Any, value: Any) -> Any:
    return value if current is _MISSING else current + value


def _fold_count(current: Any, value: Any) -> int:
    return 1 if current is _MISSING else current + 1


def _fold_min(current: Any, value: Any) -> Any:
    return value if current is _MISSING or value < current else current


def _fold_max(current: Any, value: Any) -> Any:
    return value if current is _MISSING or value > current else current


_FOLDS = {"sum": _fold_sum, "count": _fold_count, "min": _fold_min, "max": _fold_max}


_ENCODED = object()  # tags the buffer's slot of a non-str key: no key a map yields equals (_ENCODED, ...)


def _group_key(key: Any) -> tuple[object, bytes]:
    return _ENCODED, keyenc.encode_key(key)


def _slot_keys(slots: list[Any]) -> list[Any]:
    """The keys of the buffer's dict slots: a str as it is, anything else from ``_group_key``'s bytes."""
    return slots if _only_type(slots, str) else [s if type(s) is str else keyenc.decode_key(s[1]) for s in slots]


def _raise_if_unhashable(key: Any) -> None:
    """A map that yields a list or dict key fails as any bad key does, not with "unhashable type"."""
    try:
        hash(key)
    except TypeError:
        _group_key(key)  # raises KeyTypeError, naming the key's type


class _PairMeter:
    """Keeps the buffer's size checks going for a grouped map loop that counts no pairs.

    Between chunks of records it estimates the pairs held from the pairs per record of
    the last exact count, and checks the buffer's size with that estimate. It counts
    the pairs exactly (one pass over the dict) only when the estimate says the buffer
    is full (before the buffer combines or spills, so the counters stay exact), for
    the first chunk, whenever the records read have doubled, when the process's
    resident memory grew by an eighth of the buffer more than the estimate accounts
    for (a map whose output per record grew), and at the end.
    """

    def __init__(self, buffer: MapOutputBuffer):
        self.buffer = buffer
        self.emitted = 0  # exact, as of the last count
        self.base = _held_pairs(buffer)  # pairs held at the last count (none, usually)
        self.records = self.since = 0  # records read; of those, since the last count
        self.per_record: float | None = None
        self.rss_at_count = _resident_bytes()
        self.rss_step = buffer.buffer_bytes // 8
        self.bytes_per_pair = 0.0  # of the buffer's estimate, at the last count
        self.must_count = True

    def due(self, records: int) -> bool:
        """Whether the buffer may have reached its next check (cheap: called per chunk)."""
        self.records += records
        self.since += records
        self.must_count = (self.per_record is None or self.since >= self.records - self.since  # records doubled
                           or _resident_bytes() - self.rss_at_count > self._rss_allowance())
        return self.must_count or self.emitted + self.since * self.per_record >= self.buffer.next_check

    def _rss_allowance(self) -> float:
        """The growth of resident memory the estimate accounts for, plus an eighth of the buffer."""
        return self.rss_step + self.since * self.per_record * self.bytes_per_pair

    def check(self) -> None:
        """Check the buffer's size with the estimate; count exactly where that matters."""
        buffer = self.buffer
        if not self.must_count:
            estimate = round(self.since * self.per_record)
            buffer.buffered = self.base + estimate
            if buffer._size()[0] < buffer.buffer_bytes:
                buffer._counted = self.emitted + estimate
                buffer._schedule_check()
                return
        self.count()

    def count(self) -> None:
        """Count the pairs exactly and let the buffer check its size (it may combine or spill)."""
        buffer = self.buffer
        held = _held_pairs(buffer)
        self.emitted += held - self.base
        self.per_record = self.emitted / self.records if self.records else None
        self.since = 0
        buffer.buffered, buffer._counted = held, self.emitted
        self.bytes_per_pair = buffer._size()[0] / held if held else 0.0
        buffer._check_size()
        self.base = buffer.buffered  # what combining or a spill left
        self.rss_at_count = _resident_bytes()


def _held_pairs(buffer: MapOutputBuffer) -> int:
    """The pairs a grouped buffer holds, exactly (sets its ``buffered`` and ``listed_share``)."""
    return buffer._held(sum(map(len, buffer.groups.values())))


class _Values:
    """A key's values held as ``count`` times one object, then a list: what the combiner iterates."""

    __slots__ = ("value", "count", "rest")

    def __init__(self, value: Any, count: int, rest: list[Any]):
        self.value, self.count, self.rest = value, count, rest

    def __len__(self) -> int:
        return self.count + len(self.rest)

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain(itertools.repeat(self.value, self.count), self.rest)


def _resident_bytes() -> int:
    """This process's resident memory now (from /proc on Linux; elsewhere its peak so far)."""
    global _STATM
    if _STATM is None or _STATM[0] != os.getpid():
        try:
            _STATM = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY))
        except OSError:
            _STATM = (os.getpid(), -1)
    if _STATM[1] >= 0:
        return int(os.pread(_STATM[1], 64, 0).split()[1]) * _PAGE_BYTES
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux and the BSDs report KiB


_STATM: tuple[int, int] | None = None  # (pid, descriptor of /proc/self/statm), opened once per process
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _aggregate_combiner(name: str) -> Combiner:
    """The reduce-side form of an aggregate, for merging runs (a count's partial counts add up)."""
    def combine(key: Any, values: Iterator[Any]) -> Iterable[tuple[Any, Any]]:
        return python_aggregate(name, "reduce", key, values)

    return combine


def pairs_table(keys: Sequence[Any], values: Sequence[Any]) -> pa.Table:
    """``key``/``value`` columns for Python pairs, typed where every key or value allows."""
    key_types = set(map(type, keys))  # in C: no Python call per key
    if not key_types <= _ALLOWED_KEY_TYPES:
        bad = next(k for k in keys if type(k) not in _ALLOWED_KEY_TYPES)
        keyenc.encode_key(bad)  # raises KeyTypeError naming the key
    kind = _key_kind(keys, key_types) if keys else "str"
    return pa.table({"key": _key_array(keys, kind), "value": _value_array(values, _value_kind(values))})


def _normalize_table(table: pa.Table) -> pa.Table:
    """A batch map's table with pymr's column types (large_string, int64, float64, ...)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if table.column_names[:2] != ["key", "value"]:
        raise ValueError(f"map_batch must return a table with columns key and value, got {table.column_names}")
    columns = []
    for name, kinds, fallback in (("key", _KEY_TYPES, "enc"), ("value", _VALUE_TYPES, "pickle")):
        column = table.column(name)
        target = _ARROW_TARGETS.get(column.type)
        if target is None and column.type not in kinds.values():
            pylist = column.to_pylist()
            column = _key_array(pylist, _key_kind(pylist)) if name == "key" else _value_array(pylist, _value_kind(pylist))
        elif target is not None:
            column = column.cast(target)
        columns.append(column)
    return pa.table({"key": columns[0], "value": columns[1]})


_ARROW_TARGETS = {pa.string(): pa.large_string(), pa.int32(): pa.int64(), pa.int16(): pa.int64(),
                  pa.int8(): pa.int64(), pa.uint8(): pa.int64(), pa.uint16(): pa.int64(), pa.uint32(): pa.int64(),
                  pa.float32(): pa.float64()}


def _table_columns(table: pa.Table) -> tuple[list[Any], list[Any]]:
    triples = list(_table_pairs(table))
    return [t[1] for t in triples], [t[2] for t in triples]


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate key/value tables whose column types may differ (falling back to encoded/pickled)."""
    key_types = {t.schema.field("key").type for t in tables}
    value_types = {t.schema.field("value").type for t in tables}
    if len(key_types) == 1 and len(value_types) == 1:
        return pa.concat_tables(tables)
    keys, values = [], []
    for table in tables:
        k, v = _table_columns(table)
        keys += k
        values += v
    return pairs_table(keys, values)


# -- writing runs ------------------------------------------------------------------------
def _only_type(items: Iterable[Any], kind: type) -> bool:
    """Whether every item is exactly of type ``kind`` (checked in C)."""
    return set(map(type, items)) <= {kind}


def _key_kind(keys: Sequence[Any], types: set[type] | None = None) -> str:
    types = set(map(type, keys)) if types is None else types
    if types <= {str}:
        return "str"
    if types == {int} and _INT64[0] <= min(keys) and max(keys) <= _INT64[1]:
        return "int"
    return "enc"


def _value_kind(values: Sequence[Any]) -> str:
    types = set(map(type, values))
    if len(types) != 1:
        return "pickle"
    first = types.pop()
    if first not in (str, int, float):
        return "pickle"
    if first is int and not (_INT64[0] <= min(values) and max(values) <= _INT64[1]):
        return "pickle"
    return {str: "str", int: "int", float: "float"}[first]


def _key_array(keys: Sequence[Any], kind: str) -> pa.Array:
    if kind == "enc":
        return pa.array([keyenc.encode_key(k) for k in keys], pa.large_binary())
    try:
        return pa.array(keys, _KEY_TYPES[kind])
    except UnicodeEncodeError:  # a str with lone surrogates: keep it exact as encoded bytes
        return _key_array(keys, "enc")


def _value_array(values: Sequence[Any], kind: str) -> pa.Array:
    if kind == "pickle":
        return pa.array([dump_value(v) for v in values], pa.large_binary())
    try:
        return pa.array(values, _VALUE_TYPES[kind])
    except (UnicodeEncodeError, pa.ArrowInvalid):
        return _value_array(values, "pickle")


def dump_value(value: Any) -> bytes:
    """Pickle a value; values of classes defined in a job script need cloudpickle."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return cloudpickle.dumps(value, protocol=5)


_ALLOWED_KEY_TYPES = {str, int, float, bytes, bool, tuple, type(None)}
_STR_CRC = zlib.crc32(keyenc.STR)  # crc32(STR + data) == crc32(data, crc32(STR))


def write_run(path: str, keys, values, partitions, num_partitions: int) -> None:
    """Write pairs as one sorted run file with a per-partition batch index."""
    write_table_run(path, pairs_table(keys, values), pa.array(partitions, pa.int32()), num_partitions)


def write_table_run(path: str, table: pa.Table, partitions: pa.Array, num_partitions: int) -> None:
    """Sort ``key``/``value`` by (partition, key) in Arrow and write them as one run."""
    table = table.append_column("partition", partitions)
    order = pc.sort_indices(table, sort_keys=[("partition", "ascending"), ("key", "ascending")])
    table = table.take(order)
    counts = dict(zip(*(c.to_pylist() for c in pc.value_counts(table.column("partition")).flatten())))
    data = table.select(["key", "value"])
    writer = RunWriter(path, data.schema, num_partitions)
    offset = 0
    for partition in range(num_partitions):
        rows = counts.get(partition, 0)
        writer.start_partition(partition)
        if rows:
            writer.write(data.slice(offset, rows))
        offset += rows
    writer.close()


class _KindMismatch(Exception):
    """Pairs do not fit the column types a run writer was opened with."""


class RunWriter:
    """Writes a run partition by partition; the batch index goes in a last, empty batch."""

    def __init__(self, path: str, schema: pa.Schema, num_partitions: int):
        self.path = path
        self.schema = schema
        self.key_kind = _kind_of(schema.field("key").type, _KEY_TYPES)
        self.value_kind = _kind_of(schema.field("value").type, _VALUE_TYPES)
        self.index = [[0, 0, 0, 0] for _ in range(num_partitions)]
        self.batches = 0
        self.current = 0
        self._sink = pa.OSFile(path, "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)

    def start_partition(self, partition: int) -> None:
        self.current = partition
        self.index[partition][0] = self.batches

    def write(self, table: pa.Table) -> None:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            if batch.num_rows:
                self._writer.write_batch(batch)
                self.batches += 1
                self.index[self.current][1] += 1
                self.index[self.current][2] += batch.num_rows
                self.index[self.current][3] += batch.nbytes

    def write_pairs(self, keys: list[Any], values: list[Any]) -> None:
        """Write pairs already in order; raises ``_KindMismatch`` if they do not fit."""
        if self.key_kind != "enc" and _key_kind(keys) != self.key_kind:
            raise _KindMismatch
        if self.value_kind != "pickle" and _value_kind(values) != self.value_kind:
            raise _KindMismatch
        columns = [_key_array(keys, self.key_kind), _value_array(values, self.value_kind)]
        if columns[0].type != self.schema.field("key").type or columns[1].type != self.schema.field("value").type:
            raise _KindMismatch
        self.write(pa.table(columns, schema=self.schema))

    def close(self) -> None:
        empty = self.schema.empty_table().to_batches()
        last = empty[0] if empty else pa.record_batch([pa.array([], f.type) for f in self.schema], schema=self.schema)
        self._writer.write_batch(last, custom_metadata={INDEX_KEY: json.dumps(self.index)})
        self._writer.close()
        self._sink.close()

    def abort(self) -> None:
        self._sink.close()
        os.unlink(self.path)


INDEX_KEY = "pymr.index"


# -- reading and merging runs --------------------------------------------------------------
class RunReader:
    """Reads one partition of a run file, memory-mapped, batch by batch."""

    def __init__(self, path: str):
        self.path = path
        self._reader = pa.ipc.open_file(pa.OSFile(path))  # not mmap: touched pages would count as RSS
        last = self._reader.get_batch_with_custom_metadata(self._reader.num_record_batches - 1)
        self.index = json.loads(last.custom_metadata[INDEX_KEY.encode()])
        self.key_kind, self.value_kind = kind_of_schema(self._reader.schema)

    def rows(self, partition: int) -> int:
        return self.index[partition][2]

    def nbytes(self, partition: int) -> int:
        return self.index[partition][3]

    def batches(self, partition: int) -> Iterator[pa.RecordBatch]:
        first, count = self.index[partition][:2]
        for i in range(first, first + count):
            batch = self._reader.get_batch(i)
            progress.advance(batch.num_rows)
            yield batch

    def triples(self, partition: int, encoded: bool) -> Iterator[tuple[Any, Any, Any]]:
        """``(sort_key, key, value)``; ``sort_key`` is the key's byte encoding if ``encoded``."""
        for batch in self.batches(partition):
            yield from batch_triples(batch, self.key_kind, self.value_kind, encoded)


def value_type_of(kind: str) -> pa.DataType:
    return _VALUE_TYPES[kind]


def kind_of_schema(schema: pa.Schema) -> tuple[str, str]:
    """The (key kind, value kind) of a run file's schema."""
    return _kind_of(schema.field("key").type, _KEY_TYPES), _kind_of(schema.field("value").type, _VALUE_TYPES)


def _kind_of(arrow_type: pa.DataType, kinds: dict[str, pa.DataType]) -> str:
    return next(kind for kind, t in kinds.items() if t == arrow_type)


def batch_triples(batch: pa.RecordBatch, key_kind: str, value_kind: str, encoded: bool):
    raw_keys = batch.column(0).to_pylist()
    values = batch.column(1).to_pylist()
    if value_kind == "pickle":
        values = [pickle.loads(v) for v in values]
    if key_kind == "enc":
        return zip(raw_keys, map(keyenc.decode_key, raw_keys), values)
    if encoded:
        return zip(map(keyenc.encode_key, raw_keys), raw_keys, values)
    return zip(raw_keys, raw_keys, values)


def _table_pairs(table: pa.Table) -> Iterator[tuple[Any, Any, Any]]:
    kind_k = _kind_of(table.schema.field("key").type, _KEY_TYPES)
    kind_v = _kind_of(table.schema.field("value").type, _VALUE_TYPES)
    for batch in table.select(["key", "value"]).to_batches(max_chunksize=BATCH_ROWS):
        yield from batch_triples(batch, kind_k, kind_v, encoded=False)


def merge_partition(readers: Sequence[RunReader], partition: int) -> Iterator[tuple[Any, Any, Any]]:
    """The sorted ``(sort_key, key, value)`` stream of one partition over many runs:
    merged in Arrow (``pymr.merge``) when the runs share their column types, else by a
    Python heap over the keys' byte encodings."""
    live = [r for r in readers if r.rows(partition)]
    kinds = {(r.key_kind, r.value_kind) for r in live}
    if len(live) > 1 and len(kinds) == 1:
        key_kind, value_kind = kinds.pop()
        return _window_triples(merged_windows(live, partition), key_kind, value_kind)
    key_kinds = {r.key_kind for r in live}
    encoded = len(key_kinds) > 1 or key_kinds == {"enc"}
    streams = [r.triples(partition, encoded) for r in live]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=itemgetter(0))


def partition_groups(readers: Sequence[RunReader], partition: int) -> Iterator[Block]:
    """One partition over many runs grouped by key, in key order (see ``grouping``):
    a window at a time when the runs share their column types, else key by key."""
    live = [r for r in readers if r.rows(partition)]
    kinds = {(r.key_kind, r.value_kind) for r in live}
    if len(kinds) == 1:
        key_kind, value_kind = kinds.pop()
        return key_groups(merged_windows(live, partition), key_kind, value_kind)
    return single_groups(group_pairs(merge_partition(live, partition)))


def merged_windows(readers: Sequence[RunReader], partition: int) -> Iterator[pa.Table]:
    """One partition of runs with the same column types, merged in Arrow (``pymr.merge``)
    in windows of ``MERGE_WINDOW_ROWS`` rows over all runs (at least a batch each)."""
    window_rows = max(BATCH_ROWS, MERGE_WINDOW_ROWS // max(1, len(readers)))
    return merge_windows([r.batches(partition) for r in readers], window_rows)


def _window_triples(windows: Iterator[pa.Table], key_kind: str, value_kind: str) -> Iterator[tuple[Any, Any, Any]]:
    for window in windows:
        for batch in window.to_batches(max_chunksize=BATCH_ROWS):
            yield from batch_triples(batch, key_kind, value_kind, encoded=False)


def group_pairs(triples: Iterable[tuple[Any, Any, Any]]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """``(key, values)`` per run of equal sort keys; ``values`` streams."""
    for _, group in groupby(triples, key=itemgetter(0)):
        first = next(group)
        yield first[1], _values(first[2], group)


def _values(first: Any, rest: Iterator[tuple[Any, Any, Any]]) -> Iterator[Any]:
    yield first
    for triple in rest:
        yield triple[2]


def merge_aggregated_runs(paths: Sequence[str], final_path: str, num_partitions: int, name: str) -> bool:
    """Merge runs of partial aggregates in Arrow (see ``aggregate.merge_aggregate``);
    False, writing nothing, when their column types differ or do not allow it."""
    readers = [RunReader(p) for p in paths]
    kinds = {(r.key_kind, r.value_kind) for r in readers}
    if len(kinds) != 1 or not arrow_ok(name, _VALUE_TYPES[readers[0].value_kind], "reduce"):
        return False
    key_kind, value_kind = kinds.pop()
    writer = RunWriter(final_path, pa.schema([("key", _KEY_TYPES[key_kind]), ("value", _VALUE_TYPES[value_kind])]),
                       num_partitions)
    try:
        for partition in range(num_partitions):
            writer.start_partition(partition)
            for table in merge_aggregate([r.batches(partition) for r in readers], name):
                writer.write(table.cast(writer.schema))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return True


def merge_run_files(paths: Sequence[str], final_path: str, num_partitions: int, combiner: Combiner | None) -> None:
    """Merge sorted runs into one run, combining again on the way, in bounded memory.

    The merged run keeps the column types its inputs share; if the combiner's output
    does not fit them, the merge is redone with encoded keys and pickled values.
    """
    readers = [RunReader(p) for p in paths]
    key_kinds = {r.key_kind for r in readers}
    value_kinds = {r.value_kind for r in readers}
    uniform = len(key_kinds) == 1 and len(value_kinds) == 1
    key_kind = key_kinds.pop() if len(key_kinds) == 1 else "enc"
    value_kind = value_kinds.pop() if len(value_kinds) == 1 else "pickle"
    if combiner is None and uniform:  # one column type each: merged in Arrow, no row in Python
        _merge_windows_into(readers, final_path, num_partitions, key_kind, value_kind)
        return
    try:
        _merge_into(readers, final_path, num_partitions, combiner, key_kind, value_kind)
    except _KindMismatch:
        _merge_into(readers, final_path, num_partitions, combiner, "enc", "pickle")


def _merge_windows_into(readers, final_path, num_partitions, key_kind: str, value_kind: str) -> None:
    schema = pa.schema([("key", _KEY_TYPES[key_kind]), ("value", _VALUE_TYPES[value_kind])])
    writer = RunWriter(final_path, schema, num_partitions)
    try:
        for partition in range(num_partitions):
            writer.start_partition(partition)
            for window in merged_windows(readers, partition):
                writer.write(window)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _merge_into(readers, final_path, num_partitions, combiner, key_kind: str, value_kind: str) -> None:
    schema = pa.schema([("key", _KEY_TYPES[key_kind]), ("value", _VALUE_TYPES[value_kind])])
    writer = RunWriter(final_path, schema, num_partitions)
    try:
        for partition in range(num_partitions):
            writer.start_partition(partition)
            for keys, values in apply_per_key(combiner or _each_value, partition_groups(readers, partition),
                                         function_name(combiner or _each_value)):
                writer.write_pairs(keys, values)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _each_value(key: Any, values: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    return ((key, value) for value in values)


__all__ = [
    "MapOutputBuffer",
    "RunReader",
    "merge_partition",
    "group_pairs",
    "write_run",
    "KeyTypeError",
]
