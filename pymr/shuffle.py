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
import json
import os
import pickle
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import cloudpickle
import pyarrow as pa
import pyarrow.compute as pc

from . import keys as keyenc
from .errors import KeyTypeError

DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
BATCH_ROWS = 8192
_INT64 = (-(2**63), 2**63 - 1)
_KEY_TYPES = {"str": pa.large_string(), "int": pa.int64(), "enc": pa.large_binary()}
_VALUE_TYPES = {"str": pa.large_string(), "int": pa.int64(), "float": pa.float64(), "pickle": pa.large_binary()}

Partitioner = Callable[[Any, int], int]
Combiner = Callable[[Any, Iterator[Any]], Iterable[tuple[Any, Any]]]


class MapOutputBuffer:
    """Collects a map task's pairs in bounded memory and writes its sorted, partitioned runs."""

    def __init__(
        self,
        directory: str,
        num_partitions: int,
        partitioner: Partitioner,
        combiner: Combiner | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        on_combine: Callable[[int, int], None] | None = None,
    ):
        self.directory = directory
        self.num_partitions = num_partitions
        self.partitioner = partitioner
        self.combiner = combiner
        self.buffer_bytes = buffer_bytes
        self.on_combine = on_combine
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.runs: list[str] = []
        self.spilled_records = 0
        self._next_check = 1024

    def add(self, key: Any, value: Any) -> None:
        self.keys.append(key)
        self.values.append(value)
        if len(self.keys) >= self._next_check:
            self._check_size()

    def _check_size(self) -> None:
        count = len(self.keys)
        sample = range(max(0, count - 64), count)
        per_record = 72 + sum(sys.getsizeof(self.keys[i]) + sys.getsizeof(self.values[i]) for i in sample) / len(sample)
        if per_record * count >= self.buffer_bytes:
            self.spill()
        else:
            self._next_check = count + max(1024, count // 8)

    def spill(self) -> None:
        """Sort, combine and write what is buffered as one run."""
        if not self.keys:
            return
        keys, values = self.keys, self.values
        self.keys, self.values = [], []
        self._next_check = 1024
        partitions = self._partitions(keys)
        if self.combiner is not None:
            keys, values, partitions = self._combine(keys, values, partitions)
        path = os.path.join(self.directory, f"spill-{len(self.runs):05d}.arrow")
        self.spilled_records += len(keys)
        write_run(path, keys, values, partitions, self.num_partitions)
        self.runs.append(path)

    def _partitions(self, keys: list[Any]) -> list[int]:
        count = self.num_partitions
        partitioner = self.partitioner
        partitions = [partitioner(k, count) for k in keys]
        if not all(type(p) is int and 0 <= p < count for p in partitions):
            bad = next(p for p in partitions if type(p) is not int or not 0 <= p < count)
            raise ValueError(f"partition() returned {bad!r}; it must be an int in 0..{count - 1}")
        return partitions

    def _combine(self, keys, values, partitions):
        """Run the combiner over each key's values, in sorted order."""
        table = _sorted_table(keys, values, partitions)
        out_keys: list[Any] = []
        out_values: list[Any] = []
        for key, group in group_pairs(_table_pairs(table)):
            for new_key, new_value in self.combiner(key, group):
                out_keys.append(new_key)
                out_values.append(new_value)
        if self.on_combine is not None:
            self.on_combine(len(keys), len(out_keys))
        return out_keys, out_values, self._partitions(out_keys)

    def close(self, final_path: str) -> str:
        """Spill what is left and leave exactly one run at ``final_path``."""
        self.spill()
        if not self.runs:
            write_run(final_path, [], [], [], self.num_partitions)
        elif len(self.runs) == 1:
            os.replace(self.runs[0], final_path)
        else:
            merge_run_files(self.runs, final_path, self.num_partitions, self.combiner)
            for run in self.runs:
                os.unlink(run)
        self.runs = [final_path]
        return final_path


# -- writing runs ------------------------------------------------------------------------
def _key_kind(keys: Sequence[Any]) -> str:
    if all(type(k) is str for k in keys):
        return "str"
    if all(type(k) is int for k in keys) and _INT64[0] <= min(keys) and max(keys) <= _INT64[1]:
        return "int"
    return "enc"


def _value_kind(values: Sequence[Any]) -> str:
    if not values:
        return "pickle"
    first = type(values[0])
    if first not in (str, int, float) or not all(type(v) is first for v in values):
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


def _sorted_table(keys, values, partitions) -> pa.Table:
    if keys and not all(type(k) in _ALLOWED_KEY_TYPES for k in keys):
        bad = next(k for k in keys if type(k) not in _ALLOWED_KEY_TYPES)
        keyenc.encode_key(bad)  # raises KeyTypeError naming the key
    kind = _key_kind(keys) if keys else "str"
    table = pa.table(
        {
            "partition": pa.array(partitions, pa.int32()),
            "key": _key_array(keys, kind),
            "value": _value_array(values, _value_kind(values)),
        }
    )
    order = pc.sort_indices(table, sort_keys=[("partition", "ascending"), ("key", "ascending")])
    return table.take(order)


_ALLOWED_KEY_TYPES = {str, int, float, bytes, bool, tuple, type(None)}


def write_run(path: str, keys, values, partitions, num_partitions: int) -> None:
    """Write pairs as one sorted run file with a per-partition batch index."""
    table = _sorted_table(keys, values, partitions)
    counts = Counter(partitions)
    writer = RunWriter(path, table.schema.remove(0), num_partitions)
    offset = 0
    for partition in range(num_partitions):
        rows = counts.get(partition, 0)
        writer.start_partition(partition)
        if rows:
            writer.write(table.slice(offset, rows).drop_columns(["partition"]))
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
        self._reader = pa.ipc.open_file(pa.memory_map(path))
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
            yield self._reader.get_batch(i)

    def triples(self, partition: int, encoded: bool) -> Iterator[tuple[Any, Any, Any]]:
        """``(sort_key, key, value)``; ``sort_key`` is the key's byte encoding if ``encoded``."""
        for batch in self.batches(partition):
            yield from batch_triples(batch, self.key_kind, self.value_kind, encoded)


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
    """The sorted ``(sort_key, key, value)`` stream of one partition over many runs."""
    live = [r for r in readers if r.rows(partition)]
    kinds = {r.key_kind for r in live}
    encoded = len(kinds) > 1 or kinds == {"enc"}
    streams = [r.triples(partition, encoded) for r in live]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=itemgetter(0))


def group_pairs(triples: Iterable[tuple[Any, Any, Any]]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """``(key, values)`` per run of equal sort keys; ``values`` streams."""
    for _, group in groupby(triples, key=itemgetter(0)):
        first = next(group)
        yield first[1], _values(first[2], group)


def _values(first: Any, rest: Iterator[tuple[Any, Any, Any]]) -> Iterator[Any]:
    yield first
    for triple in rest:
        yield triple[2]


def merge_run_files(paths: Sequence[str], final_path: str, num_partitions: int, combiner: Combiner | None) -> None:
    """Merge sorted runs into one run, combining again on the way, in bounded memory.

    The merged run keeps the column types its inputs share; if the combiner's output
    does not fit them, the merge is redone with encoded keys and pickled values.
    """
    readers = [RunReader(p) for p in paths]
    key_kinds = {r.key_kind for r in readers}
    value_kinds = {r.value_kind for r in readers}
    key_kind = key_kinds.pop() if len(key_kinds) == 1 else "enc"
    value_kind = value_kinds.pop() if len(value_kinds) == 1 else "pickle"
    try:
        _merge_into(readers, final_path, num_partitions, combiner, key_kind, value_kind)
    except _KindMismatch:
        _merge_into(readers, final_path, num_partitions, combiner, "enc", "pickle")


def _merge_into(readers, final_path, num_partitions, combiner, key_kind: str, value_kind: str) -> None:
    schema = pa.schema([("key", _KEY_TYPES[key_kind]), ("value", _VALUE_TYPES[value_kind])])
    writer = RunWriter(final_path, schema, num_partitions)
    try:
        for partition in range(num_partitions):
            writer.start_partition(partition)
            chunk_keys: list[Any] = []
            chunk_values: list[Any] = []
            for key, values in group_pairs(merge_partition(readers, partition)):
                pairs = combiner(key, values) if combiner is not None else ((key, v) for v in values)
                for k, v in pairs:
                    chunk_keys.append(k)
                    chunk_values.append(v)
                if len(chunk_keys) >= BATCH_ROWS:
                    writer.write_pairs(chunk_keys, chunk_values)
                    chunk_keys, chunk_values = [], []
            if chunk_keys:
                writer.write_pairs(chunk_keys, chunk_values)
    except BaseException:
        writer.abort()
        raise
    writer.close()


__all__ = [
    "MapOutputBuffer",
    "RunReader",
    "merge_partition",
    "group_pairs",
    "write_run",
    "KeyTypeError",
]
