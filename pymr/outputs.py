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
A job commit that fails (a full disk) deletes what it published and does the same.

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

On either kind of folder, a job commit that died can be run again and finishes: it
keeps its plan in ``_temporary`` (see ``OutputCommitter``).
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def _name_bytes(error: UnicodeEncodeError) -> tuple[bytes, int]:
    """Lone surrogates in text output: those that ``surrogateescape`` made of a name's
    undecodable bytes (U+DC80..U+DCFF) as those bytes again, any other as ``\\udXXX``."""
    chars = error.object[error.start:error.end]
    return b"".join(bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF else
                    c.encode("ascii", "backslashreplace") for c in chars), error.end


codecs.register_error("pymr.name_bytes", _name_bytes)
# what a str that UTF-8 cannot hold (a file name that is not UTF-8) becomes in each format:
# text, the name's own bytes; JSON lines, the escape \udcXX, which JSON reads back as the same str
UNENCODABLE = {"text": "pymr.name_bytes", "jsonl": "backslashreplace"}


class PartWriter:
    """Writes one part file of pairs in an output format, counting records and bytes."""

    def __init__(self, path: str, output_format: str):
        self.path = path
        self.format = FORMATTERS[output_format]
        self.records = 0
        self._file: IO[str] = open(path, "w", encoding="utf-8", errors=UNENCODABLE[output_format], newline="\n",
                                   buffering=1024 * 1024)

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
        return pa.table({"key": pa.array(keys, pa.large_string()), "value": value_array})
    except (OverflowError, UnicodeEncodeError):  # a str that is not UTF-8 (a file name): formatted in Python
        return None


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
MANIFEST = "_COMMIT.json"  # in the job's temporary folder: what the job commit publishes, final name -> file
COMMIT_FAULT_ENV = "PYMR_TEST_COMMIT_FAULT"


class OutputCommitter:
    """Owns one job's output folder: attempt folders, task commits, job commit and abort.

    The job commit can be run again, by a fresh committer of the same folder and job id
    (a restarted coordinator), after it died at any point: it reads how far it got from
    the folder itself, finishes, and leaves the same folder, ``_SUCCESS`` last. Its steps:

    1. plan: give Parquet parts one schema, then write ``MANIFEST`` (final name -> the
       committed file). A rerun that finds the manifest publishes what it lists.
    2. publish each part under its final name; a rerun skips a part whose file is gone
       and whose final name exists (it was moved).
    3. write ``_REPORT.json``; a rerun that finds this job's id in it skips 1 to 3.
    4. delete ``_temporary`` (the replaced output with it), then move ``_SUCCESS``,
       written empty into the job's folder in step 1, to ``OUT``.

    Everything that needs disk space happens before step 4, so a job commit that fails
    (a full disk) can be aborted: ``abort_job`` deletes what it published and puts the
    replaced output back.
    """

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
        """Move an attempt's files into ``committed/``: the one commit of its task (again
        after a restart: files already moved are left as they are)."""
        source = self.attempt_dir(attempt_id)
        for name in files:
            _move_once(os.path.join(source, name), os.path.join(self.committed, name))
        shutil.rmtree(source, ignore_errors=True)

    def recover_task(self, attempt_id: str, files: list[str]) -> None:
        """Redo, in a fresh committer (after a restart), a task commit recorded before: the
        coordinator records a commit before it renames the files, so a file may still be
        in the attempt's folder (then it is moved now) or already committed."""
        for name in files:
            if os.path.exists(os.path.join(self.attempt_dir(attempt_id), name)):
                self.commit_task(attempt_id, [name])

    def discard_attempt(self, attempt_id: str) -> None:
        shutil.rmtree(self.attempt_dir(attempt_id), ignore_errors=True)

    def commit_job(self, report: dict[str, Any], expected: Iterable[str] = ()) -> None:
        """Publish every committed part, the report, then ``_SUCCESS``; see the class docstring.
        ``expected`` names the parts the job's tasks committed: one missing fails the commit,
        so a job can never succeed with part of its output."""
        if not self._report_is_this_jobs():
            parts = self._commit_plan(expected)
            self._publish(parts)
            write_report(self.output_dir, report)
            _fault_point("report")
        self._finish()

    def _report_is_this_jobs(self) -> bool:
        """Whether ``OUT/_REPORT.json`` is this job's: its parts are all published."""
        try:
            with storage.open_input(storage.join(self.output_dir, REPORT)) as f:
                return json.load(f).get("job_id") == self.job_id
        except (OSError, ValueError, AttributeError):  # none yet, or another job's (replaced, or garbled)
            return False

    def _commit_plan(self, expected: Iterable[str] = ()) -> dict[str, str]:
        """Final name -> committed file: from the manifest of an earlier run, or made and written now."""
        manifest = storage.join(self.job_temp, MANIFEST)
        if storage.kind(manifest) == "file":
            with storage.open_input(manifest) as f:
                return json.load(f)
        parts = self._committed_parts()
        if not parts:
            raise FileNotFoundError(f"job {self.job_id} has nothing to commit: no committed part in "
                                    f"{storage.display(self.job_temp)}")
        missing = sorted(set(expected) - set(parts))
        if missing:
            raise FileNotFoundError(f"job {self.job_id}: committed part(s) {', '.join(missing[:5])} missing from "
                                    f"{storage.display(self.job_temp)}")
        _unify_parquet(list(parts.values()))
        self._prepare_publishing()
        _fault_point("prepared")
        storage.write_bytes(manifest, json.dumps(parts, sort_keys=True).encode())
        _fault_point("plan")
        return parts

    def _committed_parts(self) -> dict[str, str]:
        return {name: os.path.join(self.committed, name) for name in storage.listdir(self.committed)}

    def _prepare_publishing(self) -> None:
        """Before the plan is written: what a rerun must not do again once it exists."""
        storage.write_bytes(os.path.join(self.job_temp, SUCCESS), b"")  # the space _SUCCESS needs, taken now

    def _publish(self, parts: dict[str, str]) -> None:
        for number, name in enumerate(sorted(parts), 1):
            _move_once(parts[name], storage.join(self.output_dir, name))
            _fault_point(f"part-{number}")

    def _finish(self) -> None:
        """Past the point of no return: drop ``_temporary`` (and the replaced output), then ``_SUCCESS``."""
        staged = os.path.join(self.job_temp, SUCCESS)
        for name in storage.listdir(self.job_temp):
            if name != SUCCESS:
                storage.delete(os.path.join(self.job_temp, name))
        _fault_point("temporary")
        final = os.path.join(self.output_dir, SUCCESS)
        if os.path.exists(staged):
            os.replace(staged, final)
        elif not os.path.exists(final):
            storage.write_bytes(final, b"")
        self._remove_temporary()

    def abort_job(self) -> None:
        """Leave nothing that looks like this job's output: no parts, no ``_SUCCESS``;
        the output it was to replace is back as it was."""
        self._unpublish()
        self._restore_output()
        self._remove_temporary()
        if self.created_output and os.path.isdir(self.output_dir) and not os.listdir(self.output_dir):
            os.rmdir(self.output_dir)

    def _unpublish(self) -> None:
        """Delete the final files of a job commit that failed (those its manifest lists, and its report)."""
        manifest = storage.join(self.job_temp, MANIFEST)
        if storage.kind(manifest) != "file":
            return
        with storage.open_input(manifest) as f:
            names = list(json.load(f))
        if self._report_is_this_jobs():
            names += [REPORT, SUCCESS]
        for name in names:
            storage.delete(storage.join(self.output_dir, name))

    def _remove_temporary(self) -> None:
        shutil.rmtree(self.job_temp, ignore_errors=True)
        temporary = os.path.dirname(self.job_temp)
        if os.path.isdir(temporary) and not os.listdir(temporary):
            os.rmdir(temporary)


def _move_once(source: str, target: str) -> None:
    """Rename ``source`` to ``target``, or nothing if an earlier run did."""
    if storage.kind(source) == "file":
        storage.move(source, target)
    elif storage.kind(target) != "file":
        raise FileNotFoundError(f"committed part {storage.display(source)} is missing")


def _fault_point(point: str) -> None:
    """A test-only fault at a named point of the job commit: ``PYMR_TEST_COMMIT_FAULT=POINT``
    ends the process there at once, as ``kill -9`` would."""
    if os.environ.get(COMMIT_FAULT_ENV) == point:
        os._exit(99)


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

    A rerun of the job commit works as ``OutputCommitter``'s, with two differences: on
    an object store ``commit_task`` keeps what it records in memory, so a fresh
    committer must be told every task commit again (``recover_task``, no I/O) before its
    ``commit_job``; and the output being replaced is deleted before the
    plan is written, so a rerun deletes it again only if no part was copied yet.
    """

    COPY_THREADS = 16  # copies of the job commit in flight at once
    REPLACING = "_REPLACING"  # in the job's temporary folder: the job commit deletes the output there

    def __init__(self, output_dir: str, job_id: str):  # no I/O here: that starts in setup()
        self.output_dir = output_dir
        self.job_id = job_id
        self.job_temp = storage.join(output_dir, TEMPORARY, job_id)
        self.committed = storage.join(self.job_temp, "committed")
        self.created_output = False
        self._renames: bool | None = None
        self._published: dict[str, str] = {}  # final name -> the committed attempt's file

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
        replacing = found == "dir" and bool(set(storage.listdir(self.output_dir)) - {TEMPORARY})
        if replacing and not overwrite:
            raise OutputExistsError(f"output folder already exists: {where} (use --overwrite to replace it)")
        if found is None:
            if not storage.container_exists(self.output_dir):
                raise StorageError(f"cannot write {where}: the bucket {where.split('/')[2]!r} does not exist")
            storage.makedirs(self.output_dir)
            self.created_output = True
        if self.renames:
            storage.makedirs(self.committed)
        if replacing:  # deleted by the job commit: a job that fails leaves it as it was
            storage.write_bytes(storage.join(self.job_temp, self.REPLACING), b"")

    def attempt_dir(self, attempt_id: str) -> str:
        return storage.join(self.job_temp, attempt_id)

    def commit_task(self, attempt_id: str, files: list[str]) -> None:
        source = self.attempt_dir(attempt_id)
        if not self.renames:  # no final name yet: the job commit copies these
            self._published.update((name, storage.join(source, name)) for name in files)
            return
        for name in files:
            _move_once(storage.join(source, name), storage.join(self.committed, name))
        self._quietly(storage.delete, source)

    def recover_task(self, attempt_id: str, files: list[str]) -> None:
        if not self.renames:  # the task commits an object store's committer holds in memory
            self.commit_task(attempt_id, files)

    def discard_attempt(self, attempt_id: str) -> None:
        self._quietly(storage.delete, self.attempt_dir(attempt_id))

    def _committed_parts(self) -> dict[str, str]:
        if self.renames:
            return {name: storage.join(self.committed, name) for name in storage.listdir(self.committed)}
        return dict(self._published)

    def _prepare_publishing(self) -> None:
        if storage.kind(storage.join(self.job_temp, self.REPLACING)) == "file":
            self._delete_replaced()

    def _publish(self, parts: dict[str, str]) -> None:
        if self.renames:
            super()._publish(parts)
            return
        with ThreadPoolExecutor(self.COPY_THREADS) as pool:  # the sources stay until the report is written
            for done in [pool.submit(storage.copy, parts[name], storage.join(self.output_dir, name))
                         for name in sorted(parts)]:
                done.result()  # the first failure fails the job commit (and abort_job removes what it made)
        _fault_point("part-1")

    def _finish(self) -> None:
        storage.delete(self.job_temp)
        _fault_point("temporary")
        self._quietly(_delete_if_empty, storage.join(self.output_dir, TEMPORARY))
        storage.write_bytes(storage.join(self.output_dir, SUCCESS), b"")

    def _delete_replaced(self) -> None:
        """Delete the output this job replaces (all but ``_temporary``), ``_SUCCESS`` first
        so that no reader trusts what is left if a delete fails."""
        names = [name for name in storage.listdir(self.output_dir) if name != TEMPORARY]
        for name in sorted(names, key=lambda name: name != SUCCESS):
            storage.delete(storage.join(self.output_dir, name))

    def abort_job(self) -> None:
        """Remove ``_temporary``, and the final files of a job commit that failed."""
        self._quietly(lambda _: self._unpublish(), self.output_dir)
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
            # (surrogateescape: text output writes names that are not UTF-8 as their own bytes)
            with io.TextIOWrapper(storage.open_input(path), encoding="utf-8", errors="surrogateescape") as f:
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
