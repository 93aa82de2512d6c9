"""Running one task attempt: the same code for the inline runner and for workers.

A task is a plain dict (it travels as JSON from the coordinator):

* map: ``split`` (see ``inputs.Split``), ``num_reducers`` (0 for a map-only job),
  ``map_output`` (the run file to write) or, map-only, ``attempt_dir`` and ``part``;
* reduce: ``partition``, ``map_outputs`` (``{"path", "host", "address"}`` of each map's
  run file, in map order, or the same encoded by ``locations``), ``attempt_dir``.

Both return ``{"files": [...], "counters": {group: {name: n}}}`` plus, for a map,
the path of its output. User code runs in the calling thread; exceptions from it
propagate unchanged so the caller can report the user's own traceback. ``settings``
says where this task runs (``host``) and holds the cluster key (``key``) for fetching
map outputs from other hosts.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import resource
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import locations, progress, storage
from .aggregate import arrow_ok, merge_aggregate, python_aggregate
from .arguments import reads_argument
from .grouping import Block, apply_per_key, function_name, key_changes, returned_none, unpacking_error, yielded_at
from .inputs import Split, input_format, unchanged_input
from .job import Job, StepJob, job_for_task
from .outputs import open_part_writer
from .sampling import RangePartitioner
from .shuffle import DEFAULT_BUFFER_BYTES, MapOutputBuffer, merged_windows, partition_groups, value_type_of

FRAMEWORK = "pymr"


def run_task(job_class: type[Job], options: dict[str, Any], task: dict[str, Any],
             settings: dict[str, Any] | None = None, files: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a map or reduce task of ``job_class`` and return its result.

    ``files`` maps each side file's name to its local path (``self.files`` in the task).
    """
    storage.configure(task.get("filesystems"))  # options from the job's URIs (endpoint, region, ...)
    job = job_for_task(job_class, options, task.get("step"))
    job.files = dict(files or {})
    if isinstance(job, StepJob):
        job.base.files = job.files
    if task["kind"] == "map":
        with unchanged_input(Split.from_dict(task["split"])):
            result = _run_map(job, task)
    else:
        result = _run_reduce(job, task, settings or {})
    result["counters"] = counters_to_dict(job.counters)
    result["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak of this process so far
    return result


def counters_to_dict(counters: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (group, name), amount in counters.items():
        nested.setdefault(group, {})[name] = amount
    return nested


def _run_map(job: Job, task: dict[str, Any]) -> dict[str, Any]:
    split = Split.from_dict(task["split"])
    count = job.increment_counter

    def on_skip(where: Any, error: Exception) -> None:
        count(FRAMEWORK, "bad records skipped")

    # a map that never reads its key gets None for it (no (path, offset) tuple per line),
    # unless a debugger (or any tracer) could show it
    needs_keys = sys.gettrace() is not None or reads_argument(_user_function(job, "map") or job.map, 0)
    options = {"skip_bad_records": bool(task.get("skip_bad_records")), "record_keys": needs_keys}
    count(FRAMEWORK, "map input bytes", split.end - split.start)
    reader = input_format(split.format)
    records: Iterable | None = None
    if job.has_map_batch():
        job.input_path = split.path
        records = reader.record_batches(split, options, on_skip)
    if task["num_reducers"] == 0:
        return _run_map_only(job, task, records or reader.record_chunks(split, options, on_skip))
    os.makedirs(os.path.dirname(task["map_output"]), exist_ok=True)
    cuts = task.get("partition_cuts")
    partitioner = RangePartitioner([bytes.fromhex(c) for c in cuts]) if cuts is not None else job.partition
    buffer = MapOutputBuffer(
        os.path.dirname(task["map_output"]),
        task["num_reducers"],
        partitioner,
        _user_function(job, "combine") if job.has_combiner() else None,
        int(task.get("buffer_bytes") or DEFAULT_BUFFER_BYTES),
        on_combine=lambda n_in, n_out: (count(FRAMEWORK, "combine input records", n_in),
                                        count(FRAMEWORK, "combine output records", n_out)),
        aggregate=job.aggregate,
        default_partitioner=cuts is None and not job.has_custom_partition(),
    )
    feed = None
    if records is None:  # counted chunks: for the buffer's own loop (if it has one), or _map_records'
        feed = buffer.feed_loop()
        records = reader.record_chunks(split, options, on_skip)
    emitted = _feed(job, records, buffer.put, buffer.add_table, buffer.check, feed)
    path = buffer.close(task["map_output"])
    count(FRAMEWORK, "map output records", emitted)
    count(FRAMEWORK, "spilled records", buffer.spilled_records)
    count(FRAMEWORK, "map output bytes", os.path.getsize(path))
    return {"map_output": path}


def _feed(job: Job, records: Iterable, emit: Callable[[Any, Any], None],
          emit_table: Callable[[Any], None] | None = None, check: Callable[[int], None] | None = None,
          feed: Callable[[Callable, Iterable], tuple[int, int]] | None = None) -> int:
    """Call map (or map_batch) on every record, with the init and final hooks; returns pairs emitted.

    ``records`` are ``(count, records)`` chunks (``InputFormat.record_chunks``), or
    record batches for ``map_batch``. ``check(pairs_so_far)`` is called once per record
    (not per pair) so the buffer can spill; ``feed(map, chunks)``, if given, runs the
    per-record loop itself (the hot path of a per-record job) and returns how many
    records and pairs it saw.
    """
    check = check or (lambda total: None)
    job.map_init()
    with _YieldingPairs(_user_function(job, "map") or job.map):
        read, emitted = _map_records(job, records, emit, emit_table, check, feed)
    with _YieldingPairs(_user_function(job, "map_final") or job.map_final):
        for out_key, out_value in job.map_final() or ():
            emit(out_key, out_value)
            emitted += 1
    check(emitted)
    job.increment_counter(FRAMEWORK, "map input records", read)
    return emitted


def _map_records(job: Job, records: Iterable, emit: Callable[[Any, Any], None],
                 emit_table: Callable[[Any], None] | None, check: Callable[[int], None],
                 feed: Callable[[Callable, Iterable], tuple[int, int]] | None) -> tuple[int, int]:
    """``map`` (or ``map_batch``) over every record; returns records read and pairs emitted."""
    emitted = 0
    read = 0
    if job.has_map_batch():
        for batch in records:
            read += batch.num_rows
            out = job.map_batch(batch)
            if isinstance(out, (pa.Table, pa.RecordBatch)):
                emitted += out.num_rows
                if emit_table is not None:
                    emit_table(out)
                else:
                    for out_key, out_value in zip(out.column("key").to_pylist(), out.column("value").to_pylist()):
                        emit(out_key, out_value)
                continue
            for out_key, out_value in out or ():
                emit(out_key, out_value)
                emitted += 1
            check(emitted)
    elif feed is not None:
        read, emitted = feed(job.map, records)
    else:
        map_ = job.map
        for count, chunk in records:
            for key, value in chunk:
                pairs = map_(key, value)  # a local, so an error can point at its yield (_YieldingPairs)
                for out_key, out_value in pairs:
                    emit(out_key, out_value)
                    emitted += 1
                check(emitted)
            read += count
    return read, emitted


class _YieldingPairs:
    """Name ``function`` when pymr's loop cannot unpack what it yielded as a pair, or it
    returned None; the traceback ends at the user's ``yield`` (the loops keep the
    generator in a local named ``pairs``). Not a ``contextlib`` generator, whose frame
    would end the traceback instead."""

    def __init__(self, function: Callable):
        self.function = function

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not isinstance(exc, (TypeError, ValueError)) or tb is None:
            return
        while tb.tb_next is not None:
            tb = tb.tb_next
        pairs = tb.tb_frame.f_locals.get("pairs", ())
        who = function_name(self.function)
        if pairs is None and tb.tb_frame.f_globals.get("__name__", "").startswith("pymr."):
            raise returned_none(who) from None
        error = unpacking_error(exc, who)
        if error is not None:
            raise error.with_traceback(yielded_at(pairs)) from None


def _run_map_only(job: Job, task: dict[str, Any], records: Iterable) -> dict[str, Any]:
    storage.makedirs(task["attempt_dir"])
    writer = open_part_writer(task["attempt_dir"], task["part"], task["output_format"], job.output_key_type,
                              job.output_value_type)
    name = os.path.basename(writer.path)
    try:
        emitted = _feed(job, records, writer.write)
    finally:
        nbytes = writer.close()
    job.increment_counter(FRAMEWORK, "map output records", emitted)
    job.increment_counter(FRAMEWORK, "output bytes", nbytes)
    return {"files": [name]}


def _run_reduce(job: Job, task: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    partition = task["partition"]
    where = task["map_outputs"]  # a list, or the coordinator's encoded table (see locations)
    with MapOutputs(locations.decode(where) if isinstance(where, bytes) else where, partition, settings) as readers:
        count = job.increment_counter
        count(FRAMEWORK, "shuffle bytes", sum(r.nbytes(partition) for r in readers))
        storage.makedirs(task["attempt_dir"])
        writer = open_part_writer(task["attempt_dir"], partition, task["output_format"], job.output_key_type,
                                  job.output_value_type)
        name = os.path.basename(writer.path)
        rows = sum(r.rows(partition) for r in readers)
        progress.expect(rows)
        count(FRAMEWORK, "reduce input records", rows)
        count(FRAMEWORK, "reduce input groups", 0)  # reported even when no key arrives
        try:
            job.reduce_init()
            tables = _arrow_aggregate(job, readers, partition)
            batches = _reduce_batches(job, readers, partition) if tables is None else None
            if batches is not None:
                for out in batches:
                    if isinstance(out, (pa.Table, pa.RecordBatch)):
                        writer.write_table(pa.table(out) if isinstance(out, pa.RecordBatch) else out)
                    else:
                        for out_key, out_value in out or ():
                            writer.write(out_key, out_value)
            elif tables is not None:
                for table in tables:
                    count(FRAMEWORK, "reduce input groups", table.num_rows)
                    writer.write_table(table)
            else:
                reduce = _user_function(job, "reduce") if job.aggregate is None else _python_reduce(job.aggregate)
                order = _value_order(job)
                scratch = (tempfile.gettempdir() if storage.is_remote(task["attempt_dir"])
                           else os.path.join(task["attempt_dir"], "sorting"))
                blocks = _counting_groups(partition_groups(readers, partition), job)
                if order is not None:
                    blocks = ((keys, (sorted_values(v, order, scratch) for v in values)) for keys, values in blocks)
                for keys, values in apply_per_key(reduce, blocks, function_name(reduce)):
                    writer.write_columns(keys, values)
            for out_key, out_value in job.reduce_final() or ():
                writer.write(out_key, out_value)
        finally:
            nbytes = writer.close()
    count(FRAMEWORK, "reduce output records", writer.records)
    count(FRAMEWORK, "output bytes", nbytes)
    return {"files": [name]}


SORT_CHUNK_VALUES = 100_000  # values of one key sorted in memory at a time


def _reduce_batches(job: Job, readers: list, partition: int) -> Iterator[Any] | None:
    """``job.reduce_batch`` over the partition's merged blocks; None when the job has
    none, or when the map outputs' columns are not typed alike (then ``reduce`` runs)."""
    if not job.has_reduce_batch() or _value_order(job) is not None:  # sorted values are per key: reduce
        return None
    live = [r for r in readers if r.rows(partition)]
    kinds = {(r.key_kind, r.value_kind) for r in live}
    if len(kinds) > 1 or any(k == "enc" or v == "pickle" for k, v in kinds):
        if type(job).reduce is Job.reduce:
            raise TypeError(f"{type(job).__name__}.reduce_batch needs typed columns (str or int keys; str, int "
                            "or float values) and the map output has others: define reduce as well")
        return None
    return (job.reduce_batch(table) for table in _counting_windows(merged_windows(live, partition), job))


def _value_order(job: Job):
    """None, or the key function that orders each key's values (``Job.sort_values``)."""
    wanted = type(job.base if isinstance(job, StepJob) else job).sort_values
    if wanted is False or wanted is None:
        return None
    return (lambda value: value) if wanted is True else wanted


def sorted_values(values: Iterator[Any], order, scratch: str) -> Iterator[Any]:
    """A key's values in order (secondary sort), in bounded memory: chunks of
    ``SORT_CHUNK_VALUES`` are sorted in memory and, past the first, spilled to disk and merged."""
    chunk = list(itertools.islice(values, SORT_CHUNK_VALUES))
    if len(chunk) < SORT_CHUNK_VALUES:
        chunk.sort(key=order)
        yield from chunk
        return
    os.makedirs(scratch, exist_ok=True)
    runs = []
    try:
        while chunk:
            chunk.sort(key=order)
            run = tempfile.TemporaryFile(dir=scratch)
            for value in chunk:
                pickle.dump(value, run, protocol=5)
            run.seek(0)
            runs.append(run)
            chunk = list(itertools.islice(values, SORT_CHUNK_VALUES))
        yield from heapq.merge(*(_unpickled(run) for run in runs), key=order)
    finally:
        for run in runs:
            run.close()


def _unpickled(stream) -> Iterator[Any]:
    while True:
        try:
            yield pickle.load(stream)
        except EOFError:
            return


def _python_reduce(name: str):
    def reduce(key, values):
        return python_aggregate(name, "reduce", key, values)

    return reduce


def _arrow_aggregate(job: Job, readers: list, partition: int) -> Iterator[pa.Table] | None:
    """A built-in aggregate merged and computed in C, in key order; None if it cannot run."""
    live = [r for r in readers if r.rows(partition)]
    if job.aggregate is None or len({(r.key_kind, r.value_kind) for r in live}) > 1:
        return None
    if live and not arrow_ok(job.aggregate, value_type_of(live[0].value_kind), "reduce"):
        return None
    return merge_aggregate([r.batches(partition) for r in live], job.aggregate)


class MapOutputs:
    """Readers of one partition of every map output, local or remote; closes what it opened."""

    def __init__(self, locations: list[dict[str, Any]], partition: int, settings: dict[str, Any]):
        self.locations = locations
        self.partition = partition
        self.settings = settings
        self.context = None
        self.security = None
        self.readers: list = []

    def __enter__(self) -> list:
        from .fetch import open_map_output

        if any(loc.get("host") not in (None, self.settings.get("host")) for loc in self.locations):
            import zmq

            from .security import ClusterKey, Security

            key = self.settings.get("key")
            self.context = zmq.Context()
            self.security = Security(self.context, ClusterKey.from_dict(key) if key else None)
        for index, location in enumerate(self.locations):
            self.readers.append(open_map_output(location, index, self.partition, self.settings,
                                                self.context, self.security))
        return self.readers

    def __exit__(self, *exc: Any) -> None:
        for reader in self.readers:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        if self.context is not None:
            self.context.destroy(linger=0)


def _user_function(job: Job, name: str) -> Callable:
    """The user's own ``map``, ``combine`` or ``reduce`` (a step's, in a multi-step job,
    None where the step has none), called directly and named in errors."""
    return getattr(job.step if isinstance(job, StepJob) else job, name)


def _counting_windows(windows: Iterator[pa.Table], job: Job) -> Iterator[pa.Table]:
    """The merged windows ``reduce_batch`` gets, counting their keys as "reduce input
    groups": a key that goes on from the window before is not counted again."""
    last = None
    for window in windows:
        if window.num_rows:
            keys = window.column("key")
            changes = pc.sum(key_changes(keys)).as_py() or 0
            first = keys[0].as_py()
            job.increment_counter(FRAMEWORK, "reduce input groups", changes + (first != last))
            last = keys[-1].as_py()
        yield window


def _counting_groups(blocks: Iterator[Block], job: Job) -> Iterator[Block]:
    for keys, values in blocks:
        job.increment_counter(FRAMEWORK, "reduce input groups", len(keys))
        yield keys, values
