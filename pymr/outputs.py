"""Job output: the text and JSON-lines formats, and the committer that makes output atomic.

Layout while a job runs (``OUT`` is the output folder)::

    OUT/_temporary/<job_id>/<attempt_id>/part-00003    an attempt writes here
    OUT/_temporary/<job_id>/committed/part-00003       the one attempt committed per task

A task attempt is committed by one ``os.replace`` into ``committed/``, decided by the
coordinator, which commits exactly one attempt per task (later or duplicate attempts
are deleted). The job commit moves every committed part into ``OUT``, removes
``_temporary`` and writes ``_SUCCESS`` last. A failed or cancelled job removes
``_temporary`` and leaves no part files and no ``_SUCCESS``; if the job created
``OUT``, it removes ``OUT`` too. With ``overwrite``, what ``OUT`` held is moved aside
to ``OUT/_temporary/<job_id>/previous/`` when the job starts (renames, no copy) and
deleted by the job commit; a failed job puts it back as it was, ``_SUCCESS`` included.

``OUT`` may be a URI (``storage``). Where files rename atomically (HDFS) the protocol
is the same. An object store (S3, GCS, Azure) has no rename, so ``RemoteCommitter``
never makes a final name before the job commit: a task commit only records which
attempt's files are the task's output, and they stay where that attempt wrote them;
the job commit copies each to its final name (inside the store), writes
``_REPORT.json``, removes ``_temporary`` and writes ``_SUCCESS`` last. A failed job
still leaves no part files and no ``_SUCCESS``, and a job commit that fails (a copy
refused) deletes what it copied. With ``overwrite`` the old output is deleted by the
job commit, before the copies (``_SUCCESS`` first), so a job that fails while it runs
leaves it as it was. But the copies are many requests, not one rename
each: a job commit that dies halfway (the coordinator killed) leaves some final parts
without ``_SUCCESS``, so a reader must check ``_SUCCESS`` first. Part writers write a
remote part to a local file and upload it whole when it is closed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from . import storage
from .errors import OutputExistsError, StorageError

log = logging.getLogger("pymr.outputs")

SUCCESS = "_SUCCESS"
TEMPORARY = "_temporary"
REPORT = "_REPORT.json"


PAIRS = "pairs"  # between the steps of a multi-step job: Arrow IPC, exact keys and values


def part_name(index: int, output_format: str = "text") -> str:
    return f"part-{index:05d}" + {"parquet": ".parquet", PAIRS: ".arrow"}.get(output_format, "")


class PairsPartWriter:
    """Pairs as an Arrow IPC file (encoded keys, pickled values), read back by the ``pairs`` input format."""

    BATCH_ROWS = 8192

    def __init__(self, path: str):
        import pyarrow as pa

        self.path = path
        self.records = 0
        self.schema = pa.schema([("key", pa.large_binary()), ("value", pa.large_binary())])
        self._sink = pa.OSFile(path, "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)
        self._keys: list[bytes] = []
        self._values: list[bytes] = []

    def write(self, key: Any, value: Any) -> None:
        from .keys import encode_key
        from .shuffle import dump_value

        self._keys.append(encode_key(key))
        self._values.append(dump_value(value))
        self.records += 1
        if len(self._keys) >= self.BATCH_ROWS:
            self._flush()

    def write_table(self, table: Any) -> None:
        from .keys import decode_key

        keys = table.column("key").to_pylist()
        if table.schema.field("key").type.equals(self.schema.field("key").type):
            keys = [decode_key(k) for k in keys]
        for key, value in zip(keys, table.column("value").to_pylist()):
            self.write(key, value)

    def write_columns(self, keys: list[Any], values: list[Any]) -> None:
        for key, value in zip(keys, values):
            self.write(key, value)

    def _flush(self) -> None:
        import pyarrow as pa

        if self._keys:
            self._writer.write_batch(pa.record_batch([pa.array(self._keys, pa.large_binary()),
                                                      pa.array(self._values, pa.large_binary())], schema=self.schema))
            self._keys, self._values = [], []

    def close(self) -> int:
        self._flush()
        self._writer.close()
        self._sink.close()
        return os.path.getsize(self.path)


def open_part_writer(directory: str, index: int, output_format: str, key_type: Any = None, value_type: Any = None):
    """A writer for part ``index`` in ``output_format``; see ``PartWriter``."""
    name = part_name(index, output_format)
    if storage.is_remote(directory):
        return UploadingWriter(storage.join(directory, name),
                               lambda path: _part_writer(path, output_format, key_type, value_type))
    return _part_writer(os.path.join(directory, name), output_format, key_type, value_type)


def _part_writer(path: str, output_format: str, key_type: Any, value_type: Any):
    if output_format == PAIRS:
        return PairsPartWriter(path)
    if output_format == "parquet":
        from .parquet_output import ParquetPartWriter

        return ParquetPartWriter(path, key_type, value_type)
    return PartWriter(path, output_format)


class UploadingWriter:
    """A part writer for a remote folder: the part is written to a local file by the
    format's own writer, and ``close`` uploads it whole."""

    def __init__(self, path: str, make_writer: Callable[[str], Any]):
        self.path = path
        self._staging = tempfile.mkdtemp(prefix="pymr-upload-")
        try:
            self._writer = make_writer(os.path.join(self._staging, os.path.basename(path)))
        except BaseException:
            shutil.rmtree(self._staging, ignore_errors=True)
            raise

    def __getattr__(self, name: str) -> Any:  # write, write_table, records, ...
        return getattr(self._writer, name)

    def close(self) -> int:
        """Finish the local file and upload it; returns the bytes written."""
        try:
            nbytes = self._writer.close()
            storage.upload(self._writer.path, self.path)
            return nbytes
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)


# -- formats -------------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return repr(obj)


def to_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default)


def _text_field(obj: Any) -> str:
    kind = type(obj)
    if kind is str:
        return obj
    if kind is int:
        return str(obj)  # what json.dumps gives, without its cost
    return to_json(obj)


def format_text(key: Any, value: Any) -> str:
    """``key<TAB>value``: a str as it is, anything else as JSON; a None value writes the key alone."""
    if value is None:
        return _text_field(key) + "\n"
    return f"{_text_field(key)}\t{_text_field(value)}\n"


def format_jsonl(key: Any, value: Any) -> str:
    """One JSON array ``[key, value]`` per line."""
    return to_json([key, value]) + "\n"


FORMATTERS = {"text": format_text, "jsonl": format_jsonl}


class PartWriter:
    """Writes one part file of pairs in an output format, counting records and bytes."""

    def __init__(self, path: str, output_format: str):
        self.path = path
        self.format = FORMATTERS[output_format]
        self.records = 0
        self._file: IO[str] = open(path, "w", encoding="utf-8", newline="\n", buffering=1024 * 1024)

    def write(self, key: Any, value: Any) -> None:
        self._file.write(self.format(key, value))
        self.records += 1

    def write_columns(self, keys: list[Any], values: list[Any]) -> None:
        """Write the pairs ``zip(keys, values)``: text of str keys and int or str values
        is joined in Arrow, anything else formatted pair by pair."""
        table = _text_table(keys, values) if self.format is format_text else None
        if table is not None:
            self.write_table(table)
            return
        self._file.write("".join(map(self.format, keys, values)))
        self.records += len(keys)

    def write_table(self, table: Any) -> None:
        """Write a sorted ``key``/``value`` Arrow table: in C for text with str keys and
        str, int or null-typed values (see ``_text_in_arrow``), else pair by pair (keys
        stored encoded are decoded)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from .keys import decode_key

        if self.format is format_text and _text_in_arrow(table):
            keys, values = table.column("key").cast(pa.large_string()), table.column("value")
            tab, newline = pa.scalar("\t", pa.large_string()), pa.scalar("\n", pa.large_string())
            if values.type == pa.null():  # None values: the key alone, as format_text writes them
                lines = keys
            else:
                lines = pc.binary_join_element_wise(keys, values.cast(pa.large_string()), tab)
            for chunk in lines.chunks:
                joined = pc.binary_join(pa.LargeListArray.from_arrays([0, len(chunk)], chunk), newline)
                self._file.write(joined[0].as_py() + "\n")
            self.records += table.num_rows
            return
        keys = table.column("key").to_pylist()
        if table.schema.field("key").type == pa.large_binary():
            keys = [decode_key(k) for k in keys]
        for key, value in zip(keys, table.column("value").to_pylist()):
            self.write(key, value)

    def close(self) -> int:
        """Flush to disk; returns the bytes written."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return os.path.getsize(self.path)


def _text_table(keys: list[Any], values: list[Any]) -> Any:
    """``keys`` and ``values`` as a table ``_text_in_arrow`` takes, or None: str keys, and
    values all str or all int (not bool) in int64's range."""
    import pyarrow as pa

    value_types = set(map(type, values))
    if not keys or set(map(type, keys)) != {str} or value_types not in ({str}, {int}):
        return None
    try:
        value_array = pa.array(values, pa.large_string() if value_types == {str} else pa.int64())
    except OverflowError:
        return None
    return pa.table({"key": pa.array(keys, pa.large_string()), "value": value_array})


def _text_in_arrow(table: Any) -> bool:
    """Whether Arrow can write these pairs as ``format_text`` would: str keys, and str,
    int or no (null-typed) values, none of them missing."""
    import pyarrow as pa

    keys, values = table.column("key"), table.column("value")
    return (table.num_rows > 0 and keys.type in (pa.string(), pa.large_string()) and keys.null_count == 0
            and (values.type == pa.null() or (values.type in (pa.int64(), pa.string(), pa.large_string())
                                              and values.null_count == 0)))


def parse_line(line: str, output_format: str) -> tuple[Any, Any]:
    """Read a pair back from a line of output (text fields that are valid JSON are decoded)."""
    line = line.rstrip("\n")
    if output_format == "jsonl":
        key, value = json.loads(line)
        return key, value
    key_text, tab, value_text = line.partition("\t")
    if not tab:
        return key_text, None
    return key_text, _maybe_json(value_text)


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- committer -----------------------------------------------------------------------------
class OutputCommitter:
    """Owns one job's output folder: attempt folders, task commits, job commit and abort."""

    def __init__(self, output_dir: str, job_id: str):
        self.output_dir = os.path.abspath(output_dir)
        self.job_id = job_id
        self.job_temp = os.path.join(self.output_dir, TEMPORARY, job_id)
        self.committed = os.path.join(self.job_temp, "committed")
        self.previous = os.path.join(self.job_temp, "previous")  # the output this job replaces
        self.created_output = False

    def setup(self, overwrite: bool) -> None:
        """Check and prepare the output folder before any task runs."""
        if os.path.exists(self.output_dir):
            if not os.path.isdir(self.output_dir):
                raise OutputExistsError(f"output path exists and is not a folder: {self.output_dir}")
            if set(os.listdir(self.output_dir)) - {TEMPORARY}:
                if not overwrite:
                    raise OutputExistsError(
                        f"output folder already exists: {self.output_dir} (use --overwrite to replace it)"
                    )
                self._set_aside_output()
        else:
            os.makedirs(self.output_dir)
            self.created_output = True
        os.makedirs(self.committed, exist_ok=True)

    def _set_aside_output(self) -> None:
        """Move the output being replaced into ``previous/``: deleted by the job commit,
        put back by an abort, so a failed ``--overwrite`` run loses nothing."""
        os.makedirs(self.previous)
        moved: list[str] = []
        try:
            for name in _visible_entries(self.output_dir):
                os.replace(os.path.join(self.output_dir, name), os.path.join(self.previous, name))
                moved.append(name)
        except OSError:  # e.g. a mount point inside the output: the job is refused, the output left whole
            for name in moved:
                os.replace(os.path.join(self.previous, name), os.path.join(self.output_dir, name))
            self._remove_temporary()
            raise

    def _restore_output(self) -> None:
        """Put the replaced output back, once whatever this job published is removed."""
        if not os.path.isdir(self.previous):
            return
        for name in _visible_entries(self.output_dir):
            storage.delete(os.path.join(self.output_dir, name))
        for name in os.listdir(self.previous):
            os.replace(os.path.join(self.previous, name), os.path.join(self.output_dir, name))

    def attempt_dir(self, attempt_id: str) -> str:
        return os.path.join(self.job_temp, attempt_id)

    def commit_task(self, attempt_id: str, files: list[str]) -> None:
        """Move an attempt's files into ``committed/``: the one commit of its task."""
        source = self.attempt_dir(attempt_id)
        for name in files:
            os.replace(os.path.join(source, name), os.path.join(self.committed, name))
        shutil.rmtree(source, ignore_errors=True)

    def discard_attempt(self, attempt_id: str) -> None:
        shutil.rmtree(self.attempt_dir(attempt_id), ignore_errors=True)

    def commit_job(self, report: dict[str, Any]) -> None:
        """Publish every committed part, the report, then ``_SUCCESS``."""
        _unify_parquet([os.path.join(self.committed, name) for name in os.listdir(self.committed)])
        for name in sorted(os.listdir(self.committed)):
            os.replace(os.path.join(self.committed, name), os.path.join(self.output_dir, name))
        write_report(self.output_dir, report)
        self._remove_temporary()
        storage.write_bytes(os.path.join(self.output_dir, SUCCESS), b"")

    def abort_job(self) -> None:
        """Leave nothing that looks like this job's output: no parts, no ``_SUCCESS``;
        the output it was to replace is back as it was."""
        self._restore_output()
        self._remove_temporary()
        if self.created_output and os.path.isdir(self.output_dir) and not os.listdir(self.output_dir):
            os.rmdir(self.output_dir)

    def _remove_temporary(self) -> None:
        shutil.rmtree(self.job_temp, ignore_errors=True)
        temporary = os.path.dirname(self.job_temp)
        if os.path.isdir(temporary) and not os.listdir(temporary):
            os.rmdir(temporary)


def _visible_entries(output_dir: str) -> list[str]:
    """What the output folder shows readers: everything but ``_temporary``."""
    return [name for name in os.listdir(output_dir) if name != TEMPORARY]


def output_committer(output_dir: str, job_id: str) -> OutputCommitter:
    """The committer of an output folder: a local path, or a URI (``RemoteCommitter``)."""
    if storage.is_remote(output_dir):
        return RemoteCommitter(output_dir, job_id)
    return OutputCommitter(output_dir, job_id)


class RemoteCommitter(OutputCommitter):
    """The committer of an output folder given by URI, through ``storage``.

    Where files rename atomically (HDFS), it renames as ``OutputCommitter`` does. On an
    object store it follows the protocol in the module docstring: ``commit_task``
    records the attempt's files, ``commit_job`` copies them to their final names. Its
    methods that only clean up log a failure rather than raise it (as the local one
    ignores errors there), since the coordinator calls them in its event loop.
    """

    COPY_THREADS = 16  # copies of the job commit in flight at once

    def __init__(self, output_dir: str, job_id: str):  # no I/O here: that starts in setup()
        self.output_dir = output_dir
        self.job_id = job_id
        self.job_temp = storage.join(output_dir, TEMPORARY, job_id)
        self.committed = storage.join(self.job_temp, "committed")
        self.created_output = False
        self._renames: bool | None = None
        self._published: dict[str, str] = {}  # final name -> the committed attempt's file
        self._written: list[str] = []  # final files the job commit made, removed if it fails
        self.replacing = False  # the output holds an earlier job's files, which the job commit deletes

    @property
    def renames(self) -> bool:
        if self._renames is None:
            self._renames = storage.renames_atomically(self.output_dir)
        return self._renames

    def setup(self, overwrite: bool) -> None:
        where = storage.display(self.output_dir)
        found = storage.kind(self.output_dir)
        if found in ("file", "other"):
            raise OutputExistsError(f"output path exists and is not a folder: {where}")
        if found == "dir":
            if set(storage.listdir(self.output_dir)) - {TEMPORARY}:
                if not overwrite:
                    raise OutputExistsError(f"output folder already exists: {where} (use --overwrite to replace it)")
                self.replacing = True  # deleted by the job commit: a job that fails leaves it as it was
        elif not storage.container_exists(self.output_dir):
            raise StorageError(f"cannot write {where}: the bucket {where.split('/')[2]!r} does not exist")
        else:
            storage.makedirs(self.output_dir)
            self.created_output = True
        if self.renames:
            storage.makedirs(self.committed)

    def attempt_dir(self, attempt_id: str) -> str:
        return storage.join(self.job_temp, attempt_id)

    def commit_task(self, attempt_id: str, files: list[str]) -> None:
        source = self.attempt_dir(attempt_id)
        if not self.renames:  # no final name yet: the job commit copies these
            self._published.update((name, storage.join(source, name)) for name in files)
            return
        for name in files:
            storage.move(storage.join(source, name), storage.join(self.committed, name))
        self._quietly(storage.delete, source)

    def discard_attempt(self, attempt_id: str) -> None:
        self._quietly(storage.delete, self.attempt_dir(attempt_id))

    def commit_job(self, report: dict[str, Any]) -> None:
        if self.renames:
            parts = {name: storage.join(self.committed, name) for name in storage.listdir(self.committed)}
        else:
            parts = dict(self._published)
        _unify_parquet(list(parts.values()))
        if self.replacing:
            self._delete_replaced()
        publish = storage.move if self.renames else storage.copy
        self._written = [storage.join(self.output_dir, name) for name in sorted(parts)] + [
            storage.join(self.output_dir, REPORT)]
        with ThreadPoolExecutor(self.COPY_THREADS) as pool:
            for done in [pool.submit(publish, parts[name], storage.join(self.output_dir, name))
                         for name in sorted(parts)]:
                done.result()  # the first failure fails the job commit (and abort_job removes what it made)
        write_report(self.output_dir, report)
        self._remove_temporary()
        storage.write_bytes(storage.join(self.output_dir, SUCCESS), b"")

    def _delete_replaced(self) -> None:
        """Delete the output this job replaces (all but ``_temporary``), ``_SUCCESS`` first
        so that no reader trusts what is left if a delete fails."""
        names = [name for name in storage.listdir(self.output_dir) if name != TEMPORARY]
        for name in sorted(names, key=lambda name: name != SUCCESS):
            storage.delete(storage.join(self.output_dir, name))

    def abort_job(self) -> None:
        """Remove ``_temporary``, and the final files of a job commit that failed."""
        for path in self._written:
            self._quietly(storage.delete, path)
        self._remove_temporary()
        if self.created_output:
            self._quietly(_delete_if_empty, self.output_dir)

    def _remove_temporary(self) -> None:
        self._quietly(storage.delete, self.job_temp)
        self._quietly(_delete_if_empty, storage.join(self.output_dir, TEMPORARY))

    def _quietly(self, operation: Callable[[str], Any], path: str) -> None:
        try:
            operation(path)
        except OSError as exc:
            log.warning("could not clean up %s: %s", storage.display(path), exc)


def _delete_if_empty(folder: str) -> None:
    """Remove a folder with nothing in it (on an object store, the empty marker a delete leaves)."""
    if not storage.listdir(folder):
        storage.delete(folder)


def write_report(output_dir: str, report: dict[str, Any]) -> None:
    """``OUT/_REPORT.json``, replaced atomically."""
    storage.write_bytes(storage.join(output_dir, REPORT), (json.dumps(report, indent=2, default=repr) + "\n").encode())


def _unify_parquet(parts: list[str]) -> None:
    """Give the Parquet parts among these one schema before they are published (see ``parquet_output``)."""
    parquet = [path for path in parts if path.endswith(".parquet")]
    if parquet:
        from .parquet_output import unify_parquet_parts

        unify_parquet_parts(parquet)


# -- results -------------------------------------------------------------------------------
class JobResult:
    """A finished job: its output folder, counters and report; iterate it for ``(key, value)``.

    Pairs come back as the output format keeps them: ``jsonl`` and ``parquet`` give keys
    and values their JSON types back, and a key that was a tuple comes back a tuple
    (JSON has only arrays; a key cannot be a list, so an array key was a tuple); a
    value that was a tuple comes back a list. ``text`` gives each key as its text (a
    tuple key as the text of a JSON array) and a value that is valid JSON decoded.
    """

    def __init__(self, output_dir: str, output_format: str, counters: dict[str, dict[str, int]], report: dict):
        #: the folder (or URI) the part files are in
        self.output_dir = output_dir
        #: ``text``, ``jsonl`` or ``parquet``
        self.output_format = output_format
        #: ``{group: {name: total}}``, the framework's (group ``pymr``) and the job's own
        self.counters = counters
        #: the job's report, as written to ``_REPORT.json``: tasks, attempts, times, counters
        self.report = report

    def part_files(self) -> list[str]:
        """The output's part files (paths or URIs), in part order."""
        names = sorted(n for n in storage.listdir(self.output_dir) if n.startswith("part-"))
        return [storage.join(self.output_dir, n) for n in names]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Every output pair, part file by part file (read from the files, not held in memory)."""
        if self.output_format == "parquet":
            from .parquet_output import read_parquet_pairs

            for path in self.part_files():
                for key, value in read_parquet_pairs(path):
                    yield _tuple_key(key), value
            return
        for path in self.part_files():
            with io.TextIOWrapper(storage.open_input(path), encoding="utf-8") as f:
                for line in f:
                    key, value = parse_line(line, self.output_format)
                    yield (_tuple_key(key) if self.output_format == "jsonl" else key), value

    def __len__(self) -> int:
        """The number of output records (read from the part files, not from counters)."""
        if self.output_format == "parquet":
            import pyarrow.parquet as pq

            total = 0
            for path in self.part_files():
                with storage.open_input(path) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
            return total
        total = 0
        for path in self.part_files():
            with storage.open_input(path) as f:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return total

    def to_arrow(self) -> Any:
        """Every pair as a ``pyarrow.Table`` of columns ``key`` and ``value``. A column whose
        values Arrow cannot hold in one type (tuple keys, mixed types) is JSON text."""
        import pyarrow as pa

        keys: list[Any] = []
        values: list[Any] = []
        for key, value in self:
            keys.append(key)
            values.append(value)
        return pa.table({"key": _arrow_column(keys), "value": _arrow_column(values)})

    def to_pandas(self) -> Any:
        """Every pair as a ``pandas.DataFrame`` of columns ``key`` and ``value`` (needs pandas,
        which pymr does not install)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ImportError("JobResult.to_pandas() needs pandas (pip install pandas); to_arrow() does not") from None
        return self.to_arrow().to_pandas()

    def counter(self, group: str, name: str) -> int:
        """One counter's total (0 if it was never incremented)."""
        return self.counters.get(group, {}).get(name, 0)

    def __repr__(self) -> str:
        return f"JobResult(output_dir={self.output_dir!r})"


def _tuple_key(key: Any) -> Any:
    """A key read back from JSON: an array was a tuple (lists cannot be keys)."""
    return tuple(map(_tuple_key, key)) if isinstance(key, list) else key


def _arrow_column(items: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([json.dumps(item, default=repr) for item in items], pa.string())
