"""Input files, their line-aligned splits, and the records read from a split.

A split is a byte range ``[start, end)`` of one file. It owns every line whose first
byte lies in that range: a reader that does not start at 0 skips forward past the
first newline at or after ``start - 1`` and then reads whole lines until a line would
start at or after ``end``. So a line that crosses a boundary is read once, by the split
it starts in, and nothing is lost or read twice (Hadoop's text input does the same).

Compressed files (``.gz``, ``.bz2``, ``.zst``) cannot be entered in the middle: each is one
split, and offsets count bytes of the decompressed stream.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from itertools import accumulate, chain, islice, repeat
from operator import add
from typing import IO, Any

from . import storage
from .errors import BadRecordError, InputChanged, InputError


def _zstd_open(raw: IO[bytes], mode: str = "rb") -> IO[bytes]:
    """A zstd stream (every frame of the file), decompressed by Arrow's codec."""
    import pyarrow as pa

    source = raw if isinstance(raw, pa.NativeFile) else pa.PythonFile(raw, mode="r")
    return io.BufferedReader(pa.CompressedInputStream(source, "zstd"), 1024 * 1024)  # lines, like gzip.open's


COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".zst": _zstd_open, ".zstd": _zstd_open}
DEFAULT_SPLIT_SIZE = 64 * 1024 * 1024
_SPLIT_SLOP = 1.1  # a last piece under 10% of a split joins the one before it
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Split:
    """A piece of one input file, read by one map task: a byte range, or what ``state``
    says for formats that split otherwise (row groups, record boundaries)."""

    path: str
    start: int
    end: int
    compressed: bool = False
    format: str = "text"
    state: dict[str, Any] | None = None
    file_size: int | None = None  # the whole file's, when the splits were planned (``unchanged_input``)
    file_mtime_ns: int | None = None

    def describe(self) -> str:
        if self.compressed:
            return f"{self.path} (whole file)"
        return f"{self.path} bytes {self.start}-{self.end}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "start": self.start, "end": self.end, "compressed": self.compressed,
                "format": self.format, "state": self.state, "file_size": self.file_size,
                "file_mtime_ns": self.file_mtime_ns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Split:
        return cls(data["path"], int(data["start"]), int(data["end"]), bool(data["compressed"]),
                   data.get("format", "text"), data.get("state"), data.get("file_size"), data.get("file_mtime_ns"))


class InputFormat:
    """How one kind of input file is cut into splits and read as ``(key, value)`` records.

    Subclass it, give it a ``name`` (and ``extensions`` to be picked by file name), and
    ``register_input_format(MyFormat())``; the default methods read text lines.
    ``options`` are the run's input settings (``skip_bad_records``; ``record_keys``,
    False when the job's ``map`` never reads its key, so a format may give None as
    every key instead of building it, as text does), ``on_skip`` is called
    ``on_skip(where, error)`` for each bad record skipped.
    """

    name = "text"
    extensions: tuple[str, ...] = ()
    splittable = True

    def splits(self, path: str, split_size: int) -> list[Split]:
        size = storage.size(path)
        if size == 0:
            return []
        if os.path.splitext(path)[1].lower() in COMPRESSED or not self.splittable:
            return [Split(path, 0, size, compressed=_is_compressed(path), format=self.name)]
        pieces = []
        start = 0
        while size - start > split_size * _SPLIT_SLOP:
            pieces.append(Split(path, start, start + split_size, format=self.name))
            start += split_size
        pieces.append(Split(path, start, size, format=self.name))
        return pieces

    def records(self, split: Split, options: dict[str, Any], on_skip) -> Iterator[tuple[Any, Any]]:
        return read_text_records(split, bool(options.get("skip_bad_records")), on_skip)

    def record_chunks(self, split: Split, options: dict[str, Any], on_skip) -> Iterator[tuple[int, Iterable]]:
        """``records`` as ``(count, records)`` chunks of at most ``CHUNK_RECORDS``: the
        per-record map loop counts and checks its buffer per chunk, not per record."""
        if type(self).records is InputFormat.records:  # text lines: counted as they are split
            return _text_record_chunks(split, bool(options.get("skip_bad_records")), on_skip,
                                       options.get("record_keys", True))
        return _chunked(self.records(split, options, on_skip), self.name)

    def record_batches(self, split: Split, options: dict[str, Any], on_skip) -> Iterator[Any]:
        """The split as ``pyarrow.RecordBatch`` blocks, for ``map_batch``: text lines as
        ``offset``/``line`` columns. A format with no block form of its records says so."""
        if not self.has_record_batches():
            raise _no_batches(self.name, split.path)
        return read_text_batches(split, bool(options.get("skip_bad_records")), on_skip)

    def has_record_batches(self) -> bool:
        """Whether ``record_batches`` works: text, or a format that gives its own."""
        cls = type(self)
        return cls.records is InputFormat.records or cls.record_batches is not InputFormat.record_batches


def require_record_batches(splits: Sequence[Split]) -> None:
    """Refuse, before any task runs, an input that ``map_batch`` cannot read."""
    for split in splits:
        if not input_format(split.format).has_record_batches():
            raise _no_batches(split.format, split.path)


def _no_batches(format_name: str, path: str) -> InputError:
    return InputError(f"map_batch cannot read {format_name} input ({path}); it reads text, parquet and arrow "
                      "files (write map instead)")


TextFormat = InputFormat
INPUT_FORMATS: dict[str, InputFormat] = {"text": TextFormat()}


def register_input_format(input_format: InputFormat) -> None:
    """Make ``input_format`` available by its name (``--input-format``, ``NAME:PATH``)."""
    INPUT_FORMATS[input_format.name] = input_format


def input_format(name: str) -> InputFormat:
    _load_builtin_formats()
    try:
        return INPUT_FORMATS[name]
    except KeyError:
        raise InputError(f"unknown input format {name!r} (known: {', '.join(sorted(INPUT_FORMATS))})") from None


def _load_builtin_formats() -> None:
    from . import formats  # noqa: F401  registers the formats beyond text


def _is_compressed(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in COMPRESSED


def format_for_path(path: str, default: str | None) -> str:
    """The format named by the run, else by the file's extension (``.csv.gz`` is csv), else text."""
    if default:
        return default
    _load_builtin_formats()
    stem = path[: -len(os.path.splitext(path)[1])] if _is_compressed(path) else path
    extension = os.path.splitext(stem)[1].lower()
    for fmt in INPUT_FORMATS.values():
        if extension in fmt.extensions:
            return fmt.name
    return "text"


def plan_splits(inputs: Sequence[str], split_size: int, default_format: str | None = None) -> list[Split]:
    """Every split of the run's inputs. An input may be prefixed ``FORMAT:`` (``csv:orders/``)."""
    _load_builtin_formats()
    splits: list[Split] = []
    paths = 0
    for given in inputs:
        forced, pattern = split_format_prefix(given)
        for path in resolve_inputs([pattern]):
            paths += 1
            fmt = input_format(format_for_path(path, forced or default_format))
            size, mtime_ns = storage.stat(path) or (None, None)  # before the splits are cut: a change after is seen
            splits.extend(replace(split, file_size=size, file_mtime_ns=mtime_ns)
                          for split in fmt.splits(path, split_size))
    if not splits:
        raise InputError(f"input is empty: {paths} file(s), all of 0 bytes")
    return splits


@contextmanager
def unchanged_input(split: Split) -> Iterator[None]:
    """Run a task over ``split``, failing it with ``InputChanged`` if the file's size or
    mtime differs, before or after, from when the splits were planned: a file truncated
    or rewritten while the job runs would otherwise give a partial result that looks whole.
    A task's own error is put down to the change when the file changed under it."""
    _check_unchanged(split)
    try:
        yield
    except Exception as exc:
        _check_unchanged(split, exc)
        raise
    _check_unchanged(split)


def _check_unchanged(split: Split, cause: Exception | None = None) -> None:
    if split.file_size is None:  # a split made outside plan_splits
        return
    found = storage.stat(split.path)
    if found is None:
        raise InputChanged(f"input {split.path} changed while the job ran: it is gone") from cause
    size, mtime_ns = found
    if size != split.file_size or (split.file_mtime_ns is not None and mtime_ns != split.file_mtime_ns):
        what = f"{split.file_size} bytes, now {size}" if size != split.file_size else "same size, newer mtime"
        raise InputChanged(f"input {split.path} changed while the job ran ({what}); run the job again on "
                           "input that stays as it is") from cause


def split_format_prefix(given: str) -> tuple[str | None, str]:
    """``("csv", "orders/")`` from ``"csv:orders/"``; ``(None, given)`` without a known prefix."""
    _load_builtin_formats()
    head, sep, rest = given.partition(":")
    if sep and not rest.startswith("//") and head in INPUT_FORMATS:
        return head, rest
    return None, given


def parse_size(text: str | int) -> int:
    """Bytes from ``65536``, ``64K``, ``64M``, ``1.5G`` or ``64MiB`` (binary multiples)."""
    if isinstance(text, int):
        size = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise ValueError(f"not a size in bytes: {text!r} (examples: 1048576, 512K, 64M, 1G)")
        number, unit, _ = match.groups()
        size = int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))
    if size <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return size


def resolve_inputs(patterns: Sequence[str]) -> list[str]:
    """Absolute paths (or URIs) of every input file: files, folders (recursively) and globs.

    Hidden files and folders (``.name``, and ``_name`` as Hadoop writes) inside folders
    and in glob matches are skipped. Each pattern must match something.
    """
    if not patterns:
        raise InputError("no input given")
    found: list[str] = []
    for pattern in patterns:
        if storage.is_uri(pattern):
            pattern = storage.normalize(pattern)  # file:// becomes a path; a query is taken off
        if storage.is_remote(pattern):
            found.extend(_remote_files(pattern))
            continue
        matches = _glob(pattern) if glob.has_magic(pattern) else [pattern]
        if glob.has_magic(pattern) and not matches:
            raise InputError(f"input pattern matches no file: {pattern}")
        for match in matches:
            found.extend(_files_under(match))
    seen: set[str] = set()
    unique = [p for p in found if not (p in seen or seen.add(p))]
    if not unique:
        raise InputError(f"no input files found in: {', '.join(patterns)}")
    return unique


def check_output_apart(inputs: Sequence[str], output: str) -> None:
    """Refuse an output folder that an input would list (a rerun with ``--overwrite``
    would read the old output while moving it away), or that holds an input.

    ``inputs`` and ``output`` as ``runners.job_spec`` makes them (absolute, or URIs). An
    output inside an input folder is fine under a hidden name (``_out``, ``.out``),
    which folder inputs and globs skip.
    """
    out = _segments(output)
    for given in inputs:
        pattern = split_format_prefix(given)[1]
        parts = _segments(pattern)
        literal = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        if out[:literal] == parts[:literal] and _may_list(parts[literal:], out[literal:]):
            raise InputError(f"the output folder {storage.display(output)} is inside the input "
                             f"{storage.display(pattern)}: a later run would read the job's own output. Write the "
                             "output elsewhere, or under a name that starts with _ (input folders skip such names)")
        if parts[:len(out)] == out:
            raise InputError(f"the input {storage.display(pattern)} is inside the output folder "
                             f"{storage.display(output)}, which the job replaces; write the output elsewhere")


def _segments(path: str) -> list[str]:
    if storage.is_remote(path):
        return path.rstrip("/").split("/")
    return os.path.realpath(path).split(os.sep)


def _may_list(pattern: list[str], names: list[str]) -> bool:
    """Whether the input glob segments ``pattern`` could list a file at or below the path
    ``names`` (both taken below the glob's literal folder)."""
    if not names:
        return True
    if not pattern:  # a folder above: walked, hidden names skipped
        return not any(map(_hidden, names))
    if _hidden(names[0]):
        return False
    if pattern[0] == "**":
        return _may_list(pattern[1:], names) or _may_list(pattern, names[1:])
    return fnmatchcase(names[0], pattern[0]) and _may_list(pattern[1:], names[1:])


def _glob(pattern: str) -> list[str]:
    """Glob matches, leaving out hidden names below the pattern's literal prefix."""
    parts = pattern.split(os.sep)
    literal = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return [m for m in sorted(glob.glob(pattern, recursive=True))
            if not any(_hidden(part) for part in m.split(os.sep)[literal:])]


def _files_under(path: str) -> list[str]:
    if os.path.isfile(path):
        if not os.access(path, os.R_OK):
            raise InputError(f"input file is not readable: {path}")
        return [os.path.abspath(path)]
    if os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not _hidden(d))
            files.extend(os.path.abspath(os.path.join(root, n)) for n in sorted(names) if not _hidden(n))
        return files
    if os.path.exists(path):
        raise InputError(f"input is not a regular file or folder: {path}")
    raise InputError(f"input path does not exist: {path}")


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _remote_files(pattern: str) -> list[str]:
    """The files a URI names: a file, every file below a folder, or a glob's matches,
    hidden names below the folder (or the glob's literal prefix) left out, in the order
    the local functions give (matches sorted, a folder's files before its subfolders)."""
    parts = pattern.split("/")
    magic = [i for i, part in enumerate(parts) if glob.has_magic(part)]
    if magic and magic[0] < 3:
        raise InputError(f"a glob pattern can match names inside a bucket, not buckets: {storage.display(pattern)}")
    top = "/".join(parts[: magic[0]]) if magic else pattern
    if not magic:
        found = storage.kind(top)
        if found == "file":
            return [top]
        if found is None:
            bucket = "" if storage.container_exists(top) else " (its bucket does not exist)"
            raise InputError(f"input path does not exist: {storage.display(top)}{bucket}")
    wanted = parts[magic[0]:] if magic else []
    matches: dict[str, list[tuple[list[str], str]]] = {}  # what the pattern matched -> files in it
    for uri, _ in storage.list_files(top):
        relative = uri[len(top):].strip("/").split("/")
        if any(_hidden(name) for name in relative):
            continue
        depth = next((d for d in range(1, len(relative) + 1) if _glob_match(wanted, relative[:d])),
                     None) if wanted else 0
        if depth is not None:
            matches.setdefault("/".join(relative[:depth]), []).append((relative[depth:], uri))
    if magic and not matches:
        raise InputError(f"input pattern matches no file: {storage.display(pattern)}")
    files = []
    for match in sorted(matches):
        files.extend(uri for _, uri in sorted(matches[match], key=lambda item: _walk_order(item[0])))
    return files


def _walk_order(names: list[str]) -> list[tuple[int, str]]:
    """Sorts paths as ``os.walk`` with sorted names visits them: a folder's files first."""
    return [(1, name) for name in names[:-1]] + [(0, names[-1])] if names else []


def _glob_match(pattern: list[str], names: list[str]) -> bool:
    """Whether path segments match glob segments (``**`` stands for any number of them)."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], names[skip:]) for skip in range(len(names) + 1))
    return bool(names) and fnmatchcase(names[0], pattern[0]) and _glob_match(pattern[1:], names[1:])


def make_splits(paths: Sequence[str], split_size: int) -> list[Split]:
    """Text splits of each file, about ``split_size`` bytes each; empty files give none."""
    splits = [split for path in paths for split in TextFormat().splits(path, split_size)]
    if not splits:
        raise InputError(f"input is empty: {len(paths)} file(s), all of 0 bytes")
    return splits


def read_lines(split: Split) -> Iterator[tuple[int, bytes]]:
    """``(byte_offset, raw_line)`` for every line the split owns, line endings kept."""
    try:
        yield from _read_lines(split)
    except OSError as exc:
        if exc.filename != split.path:
            raise
        raise InputError(f"cannot read input {split.path}: {exc.strerror} (in cluster mode, inputs must be on a "
                         "filesystem that every worker sees at the same path)") from None


@contextmanager
def open_input(path: str, buffering: int = -1) -> Iterator[IO[bytes]]:
    """A file's bytes, decompressed when its extension says so; a path or a URI."""
    opener = COMPRESSED.get(os.path.splitext(path)[1].lower())
    with storage.open_input(path, buffering) as raw:
        if opener is None:
            yield raw
            return
        with opener(raw, "rb") as stream:
            yield stream


def _read_lines(split: Split) -> Iterator[tuple[int, bytes]]:
    if split.compressed:
        with open_input(split.path) as stream:
            yield from _lines_from(stream, 0, None)
        return
    with storage.open_input(split.path, buffering=1024 * 1024) as stream:
        pos = split.start
        if pos > 0:
            stream.seek(pos - 1)
            pos += len(stream.readline()) - 1
        yield from _lines_from(stream, pos, split.end)


def _lines_from(stream: IO[bytes], pos: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    for line in stream:
        if end is not None and pos >= end:
            return
        yield pos, line
        pos += len(line)


def read_text_records(split: Split, skip_bad_records: bool, on_skip) -> Iterator[tuple[tuple[str, int], str]]:
    """Text records: key ``(path, byte_offset)``, value the line as str without its ending.

    Lines are decoded a block at a time (one ``decode`` and one ``split`` per MiB, in
    C); a block that is not valid UTF-8 is read again line by line, where an
    undecodable line raises ``BadRecordError`` naming the file and offset, or, with
    ``skip_bad_records``, is passed to ``on_skip(offset, error)`` and left out.
    The records of a block come from C iterators chained in C: no Python frame per line.
    """
    return chain.from_iterable(records for _, records in _record_blocks(split, skip_bad_records, on_skip))


def _text_record_chunks(split: Split, skip_bad_records: bool, on_skip,
                        keys: bool = True) -> Iterator[tuple[int, Iterable]]:
    for count, records in _record_blocks(split, skip_bad_records, on_skip, keys):
        if count is None:  # read line by line: lines may be skipped
            records = list(records)
            count = len(records)
        records = iter(records)
        for start in range(0, count, CHUNK_RECORDS):
            yield min(CHUNK_RECORDS, count - start), islice(records, CHUNK_RECORDS)


def _chunked(records: Iterable, format_name: str) -> Iterator[tuple[int, list]]:
    """Counted chunks of a format's records, each checked (in C) to be ``(key, value)``,
    so that a format's bug is not taken for the ``map`` that gets its records."""
    records = iter(records)
    while chunk := list(islice(records, CHUNK_RECORDS)):
        if not set(map(type, chunk)) <= {tuple, list} or set(map(len, chunk)) != {2}:
            bad = next(r for r in chunk if not isinstance(r, (tuple, list)) or len(r) != 2)
            raise TypeError(f"input format {format_name!r} must give (key, value) records; it gave {bad!r:.200}")
        yield len(chunk), chunk


def _record_blocks(split: Split, skip_bad_records: bool, on_skip,
                   keys: bool = True) -> Iterator[tuple[int | None, Iterator]]:
    """``(count, records)`` per block of lines; count None when lines may be skipped.
    Without ``keys`` every record's key is None."""
    path = split.path
    for base, block in _line_blocks(split, RECORD_BLOCK_BYTES):
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            yield None, _records_line_by_line(path, base, block, skip_bad_records, on_skip)
            continue
        lines = text.split("\n")
        unterminated = lines.pop()  # "" when the block ends with a newline
        if keys:
            # each line's byte length: its length in characters if the block is ASCII
            raw_lengths = map(len, lines if len(text) == len(block) else block.split(b"\n"))
            starts: Iterable[Any] = zip(repeat(path), accumulate(map(add, raw_lengths, repeat(1)), initial=base))
        else:
            starts = repeat(None)
        if "\r" in text:
            lines = [line[:-1] if line[-1:] == "\r" else line for line in lines]
        yield len(lines), zip(starts, lines)
        if unterminated:  # the file's last line, without a line ending: kept as it is
            start = base + len(block) - len(unterminated.encode("utf-8", "surrogatepass"))
            yield 1, iter([((path, start) if keys else None, unterminated)])


RECORD_BLOCK_BYTES = 1024 * 1024
CHUNK_RECORDS = 1024  # records per chunk of record_chunks


def _line_blocks(split: Split, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` blocks of whole lines that the split owns."""
    pending = b""
    base = None
    for offset, chunk, last in _text_blocks(split, block_bytes):
        if base is None:
            base = offset
        pending += chunk
        cut = len(pending) if last else pending.rfind(b"\n") + 1
        if cut <= 0:
            continue
        block, pending = pending[:cut], pending[cut:]
        yield base, block
        base += len(block)


def _records_line_by_line(path: str, base: int, block: bytes, skip_bad_records: bool, on_skip):
    offset = base
    for raw in block.splitlines(keepends=True) if b"\r" not in block else _split_keep_newline(block):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not skip_bad_records:
                raise _undecodable(path, offset, exc) from None
            on_skip(offset, exc)
            offset += len(raw)
            continue
        if line.endswith("\n"):
            line = line[:-2] if line.endswith("\r\n") else line[:-1]
        yield (path, offset), line
        offset += len(raw)


def _undecodable(path: str, offset: int, exc: UnicodeDecodeError) -> BadRecordError:
    return BadRecordError(f"{path}: line at byte offset {offset} is not valid UTF-8 "
                          f"({exc.reason} at byte {offset + exc.start}); "
                          "use --skip-bad-records to count and skip such lines")


def _split_keep_newline(block: bytes) -> list[bytes]:
    """Lines ending at ``\n`` only (``bytes.splitlines`` would also cut at a lone ``\r``)."""
    pieces = block.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


BATCH_BYTES = 8 * 1024 * 1024


def read_text_batches(split: Split, skip_bad_records: bool, on_skip,
                      block_bytes: int = BATCH_BYTES) -> Iterator[Any]:
    """The split's lines as Arrow record batches (``offset`` int64, ``line`` string).

    The same lines as ``read_text_records`` (the same ownership rule, ``\\n`` and
    ``\\r\\n`` removed), cut and decoded in C a block at a time.
    """
    import pyarrow as pa

    for base, block in _line_blocks(split, block_bytes):
        batch = _lines_batch(pa, split.path, base, block, skip_bad_records, on_skip)
        if batch.num_rows:
            yield batch


def _text_blocks(split: Split, block_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(offset, bytes, is_last)``: the bytes of the lines the split owns, in blocks."""
    if split.compressed:
        with open_input(split.path) as stream:
            offset = 0
            while True:
                chunk = stream.read(block_bytes)
                yield offset, chunk, not chunk
                if not chunk:
                    return
                offset += len(chunk)
    with storage.open_input(split.path) as stream:
        pos = split.start
        if pos > 0:
            stream.seek(pos - 1)
            pos += len(stream.readline()) - 1
        while pos < split.end:
            chunk = stream.read(min(block_bytes, split.end - pos))
            if not chunk:
                break
            chunk_start = pos
            pos += len(chunk)
            if pos >= split.end and not chunk.endswith(b"\n"):
                tail = stream.readline()  # finish the last line the split owns
                chunk += tail
                pos += len(tail)
            yield chunk_start, chunk, pos >= split.end
        yield pos, b"", True


def _lines_batch(pa, path: str, base: int, block: bytes, skip_bad_records: bool, on_skip):
    import pyarrow.compute as pc

    terminated = block.endswith(b"\n")
    if terminated:
        block = block[:-1]
    lines = pc.split_pattern(pa.array([block], pa.large_binary()), b"\n").flatten()
    lengths = pc.add(pc.binary_length(lines), 1)
    offsets = pc.subtract(pc.add(pc.cumulative_sum(lengths), base), lengths)
    if b"\r" in block:
        stripped = pc.replace_substring_regex(lines, rb"\r$", b"")
        if not terminated:  # the file's last line has no line ending: keep its \r
            stripped = pa.concat_arrays([stripped.slice(0, len(lines) - 1), lines.slice(len(lines) - 1)])
        lines = stripped
    try:
        text = lines.cast(pa.large_string())
    except pa.ArrowInvalid:
        keep, text = _decode_each(path, lines.to_pylist(), offsets.to_pylist(), skip_bad_records, on_skip)
        offsets = offsets.filter(pa.array(keep))
        text = pa.array(text, pa.large_string())
    return pa.record_batch([offsets.cast(pa.int64()), text], names=["offset", "line"])


def _decode_each(path: str, raw_lines: list[bytes], offsets: list[int], skip_bad_records: bool, on_skip):
    keep, text = [], []
    for raw, offset in zip(raw_lines, offsets):
        try:
            text.append(raw.decode("utf-8"))
            keep.append(True)
        except UnicodeDecodeError as exc:
            if not skip_bad_records:
                raise _undecodable(path, offset, exc) from None
            on_skip(offset, exc)
            keep.append(False)
    return keep, text
