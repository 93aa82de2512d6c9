"""Parquet job output: part files with the columns ``key`` and ``value``, typed where
the data allow, and one schema across the parts of a job.

A column's type is declared (``Job.output_key_type`` / ``output_value_type``: a value
that does not fit fails the task) or inferred from the Python values, per column:

* all ``str`` → string; all ``bool`` → bool; all ``bytes`` → binary;
* all ``int`` (within int64) → int64; ``int`` mixed with ``float``, or all ``float`` → float64;
* anything else (tuples, lists, dicts, mixed kinds, ints beyond int64, and a ``str`` that
  UTF-8 cannot hold, such as a file name with undecodable bytes) → a JSON string,
  listed in the file's schema metadata ``pymr.json_columns`` so ``read_parquet_pairs``
  decodes it (a tuple comes back as a list).

``None`` is a null in a typed column. A writer decides the types from its first chunk
of rows; a later chunk that needs a wider type (an int column meets a float, a str
column meets a dict) makes it rewrite what it wrote, once per widening. Different
parts can still infer different types (part 1 saw only ints, part 2 a float; an empty
part saw nothing), so the job commit calls ``unify_parquet_parts``, which widens each
disagreeing part to the common schema: every part of a finished job has the same
schema, and pyarrow.dataset, pandas, polars and DuckDB read the folder as one table.
That rewrite costs a pass over the disagreeing parts only; declaring the types avoids it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from . import storage
from .errors import OutputTypeError
from .outputs import to_json

JSON_COLUMNS = b"pymr.json_columns"
COLUMNS = ("key", "value")
JSON = pa.string()  # the storage type of a JSON column
_INT64 = (-(2**63), 2**63 - 1)


class ColumnType:
    """A column's type, and whether its strings hold JSON."""

    __slots__ = ("arrow", "json")

    def __init__(self, arrow: pa.DataType, json_encoded: bool = False):
        self.arrow, self.json = arrow, json_encoded

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColumnType) and (self.arrow, self.json) == (other.arrow, other.json)

    def widen(self, other: ColumnType) -> ColumnType:
        """The narrowest type both fit: null gives way, int and float make float, else JSON."""
        if self == other or pa.types.is_null(other.arrow):
            return self
        if pa.types.is_null(self.arrow):
            return other
        if not self.json and not other.json and {self.arrow, other.arrow} == {pa.int64(), pa.float64()}:
            return ColumnType(pa.float64())
        return ColumnType(JSON, True)


def infer_column(items: list[Any]) -> tuple[pa.Array, ColumnType]:
    """The narrowest Arrow array for these Python values (see the module docstring)."""
    kinds = {type(item) for item in items if item is not None}
    if not kinds:
        return pa.nulls(len(items)), ColumnType(pa.null())
    if len(kinds) == 1:
        kind = next(iter(kinds))
        arrow = {str: pa.string(), bool: pa.bool_(), bytes: pa.binary(), float: pa.float64()}.get(kind)
        if kind is int and all(_INT64[0] <= i <= _INT64[1] for i in items if i is not None):
            arrow = pa.int64()
        if arrow is not None:
            try:
                return pa.array(items, arrow), ColumnType(arrow)
            except UnicodeEncodeError:  # a str that is not UTF-8 (a file name): JSON escapes it
                pass
    if kinds == {int, float} and all(_INT64[0] <= i <= _INT64[1] for i in items if type(i) is int):
        return pa.array([None if i is None else float(i) for i in items], pa.float64()), ColumnType(pa.float64())
    return json_array(items), ColumnType(JSON, True)


def json_array(items: Iterable[Any]) -> pa.Array:
    texts = [to_json(item) for item in items]
    try:
        return pa.array(texts, JSON)
    except UnicodeEncodeError:  # lone surrogates (names that are not UTF-8) as the JSON escape \udcXX
        return pa.array([text.encode("utf-8", "backslashreplace").decode("utf-8") for text in texts], JSON)


def convert_column(array: pa.ChunkedArray | pa.Array, have: ColumnType, want: ColumnType) -> pa.ChunkedArray | pa.Array:
    """``array`` (of type ``have``) as ``want``, a widening of it."""
    if have == want:
        return array
    if want.json:
        return json_array(array.to_pylist())
    return array.cast(want.arrow)


def declared_column(path: str, name: str, items: list[Any], kind: pa.DataType) -> pa.Array:
    """A column of the declared type; a value that does not fit fails the task."""
    try:
        if pa.types.is_integer(kind):  # pyarrow would truncate 1.5 to 1 without a word
            bad = next((item for item in items if isinstance(item, float)), None)
            if bad is not None:
                raise TypeError(f"{bad!r} is a float")
        return pa.array(items, type=kind)
    except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
        raise OutputTypeError(f"{path}: an output {name} does not fit the declared column type {kind}: "
                              f"{exc} (leave the type undeclared to have it inferred)") from None


def schema_of(types: dict[str, ColumnType]) -> pa.Schema:
    json_columns = [name for name in COLUMNS if types[name].json]
    return pa.schema([pa.field(name, types[name].arrow) for name in COLUMNS],
                     metadata={JSON_COLUMNS: json.dumps(json_columns).encode()})


def types_of(schema: pa.Schema) -> dict[str, ColumnType]:
    json_columns = set(json.loads((schema.metadata or {}).get(JSON_COLUMNS, b"[]")))
    return {name: ColumnType(schema.field(name).type, name in json_columns) for name in COLUMNS}


class ParquetPartWriter:
    """Writes one part file of pairs as Parquet, ``chunk_rows`` rows per row group.

    ``key_type``/``value_type``: declared pyarrow types, or None to infer them.
    """

    chunk_rows = 65536

    def __init__(self, path: str, key_type: pa.DataType | None = None, value_type: pa.DataType | None = None,
                 chunk_rows: int | None = None):
        self.path = path
        self.records = 0
        self.chunk_rows = chunk_rows or self.chunk_rows
        self.declared = {"key": key_type, "value": value_type}
        self.types: dict[str, ColumnType] | None = None  # decided by the first chunk
        self._keys: list[Any] = []
        self._values: list[Any] = []
        self._writer: Any = None

    def write(self, key: Any, value: Any) -> None:
        self._keys.append(key)
        self._values.append(value)
        self.records += 1
        if len(self._keys) >= self.chunk_rows:
            self._flush()

    def write_columns(self, keys: list[Any], values: list[Any]) -> None:
        for key, value in zip(keys, values):
            self.write(key, value)

    def write_table(self, table: pa.Table) -> None:
        """Write a ``key``/``value`` Arrow table of pairs, as ``PartWriter.write_table`` does."""
        from .keys import decode_key

        keys = table.column("key").to_pylist()
        if table.schema.field("key").type == pa.large_binary():  # keys kept in their encoded form
            keys = [decode_key(key) for key in keys]
        for key, value in zip(keys, table.column("value").to_pylist()):
            self.write(key, value)

    def close(self) -> int:
        """Write what is buffered and flush to disk; returns the bytes written."""
        if self._writer is None or self._keys:
            self._flush()
        self._writer.close()
        return os.path.getsize(self.path)

    def _flush(self) -> None:
        chunk = {"key": self._keys, "value": self._values}
        self._keys, self._values = [], []
        arrays, types = {}, {}
        for name in COLUMNS:
            declared = self.declared[name]
            if declared is not None:
                arrays[name], types[name] = declared_column(self.path, name, chunk[name], declared), ColumnType(declared)
            else:
                arrays[name], types[name] = infer_column(chunk[name])
        if self.types is None:
            self._open(types)
        wanted = {name: self.types[name].widen(types[name]) for name in COLUMNS}
        if wanted != self.types:
            self._rewrite_as(wanted)
        columns = [convert_column(arrays[name], types[name], self.types[name]) for name in COLUMNS]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=schema_of(self.types)))

    def _open(self, types: dict[str, ColumnType]) -> None:
        import pyarrow.parquet as pq

        self.types = types
        self._writer = pq.ParquetWriter(self.path, schema_of(types))

    def _rewrite_as(self, types: dict[str, ColumnType]) -> None:
        """Widen what is written so far: read it back, convert, write it again."""
        import pyarrow.parquet as pq

        self._writer.close()
        written = pq.read_table(self.path)
        old = self.types
        self._open(types)
        if written.num_rows:
            columns = [convert_column(written.column(n), old[n], types[n]) for n in COLUMNS]
            self._writer.write_table(pa.Table.from_arrays(columns, schema=schema_of(types)))


def unify_parquet_parts(paths: list[str]) -> None:
    """Give every part the same schema, widening those that disagree (see the module docstring)."""
    import pyarrow.parquet as pq

    found = {path: types_of(pq.read_schema(_readable(path))) for path in paths}
    if not found:
        return
    common = {name: _widest(t[name] for t in found.values()) for name in COLUMNS}
    for path, types in found.items():
        if types != common:
            table = pq.read_table(_readable(path))
            columns = [convert_column(table.column(n), types[n], common[n]) for n in COLUMNS]
            unified = pa.Table.from_arrays(columns, schema=schema_of(common))
            if storage.is_remote(path):  # an object appears whole when written: no rename needed
                filesystem, inner = storage.resolve(path)
                pq.write_table(unified, inner, filesystem=filesystem)
                continue
            tmp = path + ".unify"
            pq.write_table(unified, tmp)
            os.replace(tmp, path)


def _readable(path: str) -> Any:
    """What pyarrow.parquet reads: a local path as it is, a remote file opened (``storage``)."""
    return storage.open_random(path) if storage.is_remote(path) else path


def _widest(types: Iterable[ColumnType]) -> ColumnType:
    widest = ColumnType(pa.null())
    for kind in types:
        widest = widest.widen(kind)
    return widest


def read_parquet_pairs(path: str) -> Iterator[tuple[Any, Any]]:
    """The ``(key, value)`` pairs of a part file written by ``ParquetPartWriter``, or of
    every part file in a folder (names starting with ``_`` or ``.`` are left out).

    JSON columns are decoded, so a tuple written there comes back as a list.
    """
    import pyarrow.parquet as pq

    if storage.kind(path) == "dir":
        files = [storage.join(path, n) for n in storage.listdir(path) if not n.startswith(("_", "."))]
    else:
        files = [path]
    for file in files:
        parquet = pq.ParquetFile(_readable(file))
        json_columns = {name for name, kind in types_of(parquet.schema_arrow).items() if kind.json}
        for batch in parquet.iter_batches(columns=list(COLUMNS)):
            keys, values = (batch.column(i).to_pylist() for i in range(2))
            if "key" in json_columns:
                keys = [json.loads(k) for k in keys]
            if "value" in json_columns:
                values = [json.loads(v) for v in values]
            yield from zip(keys, values)
