"""Input formats beyond text lines.

``pymr.inputs`` imports this module to register its formats. Each format says how a
file is cut into splits (planned once, before any task runs, so a split carries in
``Split.state`` whatever its reader needs to know) and what ``(key, value)`` records a
split reads. A split owns the records that *start* in it, so reading every split of a
file gives each record exactly once, in file order.

``jsonl`` (``.jsonl``, ``.ndjson``, ``.json``)
    One JSON value per line. Splits like text: line-aligned byte ranges; a compressed
    file is one split. Key ``(path, byte_offset)`` (None, as for text, when the map
    never reads its key), value the parsed JSON; blank lines are skipped. A line that
    is not UTF-8 or not JSON is a bad record.

``csv`` (``.csv``) and ``csv-noheader``
    RFC 4180 CSV (``"`` quotes, doubled inside a quoted field, which may hold the
    delimiter, quotes and newlines). Key ``(path, byte_offset)`` of the record's first
    byte (None when the map never reads it); value a dict keyed by the header (``csv``)
    or a tuple of str (``csv-noheader``); blank lines are skipped. Splits are byte ranges as for text,
    but a record may span lines, so a record start is a line start *outside quotes*.
    Since every quote opens, closes or is half of a doubled quote, a position is
    inside quotes exactly when an odd number of ``"`` bytes come before it: planning
    counts the quotes before each split boundary (one sequential read of the file) and
    stores ``{"in_quotes": bool, "header": [...]}`` in the split. The reader starts at
    the first record start at or after ``start`` and reads records while they start
    before ``end``; a record ends at the first ``\\n`` after which its quote count is
    even (so ``\\r\\n`` ends one too, a lone ``\\r`` does not). Planning and reading use
    the same rule, so even a stray quote cannot make a record be lost or read twice:
    the lines it joins become one bad record. Every split knows the header, which
    planning reads from the file's start.
    A record that does not parse as exactly one strict CSV row, has another number of
    fields than the header, is not UTF-8 or is longer than ``max_record_bytes`` (an
    unbalanced quote runs to the end of the file) is a bad record, and so is a field
    longer than ``csv.field_size_limit()`` (131072 characters unless raised). A
    compressed file is one split. ``CsvFormat(name="tsv", delimiter="\\t",
    extensions=(".tsv",))`` makes another dialect; the quote character is always ``"``.

``parquet`` (``.parquet``, ``.pq``) and ``parquet-batches``
    Splits are runs of consecutive row groups of up to ``split_size`` bytes of
    compressed data (at least one group each). ``start``/``end`` are the byte range
    the groups occupy (so counters and messages speak of bytes) and ``state`` is
    ``{"row_groups": [first, stop], "first_row": n}``. ``parquet``: key
    ``(path, row_index)`` (None when the map never reads it), value the row as a dict.
    ``parquet-batches``: key ``(path, index_of_the_batch's_first_row)``, value a
    ``pyarrow.RecordBatch`` of up to ``batch_rows`` rows. One row group is in memory at
    a time. A ``map_batch`` job gets those batches (``record_batches``).

``arrow`` (``.arrow``, ``.feather``, ``.ipc``)
    The Arrow IPC *file* format (Feather v2). Splits are runs of consecutive record
    batches, planned from the file's footer without decoding the data;
    ``state`` is ``{"batches": [first, stop], "first_row": n}``. Key
    ``(path, row_index)`` (None when the map never reads it), value the row as a dict;
    the file is memory-mapped. A ``map_batch`` job gets the file's record batches as
    they are.

``wholefile`` and ``wholefile-bytes`` (by name only, no extensions)
    One split per file, empty files included. Key the path, value the whole
    (decompressed) contents: str decoded as UTF-8 (``wholefile``; not UTF-8 is a bad
    record) or bytes (``wholefile-bytes``).

A bad record raises ``BadRecordError`` naming the file, the byte offset and the start
of the record; with the ``skip_bad_records`` option it is passed to
``on_skip(offset, error)`` and left out.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from . import storage
from .errors import BadRecordError, InputError, StorageError
from .inputs import COMPRESSED, InputFormat, Split, open_input, read_lines, register_input_format

if TYPE_CHECKING:
    import pyarrow as pa  # imported where used: the client registers formats without loading Arrow

OnSkip = Callable[[Any, Exception], None]
_EXCERPT_CHARS = 80
_COUNT_CHUNK = 8 * 1024 * 1024


# -- bad records ------------------------------------------------------------------------------
def _reject(path: str, offset: int, raw: bytes | None, exc: Exception, skip: bool, on_skip: OnSkip) -> None:
    """Skip a bad record (``on_skip`` counts it) or raise the user-facing error."""
    if skip:
        on_skip(offset, exc)
        return
    excerpt = f": {_excerpt(raw)}" if raw else ""
    raise BadRecordError(f"{path}: record at byte offset {offset} {_problem(exc, offset)}{excerpt}; "
                         "use --skip-bad-records to count and skip such records") from None


def _problem(exc: Exception, offset: int) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"is not valid UTF-8 ({exc.reason} at byte {offset + exc.start})"
    if isinstance(exc, json.JSONDecodeError):
        return f"is not valid JSON ({exc.msg} at column {exc.colno})"
    return str(exc)


def _excerpt(raw: bytes) -> str:
    text = raw[: _EXCERPT_CHARS * 4].decode("utf-8", "backslashreplace").rstrip("\r\n")
    return repr(text[:_EXCERPT_CHARS] + ("..." if len(text) > _EXCERPT_CHARS else ""))


@contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when its extension says so."""
    with ExitStack() as stack:
        try:
            stream = stack.enter_context(open_input(path, buffering=1024 * 1024))
        except OSError as exc:
            if isinstance(exc, StorageError):  # says what went wrong with a URI already
                raise
            raise InputError(f"cannot read input {path}: {exc.strerror} (in cluster mode, inputs must be on a "
                             "filesystem that every worker sees at the same path)") from None
        yield stream


# -- jsonl -----------------------------------------------------------------------------------
class JsonLinesFormat(InputFormat):
    """One JSON value per line; splits are the text format's line-aligned byte ranges."""

    name = "jsonl"
    extensions = (".jsonl", ".ndjson", ".json")

    def records(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[tuple[Any, Any]]:
        skip = bool(options.get("skip_bad_records"))
        keyed = options.get("record_keys", True)  # False: the map never reads its key
        for offset, raw in read_lines(split):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8-sig" if offset == 0 else "utf-8"))
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both are
                _reject(split.path, offset, raw, exc, skip, on_skip)
                continue
            yield ((split.path, offset) if keyed else None), value


# -- csv -------------------------------------------------------------------------------------
class CsvFormat(InputFormat):
    """RFC 4180 CSV whose records may span lines; see the module docstring for splitting."""

    name = "csv"
    extensions: tuple[str, ...] = (".csv",)
    delimiter = ","
    header = True
    #: a longer record is bad (it is scanned to its end, not held in memory)
    max_record_bytes = 16 * 1024 * 1024

    def __init__(self, name: str | None = None, extensions: tuple[str, ...] | None = None,
                 delimiter: str | None = None, header: bool | None = None):
        if name is not None:
            self.name = name
        if extensions is not None:
            self.extensions = tuple(extensions)
        if delimiter is not None:
            self.delimiter = delimiter
        if header is not None:
            self.header = header
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
            raise ValueError(f"a CSV delimiter must be one character other than a quote or newline, "
                             f"got {self.delimiter!r}")

    def splits(self, path: str, split_size: int) -> list[Split]:
        pieces = super().splits(path, split_size)
        if not pieces:
            return []
        header = self._read_header(path) if self.header else None
        if pieces[0].compressed:
            return [replace(pieces[0], state={"in_quotes": False, "header": header})]
        parities = _quote_parities(path, [piece.start for piece in pieces])
        return [replace(piece, state={"in_quotes": odd, "header": header}) for piece, odd in zip(pieces, parities)]

    def records(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[tuple[Any, Any]]:
        skip = bool(options.get("skip_bad_records"))
        keyed = options.get("record_keys", True)  # False: the map never reads its key
        state = split.state or {}  # a split made by hand: find out what planning would have stored
        header = state["header"] if "header" in state else (self._read_header(split.path) if self.header else None)
        if "in_quotes" in state or split.start == 0:
            in_quotes = bool(state.get("in_quotes"))
        else:
            in_quotes = _quote_parities(split.path, [split.start])[0]
        with _open_input(split.path) as stream:
            pos = split.start
            if pos > 0:
                pos = _seek_record_start(stream, pos, in_quotes)
            end = None if split.compressed else split.end
            parser = _RecordParser(self.delimiter, header, self.max_record_bytes)
            for offset, raw in _csv_records(stream, pos, end, self.max_record_bytes):
                if offset == 0 and self.header:
                    continue
                try:
                    row = parser.value(raw, offset)
                except ValueError as exc:
                    _reject(split.path, offset, raw, exc, skip, on_skip)
                    continue
                if row is not None:
                    yield ((split.path, offset) if keyed else None), row

    def _read_header(self, path: str) -> list[str]:
        with _open_input(path) as stream:
            for offset, raw in _csv_records(stream, 0, None, self.max_record_bytes):
                try:
                    names = _RecordParser(self.delimiter, None, self.max_record_bytes).value(raw, offset)
                except ValueError as exc:
                    raise InputError(f"{path}: cannot read the CSV header: the first record {_problem(exc, 0)}"
                                     ) from None
                if names is None:
                    raise InputError(f"{path}: the first line of a CSV file must be its header, but it is blank "
                                     "(for a file without a header use the csv-noheader format)")
                duplicates = sorted({n for n in names if names.count(n) > 1})
                if duplicates:
                    raise InputError(f"{path}: the CSV header repeats the column name(s) {', '.join(duplicates)}")
                return list(names)
        return []


class _RecordParser:
    """Turns raw records into values with one strict ``csv.reader`` per split (making a
    reader per record would cost more than the parsing). Each record reaches the reader
    as one item, so a record that is not exactly one row is an error rather than
    taking in its neighbours."""

    def __init__(self, delimiter: str, header: list[str] | None, limit: int):
        self.header = header
        self.limit = limit
        self._pending: str | None = None
        self._reader = csv.reader(self, delimiter=delimiter, strict=True)

    def __iter__(self) -> _RecordParser:
        return self

    def __next__(self) -> str:
        text, self._pending = self._pending, None
        if text is None:
            raise StopIteration
        return text

    def value(self, raw: bytes | None, offset: int) -> dict[str, str] | tuple[str, ...] | None:
        """A dict by the header, else a tuple of str; None for a blank line. Raises
        ValueError (a UnicodeDecodeError among them) for a bad record."""
        if raw is None:
            raise ValueError(f"is longer than {self.limit} bytes (is a quote left unclosed?)")
        self._pending = raw.decode("utf-8-sig" if offset == 0 else "utf-8")
        try:
            fields = next(self._reader)
        except csv.Error as exc:
            if str(exc).startswith("new-line character"):
                raise ValueError("is more than one CSV row (a stray quote or carriage return outside quotes?)"
                                 ) from None
            raise ValueError(f"is not valid CSV ({exc})") from None
        if not fields:
            return None
        if self.header is None:
            return tuple(fields)
        if len(fields) != len(self.header):
            raise ValueError(f"has {len(fields)} fields but the header has {len(self.header)}")
        return dict(zip(self.header, fields))


def _quote_parities(path: str, positions: list[int]) -> list[bool]:
    """For each position (ascending), whether an odd number of ``"`` bytes come before it."""
    parities = []
    quotes = 0
    pos = 0
    with storage.open_input(path) as f:
        for position in positions:
            while pos < position:
                chunk = f.read(min(_COUNT_CHUNK, position - pos))
                if not chunk:
                    break
                quotes += chunk.count(b'"')
                pos += len(chunk)
            parities.append(quotes % 2 == 1)
    return parities


def _seek_record_start(stream: IO[bytes], start: int, in_quotes: bool) -> int:
    """Leave ``stream`` at the first record start at or after ``start``, and return it.

    ``in_quotes`` is the quote parity of the bytes before ``start``. A record starts
    after a newline that is outside quotes (and at 0, which ``start > 0`` excludes).
    """
    stream.seek(start - 1)
    if stream.read(1) == b"\n" and not in_quotes:
        return start
    odd = in_quotes
    pos = start
    for line in stream:
        odd ^= line.count(b'"') % 2 == 1
        pos += len(line)
        if not odd and line.endswith(b"\n"):
            break
    return pos


def _csv_records(stream: IO[bytes], pos: int, end: int | None, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """``(offset, raw)`` of each record starting at ``pos`` (a record start) and before ``end``.

    A record is whole lines up to one after which its quote count is even, or to the
    end of the file. ``raw`` is None for a record longer than ``limit`` bytes.
    """
    lines: list[bytes] = []  # of a record that spans lines, while it fits in limit
    size = 0  # bytes of that record so far; 0 between records
    odd = False
    start = pos
    for line in stream:
        if size == 0:
            if end is not None and pos >= end:
                return
            start = pos
        pos += len(line)
        odd ^= line.count(b'"') % 2 == 1
        if size == 0 and not odd:  # a record of one line: the common case
            yield start, line if len(line) <= limit else None
            continue
        size += len(line)
        if size <= limit:
            lines.append(line)
        if not odd:
            yield start, b"".join(lines) if size <= limit else None
            lines, size = [], 0
    if size:  # the file ends inside quotes
        yield start, b"".join(lines) if size <= limit else None


# -- parquet and arrow -------------------------------------------------------------------------
class _Piece(NamedTuple):
    """A row group or record batch: where it lies in the file and how many rows it has."""

    offset: int
    nbytes: int
    rows: int


def _piece_splits(path: str, fmt: str, pieces: list[_Piece], split_size: int, kind: str) -> list[Split]:
    """Runs of consecutive pieces of up to ``split_size`` bytes, at least one piece each."""
    splits = []
    first = 0
    first_row = 0
    while first < len(pieces):
        stop = first + 1
        nbytes = pieces[first].nbytes
        while stop < len(pieces) and nbytes + pieces[stop].nbytes <= split_size:
            nbytes += pieces[stop].nbytes
            stop += 1
        last = pieces[stop - 1]
        splits.append(Split(path, pieces[first].offset, last.offset + last.nbytes, format=fmt,
                            state={kind: [first, stop], "first_row": first_row}))
        first_row += sum(p.rows for p in pieces[first:stop])
        first = stop
    return splits


def _rows(path: str, first_row: int, batch: pa.RecordBatch, chunk: int,
          keyed: bool = True) -> Iterator[tuple[tuple[str, int] | None, dict]]:
    """Row records of a batch, converted to Python ``chunk`` rows at a time; keyed
    ``(path, row)``, or None for a map that never reads its key."""
    for at in range(0, batch.num_rows, chunk):
        rows = batch.slice(at, chunk).to_pylist()
        if keyed:
            yield from zip(zip(itertools.repeat(path), itertools.count(first_row + at)), rows)
        else:
            yield from zip(itertools.repeat(None), rows)


def _parquet_file(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(storage.open_random(path) if storage.is_remote(path) else path)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not a Parquet file ({exc})") from None
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror or exc}") from None


class ParquetFormat(InputFormat):
    """Parquet rows as dicts; splits are runs of row groups."""

    name = "parquet"
    extensions: tuple[str, ...] = (".parquet", ".pq")
    #: rows converted to Python (or handed out, for parquet-batches) at a time
    batch_rows = 65536

    def splits(self, path: str, split_size: int) -> list[Split]:
        metadata = _parquet_file(path).metadata
        pieces = []
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            columns = [group.column(c) for c in range(group.num_columns)]
            offset = min((c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset)
                         for c in columns) if columns else 0
            pieces.append(_Piece(offset, sum(c.total_compressed_size for c in columns), group.num_rows))
        return _piece_splits(path, self.name, pieces, split_size, "row_groups")

    def records(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[tuple[Any, Any]]:
        for first_row, batch in self._batches(split):
            yield from _rows(split.path, first_row, batch, self.batch_rows, options.get("record_keys", True))

    def record_batches(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[pa.RecordBatch]:
        """The split's rows as Arrow batches with the file's columns, for ``map_batch``."""
        for _, batch in self._batches(split):
            yield batch

    def _batches(self, split: Split) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(first_row, batch)`` for the split's row groups, one group in memory at a time."""
        first, stop = split.state["row_groups"]
        row = split.state["first_row"]
        parquet = _parquet_file(split.path)
        for group in range(first, stop):
            for batch in parquet.read_row_group(group).to_batches(max_chunksize=self.batch_rows):
                yield row, batch
                row += batch.num_rows


class ParquetBatchesFormat(ParquetFormat):
    """Parquet as Arrow record batches: the batch mode of ``parquet``, chosen by name."""

    name = "parquet-batches"
    extensions = ()

    def records(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[tuple[Any, Any]]:
        for first_row, batch in self._batches(split):
            yield (split.path, first_row), batch


class ArrowFormat(InputFormat):
    """Arrow IPC file rows as dicts; splits are runs of record batches."""

    name = "arrow"
    extensions = (".arrow", ".feather", ".ipc")
    batch_rows = 65536

    def splits(self, path: str, split_size: int) -> list[Split]:
        return _piece_splits(path, self.name, _ipc_record_batches(path), split_size, "batches")

    def records(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[tuple[Any, Any]]:
        row = split.state["first_row"]
        for batch in self.record_batches(split, options, on_skip):
            yield from _rows(split.path, row, batch, self.batch_rows, options.get("record_keys", True))
            row += batch.num_rows

    def record_batches(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[pa.RecordBatch]:
        """The split's record batches as the file holds them (memory-mapped when local)."""
        import pyarrow as pa

        first, stop = split.state["batches"]
        remote = storage.is_remote(split.path)
        with storage.open_random(split.path) if remote else pa.memory_map(split.path) as source:
            reader = pa.ipc.open_file(source)
            for index in range(first, stop):
                yield reader.get_batch(index)


_IPC_MAGIC = b"ARROW1"
_RECORD_BATCH = 3  # MessageHeader union type of a RecordBatch (Message.fbs)


def _ipc_record_batches(path: str) -> list[_Piece]:
    """Where each record batch of an Arrow IPC file lies and its row count, from metadata alone.

    The file ends with a ``Footer`` flatbuffer, its int32 length and the magic. The
    footer's ``recordBatches`` lists ``Block {offset: long, metaDataLength: int,
    bodyLength: long}``; each block starts with a ``Message`` whose ``RecordBatch``
    header holds ``length``, the row count. pyarrow exposes neither offsets nor row
    counts without decoding (and decompressing) the batches, so they are read here.
    """
    try:
        with storage.open_input(path, buffering=64 * 1024) as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            head = f.read(len(_IPC_MAGIC))
            f.seek(max(0, size - 10))
            tail = f.read(10)
            if size < 18 or head != _IPC_MAGIC or tail[4:] != _IPC_MAGIC:
                raise InputError(f"{path}: not an Arrow IPC file (Feather v1 and the IPC stream format are "
                                 "not supported)")
            footer_size = struct.unpack("<i", tail[:4])[0]
            if not 0 < footer_size <= size - 18:
                raise ValueError(f"footer length {footer_size} in a file of {size} bytes")
            f.seek(size - 10 - footer_size)
            footer = f.read(footer_size)
            blocks = _fb_structs(footer, _fb_root(footer), 3, "<qi4xq")
            pieces = []
            for offset, metadata_size, body_size in blocks:
                f.seek(offset)
                pieces.append(_Piece(offset, metadata_size + body_size, _ipc_message_rows(f.read(metadata_size))))
            return pieces
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror or exc}") from None
    except (struct.error, IndexError, ValueError) as exc:
        raise InputError(f"{path}: a damaged Arrow IPC file ({exc})") from None


def _ipc_message_rows(metadata: bytes) -> int:
    """The row count in an encapsulated ``Message`` (after the continuation and length words)."""
    start = 8 if metadata[:4] == b"\xff\xff\xff\xff" else 4  # before format 0.15: no continuation word
    message = metadata[start:]
    root = _fb_root(message)
    kind = _fb_field(message, root, 1)
    header = _fb_field(message, root, 2)
    if kind is None or message[kind] != _RECORD_BATCH or header is None:
        raise ValueError("a footer block is not a record batch")
    batch = header + struct.unpack_from("<I", message, header)[0]
    length = _fb_field(message, batch, 0)
    return struct.unpack_from("<q", message, length)[0] if length is not None else 0


def _fb_root(buf: bytes) -> int:
    return struct.unpack_from("<I", buf, 0)[0]


def _fb_field(buf: bytes, table: int, index: int) -> int | None:
    """Position of field ``index`` of the flatbuffer table at ``table``; None if absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index >= vtable_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _fb_structs(buf: bytes, table: int, index: int, layout: str) -> list[tuple]:
    """The structs of vector field ``index`` of a table, each unpacked with ``layout``."""
    field = _fb_field(buf, table, index)
    if field is None:
        return []
    vector = field + struct.unpack_from("<I", buf, field)[0]
    count = struct.unpack_from("<I", buf, vector)[0]
    width = struct.calcsize(layout)
    return [struct.unpack_from(layout, buf, vector + 4 + width * i) for i in range(count)]


# -- whole files -------------------------------------------------------------------------------
class WholeFileFormat(InputFormat):
    """One record per file: key the path, value its contents decoded as UTF-8."""

    name = "wholefile"
    extensions = ()
    splittable = False

    def splits(self, path: str, split_size: int) -> list[Split]:
        compressed = os.path.splitext(path)[1].lower() in COMPRESSED
        return [Split(path, 0, storage.size(path), compressed=compressed, format=self.name)]

    def records(self, split: Split, options: dict[str, Any], on_skip: OnSkip) -> Iterator[tuple[Any, Any]]:
        with _open_input(split.path) as stream:
            data = stream.read()
        try:
            value = self._value(data)
        except UnicodeDecodeError as exc:
            _reject(split.path, 0, data, exc, bool(options.get("skip_bad_records")), on_skip)
            return
        yield split.path, value

    def _value(self, data: bytes) -> str | bytes:
        return data.decode("utf-8")


class WholeFileBytesFormat(WholeFileFormat):
    """One record per file: key the path, value its contents as bytes."""

    name = "wholefile-bytes"

    def _value(self, data: bytes) -> str | bytes:
        return data


for _format in (JsonLinesFormat(), CsvFormat(), CsvFormat(name="csv-noheader", extensions=(), header=False),
                ParquetFormat(), ParquetBatchesFormat(), ArrowFormat(), WholeFileFormat(), WholeFileBytesFormat()):
    register_input_format(_format)


class PairsFormat(InputFormat):
    """Pairs written by an earlier step of a multi-step job (``outputs.PairsPartWriter``):
    one split per file, key and value exactly as that step emitted them."""

    name = "pairs"
    extensions = ()
    splittable = False

    def splits(self, path: str, split_size: int) -> list[Split]:
        size = storage.size(path)
        return [Split(path, 0, size, format=self.name)] if size else []

    def records(self, split: Split, options: dict[str, Any], on_skip) -> Iterator[tuple[Any, Any]]:
        import pickle

        from .keys import decode_key

        import pyarrow as pa

        remote = storage.is_remote(split.path)
        reader = pa.ipc.open_file(storage.open_random(split.path) if remote else pa.memory_map(split.path))
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            for key, value in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                yield decode_key(key), pickle.loads(value)


register_input_format(PairsFormat())
