"""Benchmark pymr against plain Python, multiprocessing, Dask, PySpark and GNU tools.

One run builds deterministic inputs (see ``scripts/make_corpus.py``), then times every
selected system on every selected task, one after the other, and checks each result
against the single-process plain-Python baseline:

* ``startup``   the Quick start's word count (``--reducers 4``) over a 3-line file: the
                fixed cost of a system (start-up, imports, scheduling, shutdown); the
                median of at least 5 runs, each a fresh command.
* ``wordcount`` exact ``str.split()`` token counts (no lower-casing) of a text corpus
                built from documentation and Python sources on this machine
                (``--size``, default 128M). Output must equal ``collections.Counter``.
* ``sort``      TeraSort-style: 100-byte records, 10-byte keys (``--sort-size``,
                default 64M). Output must be totally ordered, hold every input record
                (count and order-independent CRC-32 sum) and be byte-identical to the
                baseline's ``list.sort()``.
* ``rounds``    the fixed cost of a step: ``jobs/pagerank.py`` on a 5-node graph with 2
                and with 22 rounds (``--tolerance 0``), medians of 5; seconds per
                extra round (pymr only).

Systems (``--systems``): ``python`` (the baseline, always run), ``pymr-1`` and ``pymr-2``
(``pymr submit`` in local mode with 1 or 2 workers and as many reducers; any
``pymr-N`` works, and ``--workers 1,2,4,8,16`` runs every pymr system once per count and
adds a scaling table: wall, CPU, memory and speed-up over the fewest workers; word count
with the per-record API, ``jobs/wordcount.py``; sort with ``jobs/terasort.py``, which
maps a block of records at a time in Arrow and range-partitions by sampled keys),
``pymr-fast-1`` and ``pymr-fast-2`` (``jobs/wordcount_fast.py``: ``map_batch`` and
``aggregate = "sum"``), ``multiprocessing`` (``Pool(2)`` over line-aligned chunks),
``floor`` (word count only: the hand-written per-record floor, a ``Pool(2)`` in which
each process runs ``jobs/wordcount.py``'s own ``map`` generator over its lines and folds
the pairs into a dict, the dicts merged in the parent; the report gives pymr's ratio to
it), ``floor-mr`` (word count only: the same job under MapReduce's contract, written by
hand with no engine: the floor's fold, the job's ``combine`` once per word seen more than
once, CRC-32 partitions sorted in Arrow and written as Arrow IPC files, then one reduce
per partition in the ``Pool`` that sorts its runs together and calls the job's
``reduce`` once per word into a part file; the report gives pymr's ratio to it and its
own to ``floor``: what the contract costs, apart from any engine),
``pyarrow`` (word count only: 2 threads tokenize and count 16 MiB blocks in Arrow, the
vectorized reference for the fast paths), ``dask`` (``dask.bag``, processes scheduler,
2 workers), ``spark`` (PySpark RDDs, ``local[2]``) and ``gnu`` (``tr | sort | uniq -c``
and ``sort --parallel=2 -S 4G``, C locale). A system whose package or tool is missing
is skipped with a note. ``--processes N`` gives every peer N processes or threads
instead of 2 (``Pool(N)``, ``local[N]``, ``sort --parallel=N``...), to compare with
``pymr-N`` on a bigger machine.

Every system runs as a separate command, timed from launch to exit, start-up included.
Its whole process tree is measured (Linux only: it reads /proc):

* CPU: user+sys of every process of the tree. This process makes itself a child
  subreaper, so processes that outlive their parent are still reaped here and counted
  by ``RUSAGE_CHILDREN``. That misses processes whose parent ignores SIGCHLD (PySpark's
  daemon does, for its Python workers: the kernel then reports their CPU to no one),
  so each process's own CPU is also sampled from /proc every 50 ms, and the larger
  of the two totals is reported.
* Memory: the largest sum over the tree of RSS (a shared page counts in every
  process that maps it), sampled every 50 ms, and of PSS (a shared page is split
  between the processes that map it: the fair total), sampled at RSS peaks.
* MB/s is input bytes / 10^6 / wall. Ratios are to the ``python`` baseline (lower is
  better). "other load" in the notes is the mean number of cores that processes
  outside the tree kept busy meanwhile: on a shared machine, a sign of a slowed run.
* ``--repeat N`` runs N rounds, each running every system once in turn (every other
  round in reverse order: the first run of a round can be 10% slower), and keeps each
  system's median run; ratios that matter (pymr to the ``floor`` and ``floor-mr``, and with
  ``--against REF`` pymr to itself as of REF, run as ``pymr-N@REF`` in the same rounds)
  are also given round by round, as this machine's speed drifts between runs.

Inputs live in a temporary folder that is removed at the end, with every output;
processes a system leaves running are killed.

    pip install -e '.[bench]'              # dask, pyspark, py-spy (PySpark needs Java 17+)
    python scripts/benchmark.py --markdown bench.md
    python scripts/benchmark.py --size 1G --sort-size 1G --tasks wordcount,sort
    python scripts/benchmark.py --systems python,pymr-2 --tasks wordcount --size 16M
    python scripts/benchmark.py --tasks startup,rounds --workers 2,16 --systems python,pymr-2
    python scripts/benchmark.py --tasks wordcount --size 2G --workers 1,2,4,8,16 --processes 16
    python scripts/benchmark.py --profile --size 64M   # where pymr's word count spends its time
    python scripts/benchmark.py --tasks wordcount --repeat 5 --against main   # this tree against main
"""

from __future__ import annotations

import argparse
import collections
import compileall
import ctypes
import datetime
import hashlib
import importlib.metadata
import importlib.util
import io
import itertools
import json
import math
import operator
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLE_JOBS = HERE.parent / "jobs"  # word count: jobs/wordcount.py (per record) and wordcount_fast.py
sys.path.insert(0, str(HERE))
import make_corpus  # noqa: E402  (a sibling script)

TASKS = ("startup", "wordcount", "sort", "rounds")
SYSTEMS = ("python", "pymr-1", "pymr-2", "pymr-fast-1", "pymr-fast-2", "multiprocessing", "floor", "floor-mr",
           "pyarrow", "dask", "spark", "gnu")
BASELINE = "python"
TINY_TEXT = "the quick brown fox\njumps over the lazy dog\nthe end\n"  # the tiny job's 3 lines
STARTUP_REPEAT = 5
QUICK_START_REDUCERS = "4"
PAGERANK_ROUNDS = (2, 22)
TINY_GRAPH = "a b\nb c\nc a\na c\nd a\nd e\n"  # 5 nodes, e dangling
PROCESSES = 2  # of every peer (--processes)
SAMPLE_INTERVAL_S = 0.05
LEFTOVER_GRACE_S = 20.0
MiB = 1024 * 1024


# =========================================================================================
# Peers: each runs in a child process (``benchmark.py --run-peer SYSTEM TASK IN OUT``)
# =========================================================================================
def read_blocks(path: str, start: int = 0, end: int | None = None, block: int = 16 * MiB) -> Iterator[bytes]:
    """Whole lines of ``path`` whose first byte lies in ``[start, end)``, in big blocks."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()  # a line crossing ``start`` belongs to the range before
        end = os.path.getsize(path) if end is None else end
        while f.tell() < end:
            data = f.read(min(block, end - f.tell()))
            if not data:
                break
            if not data.endswith(b"\n"):
                data += f.readline()  # finish the last line, even past ``end``
            yield data


def byte_ranges(path: str, chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of about ``chunk`` bytes covering the file (see ``read_blocks``)."""
    size = os.path.getsize(path)
    return [(start, min(start + chunk, size)) for start in range(0, size, chunk)]


def write_counts(counts: dict[str, int], out: str) -> None:
    """``word<TAB>count`` lines, as pymr's text output, in ``out/part-00000``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "part-00000"), "w", encoding="utf-8") as f:
        f.writelines(f"{word}\t{n}\n" for word, n in counts.items())


def wc_python(inp: str, out: str, chunk: int, workdir: str) -> None:
    """The baseline: one process, ``Counter.update(block.split())`` over 16 MiB blocks."""
    counts: collections.Counter[str] = collections.Counter()
    for block in read_blocks(inp):
        counts.update(block.decode("utf-8").split())
    write_counts(counts, out)


def _count_range(job: tuple[str, int, int]) -> collections.Counter[str]:
    """One ``Pool`` task: the counts of one byte range."""
    counts: collections.Counter[str] = collections.Counter()
    for block in read_blocks(*job):
        counts.update(block.decode("utf-8").split())
    return counts


def wc_multiprocessing(inp: str, out: str, chunk: int, workdir: str) -> None:
    """``Pool(2)``: a ``Counter`` per chunk in the workers, merged in the parent."""
    import multiprocessing

    total: collections.Counter[str] = collections.Counter()
    with multiprocessing.Pool(PROCESSES) as pool:
        for counts in pool.imap_unordered(_count_range, [(inp, s, e) for s, e in byte_ranges(inp, chunk)]):
            total.update(counts)
    write_counts(total, out)


_floor_job: Any = None


def _wordcount_job() -> Any:
    """``jobs/wordcount.py``'s job, loaded once per ``Pool`` process."""
    global _floor_job
    if _floor_job is None:
        import pymr

        _floor_job = pymr.load_job_class(EXAMPLE_JOBS / "wordcount.py")()
    return _floor_job


def _floor_range(job: tuple[str, int, int]) -> dict[str, int]:
    """One ``Pool`` task of the per-record floor: the word count job's own ``map`` over
    every line of a byte range, its pairs folded into a dict."""
    mapper = _wordcount_job().map
    counts: dict[str, int] = {}
    get = counts.get
    for block in read_blocks(*job):
        for line in block.decode("utf-8").split("\n"):
            for word, n in mapper(None, line):
                counts[word] = get(word, 0) + n
    return counts


def wc_floor(inp: str, out: str, chunk: int, workdir: str) -> None:
    """The per-record floor written by hand: what pymr's per-record word count would cost
    with no engine around the user's ``map`` (``Pool(2)``, dicts merged in the parent)."""
    import multiprocessing

    total: collections.Counter[str] = collections.Counter()
    with multiprocessing.Pool(PROCESSES) as pool:
        for counts in pool.imap_unordered(_floor_range, [(inp, s, e) for s, e in byte_ranges(inp, chunk)]):
            total.update(counts)
    write_counts(total, out)


def _floor_mr_map(job: tuple[str, int, int, str]) -> list[str]:
    """One map task of the MapReduce floor: the floor's fold (each word's pairs counted,
    as pymr's buffer counts a repeated value), the job's ``combine`` once per word seen
    more than once, then the pairs cut into ``PROCESSES`` partitions by a stable hash
    (CRC-32), sorted by (partition, key) in Arrow and written as one Arrow IPC file per
    partition: the cheapest means at hand, with no format of its own and no check."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as feather

    *split, prefix = job
    wordcount = _wordcount_job()
    mapper, combine = wordcount.map, wordcount.combine
    counts: dict[str, int] = {}
    get = counts.get
    common = None
    for block in read_blocks(*split):
        for line in block.decode("utf-8").split("\n"):
            for word, value in mapper(None, line):
                if value is not common:
                    if common is not None:
                        raise ValueError("the MapReduce floor holds one repeated value per word (word count's 1)")
                    common = value
                counts[word] = get(word, 0) + 1
    keys = [word for word, n in counts.items() if n == 1]
    values = [common] * len(keys)
    many = [(word, n) for word, n in counts.items() if n > 1]
    repeats = map(itertools.repeat, itertools.repeat(common), map(_SECOND, many))
    combined = list(itertools.chain.from_iterable(map(combine, map(_FIRST, many), repeats)))
    keys += map(_FIRST, combined)
    values += map(_SECOND, combined)
    partition = [zlib.crc32(key.encode("utf-8", "surrogatepass")) % PROCESSES for key in keys]
    table = pa.table({"key": pa.array(keys, pa.large_string()), "value": pa.array(values, pa.int64()),
                      "partition": pa.array(partition, pa.int32())})
    table = table.take(pc.sort_indices(table, sort_keys=[("partition", "ascending"), ("key", "ascending")]))
    counts = dict(zip(*(c.to_pylist() for c in pc.value_counts(table.column("partition")).flatten())))
    paths, offset = [], 0
    for number in range(PROCESSES):  # an empty partition gets an empty file
        rows = counts.get(number, 0)
        paths.append(f"{prefix}-{number}.arrow")
        feather.write_feather(table.slice(offset, rows).select(["key", "value"]), paths[-1], compression="uncompressed")
        offset += rows
    return paths


def _floor_mr_reduce(job: tuple[list[str], str]) -> None:
    """One reduce task of the MapReduce floor: its partition's sorted runs read, sorted
    together in Arrow, grouped by key, the job's ``reduce`` once per key, and
    ``key<TAB>value`` lines written to its part file."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as feather

    runs, path = job
    table = pa.concat_tables([feather.read_table(run, memory_map=True) for run in runs])
    table = table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))
    pairs = zip(table.column("key").to_pylist(), table.column("value").to_pylist())
    reduce = _wordcount_job().reduce
    groups = ((key, map(_SECOND, group)) for key, group in itertools.groupby(pairs, _FIRST))
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{key}\t{value}\n" for key, value in itertools.chain.from_iterable(
            itertools.starmap(reduce, groups)))


def wc_floor_mr(inp: str, out: str, chunk: int, workdir: str) -> None:
    """The MapReduce floor: what the word count job costs when its ``map``, ``combine``
    and ``reduce`` run under MapReduce's contract (combine and reduce once per key, map
    output hash-partitioned and sorted by key, one sorted part file per reducer), by
    hand, with no engine: a ``Pool`` runs the maps, then one reduce per partition, and
    Arrow sorts and carries the pairs between them."""
    import multiprocessing

    os.makedirs(out, exist_ok=True)
    shuffle = tempfile.mkdtemp(prefix="floor-mr-", dir=workdir)
    splits = [(inp, s, e, os.path.join(shuffle, f"map-{n}")) for n, (s, e) in enumerate(byte_ranges(inp, chunk))]
    with multiprocessing.Pool(PROCESSES) as pool:
        outputs = pool.map(_floor_mr_map, splits, chunksize=1)
        pool.map(_floor_mr_reduce, [([runs[p] for runs in outputs], os.path.join(out, f"part-{p:05d}"))
                                    for p in range(PROCESSES)], chunksize=1)
    shutil.rmtree(shuffle)


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


def wc_dask(inp: str, out: str, chunk: int, workdir: str) -> None:
    """``dask.bag``: lines -> ``str.split`` -> flatten -> ``frequencies()``, 2 processes."""
    import dask
    import dask.bag as db

    with dask.config.set(scheduler="processes", num_workers=PROCESSES, temporary_directory=workdir):
        words = db.read_text(inp, blocksize=chunk, encoding="utf-8").map(str.split).flatten()
        words.frequencies().map(lambda pair: f"{pair[0]}\t{pair[1]}").to_textfiles(os.path.join(out, "part-*"))


def _arrow_count_block(block: bytes):
    """The counts of one block's tokens, all in Arrow's C++ (which releases the GIL)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array([block], type=pa.large_binary()).cast(pa.large_string())
    words = pc.list_flatten(pc.utf8_split_whitespace(text))
    return pc.value_counts(words.filter(pc.greater(pc.binary_length(words), 0)))


def wc_pyarrow(inp: str, out: str, chunk: int, workdir: str) -> None:
    """Vectorized reference: 2 threads tokenize and ``value_counts`` 16 MiB blocks in Arrow,
    then one hash group-by sums the per-block counts (no Python per word)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    with ThreadPoolExecutor(PROCESSES) as pool:
        parts = list(pool.map(_arrow_count_block, read_blocks(inp)))
    counts = pa.table({"word": pa.chunked_array([p.field("values") for p in parts], pa.large_string()),
                       "n": pa.chunked_array([p.field("counts") for p in parts], pa.int64())})
    totals = counts.group_by("word").aggregate([("n", "sum")])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "part-00000"), "w", encoding="utf-8") as f:
        f.writelines(f"{w}\t{n}\n" for w, n in zip(totals["word"].to_pylist(), totals["n_sum"].to_pylist()))


def spark_context(workdir: str):
    """A ``local[2]`` SparkContext, quiet, without UI, its scratch space in ``workdir``."""
    from pyspark import SparkConf, SparkContext

    conf = (SparkConf().setMaster(f"local[{PROCESSES}]").setAppName("pymr-benchmark")
            .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
            .set("spark.local.dir", workdir)
            .set("spark.driver.memory", "4g")
            .set("spark.pyspark.python", sys.executable))
    context = SparkContext(conf=conf)
    context.setLogLevel("ERROR")
    return context


def wc_spark(inp: str, out: str, chunk: int, workdir: str) -> None:
    """RDD: ``flatMap(str.split)`` -> ``(word, 1)`` -> ``reduceByKey(add)`` into 2 partitions."""
    from operator import add

    sc = spark_context(workdir)
    try:
        lines = sc.textFile("file://" + inp, minPartitions=max(2, math.ceil(os.path.getsize(inp) / chunk)))
        counts = lines.flatMap(str.split).map(lambda word: (word, 1)).reduceByKey(add, numPartitions=2)
        counts.map(lambda pair: f"{pair[0]}\t{pair[1]}").saveAsTextFile("file://" + out)
    finally:
        sc.stop()


def sort_python(inp: str, out: str, chunk: int, workdir: str) -> None:
    """The baseline: read every record, ``list.sort()``, write (bytes order = key order)."""
    with open(inp, "rb") as f:
        records = f.read().splitlines(keepends=True)
    records.sort()
    os.makedirs(out)
    with open(os.path.join(out, "part-00000"), "wb") as f:
        f.writelines(records)


def sample_splitters(inp: str, parts: int, samples: int = 10000) -> list[bytes]:
    """Range boundaries of ``parts`` partitions from keys read at evenly spaced records."""
    records = os.path.getsize(inp) // make_corpus.RECORD_SIZE
    step = max(1, records // samples)
    keys = []
    with open(inp, "rb") as f:
        for i in range(0, records, step):
            f.seek(i * make_corpus.RECORD_SIZE)
            keys.append(f.read(make_corpus.KEY_SIZE))
    keys.sort()
    return [keys[len(keys) * p // parts] for p in range(1, parts)]


def _sort_range(job: tuple[str, str, bytes | None, bytes | None]) -> None:
    """Keep the records with ``low <= key < high``, sort them and write them."""
    inp, part, low, high = job
    mine = []
    for block in read_blocks(inp):
        for record in block.splitlines(keepends=True):
            key = record[: make_corpus.KEY_SIZE]
            if (low is None or key >= low) and (high is None or key < high):
                mine.append(record)
    mine.sort()
    with open(part, "wb") as f:
        f.writelines(mine)


def sort_multiprocessing(inp: str, out: str, chunk: int, workdir: str) -> None:
    """``Pool(2)``: range-partition on sampled keys; each worker scans the input for its range."""
    import multiprocessing

    bounds: list[bytes | None] = [None, *sample_splitters(inp, PROCESSES), None]
    os.makedirs(out)
    jobs = [(inp, os.path.join(out, f"part-{p:05d}"), bounds[p], bounds[p + 1]) for p in range(PROCESSES)]
    with multiprocessing.Pool(PROCESSES) as pool:
        pool.map(_sort_range, jobs)


def sort_spark(inp: str, out: str, chunk: int, workdir: str) -> None:
    """RDD: ``(key, rest)`` pairs, ``sortByKey`` into 2 range partitions (Spark samples the keys)."""
    sc = spark_context(workdir)
    try:
        lines = sc.textFile("file://" + inp, minPartitions=max(2, math.ceil(os.path.getsize(inp) / chunk)))
        pairs = lines.map(lambda line: (line[:10], line[10:]))
        pairs.sortByKey(numPartitions=2).map(lambda pair: pair[0] + pair[1]).saveAsTextFile("file://" + out)
    finally:
        sc.stop()


PEERS: dict[tuple[str, str], Callable[[str, str, int, str], None]] = {
    ("wordcount", "python"): wc_python,
    ("wordcount", "multiprocessing"): wc_multiprocessing,
    ("wordcount", "floor"): wc_floor,
    ("wordcount", "floor-mr"): wc_floor_mr,
    ("wordcount", "pyarrow"): wc_pyarrow,
    ("wordcount", "dask"): wc_dask,
    ("wordcount", "spark"): wc_spark,
    ("sort", "python"): sort_python,
    ("sort", "multiprocessing"): sort_multiprocessing,
    ("sort", "spark"): sort_spark,
}


# =========================================================================================
# Planning: the command line of one system on one task
# =========================================================================================
@dataclass
class RunSpec:
    """One command to time, where it writes, and how to read what it wrote."""

    argv: list[str]
    output: str
    output_format: str  # "tsv" (word<TAB>count), "uniq" (uniq -c), "records"
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def missing_requirement(system: str) -> str | None:
    """Why ``system`` cannot run here, or None."""
    if system == "dask" and importlib.util.find_spec("dask") is None:
        return "dask not installed (pip install dask)"
    if system == "dask" and importlib.util.find_spec("dask.bag") is None:
        return "dask.bag not importable (pip install dask)"
    if system == "spark":
        if importlib.util.find_spec("pyspark") is None:
            return "pyspark not installed (pip install pyspark)"
        if shutil.which("java") is None:
            return "java not found (PySpark needs Java 17+)"
    if system == "gnu" and not all(shutil.which(t) for t in ("tr", "sort", "uniq", "bash")):
        return "GNU tr/sort/uniq or bash not found"
    return None


def plan(system: str, task: str, inp: str, out: str, workdir: str, chunk: int,
         pymr_env: dict[str, str] | None = None, pymr_python: str = sys.executable) -> RunSpec | str:
    """The command for ``system`` on ``task``, or a note saying why it is skipped.

    ``pymr_env`` is added to the environment of pymr's runs (``PYTHONPATH`` for ``--pymr-ref``),
    which run on ``pymr_python`` (``--pymr-python``).
    """
    missing = missing_requirement(system)
    if missing:
        return missing
    kind = "wordcount" if task == "startup" else task
    if system.startswith("pymr-"):
        workers = system.split("-")[-1]
        fast = system.startswith("pymr-fast-")
        if fast and kind != "wordcount":
            return "same job as pymr-N: jobs/terasort.py maps blocks of records in Arrow"
        job = EXAMPLE_JOBS / (("wordcount_fast.py" if fast else "wordcount.py") if kind == "wordcount"
                              else "terasort.py")
        reducers = workers  # the sort job range-partitions by sampled keys (total_order)
        if task == "startup":
            reducers = QUICK_START_REDUCERS
        argv = [pymr_python, "-m", "pymr", "submit", str(job), inp, "-o", out, "--workers", workers,
                "--reducers", reducers, "-q", "--overwrite", "--split-size", str(chunk)]
        note = "total order by sampled range partitioning" if kind == "sort" else ""
        return RunSpec(argv, out, "tsv" if kind == "wordcount" else "records", env=dict(pymr_env or {}), note=note)
    if system == "gnu":
        tmp, part, source = (shlex.quote(p) for p in (os.path.join(workdir, "sort-tmp"), out + "/part-00000", inp))
        sort = f"sort --parallel={PROCESSES} -S 4G -T {tmp}"
        if kind == "wordcount":
            script = f"tr -s '[:space:]' '\\n' < {source} | {sort} | uniq -c > {part}"
            note = "tr | sort | uniq -c"
        else:
            script = f"{sort} -o {part} {source}"
            note = "whole-line sort"
        script = f"mkdir -p {shlex.quote(out)} {tmp} && {script}"
        return RunSpec(["bash", "-c", script], out, "uniq" if kind == "wordcount" else "records",
                       env={"LC_ALL": "C"}, note=note)
    if (kind, system) not in PEERS:
        return f"no {kind} in {system}" + (" (dask.bag has no sort)" if system == "dask" else "")
    argv = [sys.executable, str(Path(__file__).resolve()), "--run-peer", system, kind, inp, out,
            "--split-size", str(chunk), "--work-dir", workdir, "--processes", str(PROCESSES)]
    env = {}
    if system == "spark":  # bind to loopback; leave no /tmp/hsperfdata_* behind
        env = {"SPARK_LOCAL_IP": "127.0.0.1", "JAVA_TOOL_OPTIONS": f"-XX:-UsePerfData -Djava.io.tmpdir={workdir}"}
    return RunSpec(argv, out, "tsv" if kind == "wordcount" else "records", env=env)


# =========================================================================================
# Measuring: wall, CPU and memory of a whole process tree
# =========================================================================================
@dataclass
class Measurement:
    wall_s: float
    cpu_s: float  # the larger of the two below
    cpu_rusage_s: float  # RUSAGE_CHILDREN: exact for every process that was waited for
    cpu_sampled_s: float  # per-process CPU last seen in /proc: catches processes nobody waited for
    peak_rss: int  # bytes, largest sum over the tree
    peak_pss: int
    returncode: int
    leftovers: int  # processes still running after the command exited, then killed
    other_cores: float  # mean cores kept busy by processes outside the tree (a shared machine)
    sampler_cpu_s: float  # what measuring cost this process
    error: str = ""


@dataclass(frozen=True)
class ProcInfo:
    """One line of ``/proc/PID/stat``, the fields used here."""

    ppid: int
    state: str
    cpu_s: float  # utime + stime of the process itself
    rss: int  # bytes
    start: int  # start time in clock ticks: with the pid, names a process uniquely


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def read_processes(pids: Iterable[int] | None = None) -> dict[int, ProcInfo]:
    """Every process on the machine (or those of ``pids`` still alive), from ``/proc``
    (every process: about 3.6 ms for 66 processes here)."""
    found = {}
    for entry in os.listdir("/proc") if pids is None else map(str, pids):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(entry)] = ProcInfo(int(fields[1]), fields[0].decode(), (int(fields[11]) + int(fields[12])) / _TICK,
                                     int(fields[21]) * _PAGE, int(fields[19]))
    return found


def descendants(processes: dict[int, ProcInfo], root: int) -> list[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, info in processes.items():
        children[info.ppid].append(pid)
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def read_pss(pid: int) -> int:
    """Proportional set size in bytes (``smaps_rollup``: costly for a big JVM, ~20 ms)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_OWN_CMDLINE = Path("/proc/self/cmdline").read_bytes()


def _unexeced_fork(pid: int, info: ProcInfo) -> bool:
    """A child between fork and exec is a copy of this process: not yet the command measured."""
    if info.ppid != os.getpid():
        return False
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == _OWN_CMDLINE
    except OSError:
        return False


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so that they are reaped (and their CPU counted) here."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


class TreeSampler(threading.Thread):
    """Every 50 ms: the summed RSS and the CPU of each descendant of this process.

    Reading every process every 50 ms cost 7% of a core (the core a 2-process system
    needs), so a process found outside the tree is not read again while it runs: a
    sample lists ``/proc`` and reads the tree and the processes new since the last one.

    PSS costs more to read (~20 ms for a JVM), so it is read when the RSS sum reaches a
    new peak and at least every second, but only while reading it has taken less than
    2% of the time (plus 50 ms), so that measuring does not slow what is measured.
    """

    PSS_EVERY_S = 1.0
    PSS_BUDGET = 0.02

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        super().__init__(name="tree-sampler", daemon=True)
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.peak_rss = 0
        self.peak_pss = 0
        self.cpu_by_process: dict[tuple[int, int], float] = {}
        self.own_cpu_s = 0.0
        self._born = time.monotonic()
        self._last_pss = 0.0
        self._pss_cost_s = 0.0
        self._outsiders: set[int] = set()  # running processes that are not descendants

    def run(self) -> None:
        started = time.thread_time()
        while True:
            self.sample()
            if self.stop_event.wait(self.interval_s):
                break
        self.sample()
        self.own_cpu_s = time.thread_time() - started

    def sample(self) -> None:
        processes, tree = self._find_tree()
        for pid in tree:
            info = processes[pid]
            self.cpu_by_process[pid, info.start] = info.cpu_s
        rss = sum(processes[pid].rss for pid in tree)
        new_peak = rss > self.peak_rss
        self.peak_rss = max(self.peak_rss, rss)
        now = time.monotonic()
        due = new_peak or now - self._last_pss >= self.PSS_EVERY_S
        affordable = self._pss_cost_s <= self.PSS_BUDGET * (now - self._born) + 0.05
        if tree and due and affordable:
            self.peak_pss = max(self.peak_pss, sum(read_pss(pid) for pid in tree))
            self._last_pss = time.monotonic()
            self._pss_cost_s += self._last_pss - now

    def _find_tree(self) -> tuple[dict[int, ProcInfo], list[int]]:
        """The processes read, and which of them are this process's descendants (a
        process never joins the tree later: its children are new processes)."""
        running = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}
        self._outsiders &= running
        processes = read_processes(running - self._outsiders)
        family = descendants(processes, os.getpid())
        self._outsiders |= processes.keys() - set(family)
        return processes, [pid for pid in family if not _unexeced_fork(pid, processes[pid])]

    @property
    def sampled_cpu_s(self) -> float:
        return sum(self.cpu_by_process.values())

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def _reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _live_descendants() -> list[int]:
    processes = read_processes()
    return [pid for pid in descendants(processes, os.getpid()) if processes[pid].state != "Z"]


def end_descendants(grace_s: float) -> int:
    """Wait up to ``grace_s`` for descendants to exit, then kill them; returns how many were left."""
    deadline = time.monotonic() + grace_s
    _reap_zombies()
    left = _live_descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap_zombies()
        left = _live_descendants()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.1)
    _reap_zombies()
    return len(left)


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(spec: RunSpec, timeout_s: float, log_path: str, cwd: str) -> Measurement:
    """Run ``spec.argv`` to completion and measure its whole process tree.

    The wall time ends when the command exits; the CPU and memory also cover what it
    left running, which is waited for (``LEFTOVER_GRACE_S``) and then killed.
    """
    sampler = TreeSampler()
    cpu_before, busy_before = _children_cpu(), _machine_busy_s()
    error = ""
    with open(log_path, "wb") as log:
        sampler.start()
        started = time.perf_counter()
        proc = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd,
                                env={**os.environ, **spec.env}, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            error = f"timed out after {timeout_s:g} s"
        wall = time.perf_counter() - started
        leftovers = end_descendants(LEFTOVER_GRACE_S)
        sampler.stop()
    cpu_rusage = _children_cpu() - cpu_before
    cpu = max(cpu_rusage, sampler.sampled_cpu_s)
    other_cores = max(0.0, (_machine_busy_s() - busy_before - cpu - sampler.own_cpu_s) / wall)
    if returncode and not error:
        error = f"exit status {returncode}: " + _tail(log_path)
    return Measurement(wall, cpu, cpu_rusage, sampler.sampled_cpu_s, sampler.peak_rss, sampler.peak_pss,
                       returncode, leftovers, other_cores, sampler.own_cpu_s, error)


def _tail(path: str, lines: int = 5) -> str:
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return " | ".join(text.strip().splitlines()[-lines:])


# =========================================================================================
# Verifying outputs
# =========================================================================================
def part_files(output: str) -> list[str]:
    return sorted(os.path.join(output, n) for n in os.listdir(output) if n.startswith("part-"))


def read_word_counts(output: str, fmt: str) -> dict[bytes, int]:
    """``word -> count`` from the part files of a word-count output."""
    counts: dict[bytes, int] = {}
    for path in part_files(output):
        with open(path, "rb") as f:
            for line in f:
                line = line.rstrip(b"\n")
                if fmt == "uniq":
                    number, _, word = line.lstrip(b" ").partition(b" ")
                else:
                    word, _, number = line.rpartition(b"\t")
                if not word and fmt == "uniq":
                    continue  # tr's empty first line when the input starts with whitespace
                if word in counts:
                    raise ValueError(f"word {word!r} appears twice in the output")
                counts[word] = int(number)
    return counts


@dataclass
class SortDigest:
    records: int
    checksum: int  # order-independent, as make_corpus.record_checksum
    sha256: str  # of the records in output order
    ordered: bool


def sort_digest(output: str) -> SortDigest:
    """Count, checksum, hash and order check of a sort output, read as 100-byte records."""
    digest = hashlib.sha256()
    records = checksum = 0
    ordered = True
    previous = b""
    for path in part_files(output):
        with open(path, "rb") as f:
            for line in f:
                if len(line) != make_corpus.RECORD_SIZE:
                    raise ValueError(f"record of {len(line)} bytes: {line[:40]!r}")
                if line < previous:
                    ordered = False
                previous = line
                records += 1
                checksum += zlib.crc32(line)
                digest.update(line)
    return SortDigest(records, checksum % 2**64, digest.hexdigest(), ordered)


class Verifier:
    """Checks each output against the baseline's; the first call must be the baseline's."""

    def __init__(self, task: str, expected_records: make_corpus.RecordsInfo | None = None):
        self.task = task
        self.expected_records = expected_records
        self.reference: Any = None

    def check(self, spec: RunSpec, system: str) -> str:
        try:
            if self.task == "sort":
                return self._check_sort(sort_digest(spec.output), system)
            return self._check_counts(read_word_counts(spec.output, spec.output_format), system)
        except (OSError, ValueError) as exc:
            return f"FAILED: {exc}"

    def _check_counts(self, counts: dict[bytes, int], system: str) -> str:
        if self.reference is None:
            self.reference = counts
            return f"baseline ({len(counts):,} words)"
        if counts == self.reference:
            return "identical"
        missing = self.reference.keys() - counts.keys()
        extra = counts.keys() - self.reference.keys()
        wrong = [w for w in self.reference.keys() & counts.keys() if counts[w] != self.reference[w]]
        return (f"FAILED: {len(missing)} words missing, {len(extra)} extra, {len(wrong)} miscounted"
                f" (e.g. {(sorted(missing) + sorted(extra) + sorted(wrong))[:3]})")

    def _check_sort(self, got: SortDigest, system: str) -> str:
        expected = self.expected_records
        problems = []
        if not got.ordered:
            problems.append("not totally ordered")
        if expected and (got.records, got.checksum) != (expected.records, expected.checksum):
            problems.append(f"{got.records:,} records / checksum {got.checksum:x}, expected "
                            f"{expected.records:,} / {expected.checksum:x}")
        if self.reference is None:
            if problems:
                return "FAILED: " + "; ".join(problems)
            self.reference = got
            return f"baseline ({got.records:,} records, ordered)"
        if got.sha256 != self.reference.sha256:
            problems.append("bytes differ from the baseline's")
        return "FAILED: " + "; ".join(problems) if problems else "identical"


# =========================================================================================
# The run
# =========================================================================================
@dataclass
class Row:
    task: str
    system: str
    input_bytes: int
    measurement: Measurement | None = None  # the median run by wall time (or the run that failed)
    verified: str = ""
    note: str = ""
    runs: list[Measurement] = field(default_factory=list)  # in round order


def make_inputs(tasks: list[str], args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Write each task's input; returns ``task -> info`` (CorpusInfo or RecordsInfo)."""
    inputs: dict[str, Any] = {}
    if "startup" in tasks:
        path = os.path.join(workdir, "tiny.txt")
        Path(path).write_text(TINY_TEXT)
        inputs["startup"] = make_corpus.CorpusInfo(path, len(TINY_TEXT), hashlib.sha256(TINY_TEXT.encode()).hexdigest(),
                                                   1, 1)
    if "wordcount" in tasks:
        inputs["wordcount"] = make_corpus.make_text_corpus(os.path.join(workdir, "corpus.txt"), args.size, args.seed)
    if "rounds" in tasks:
        path = os.path.join(workdir, "graph.txt")
        Path(path).write_text(TINY_GRAPH)
        inputs["rounds"] = make_corpus.CorpusInfo(path, len(TINY_GRAPH), hashlib.sha256(TINY_GRAPH.encode()).hexdigest(),
                                                  1, 1)
    if "sort" in tasks:
        inputs["sort"] = make_corpus.make_sort_records(os.path.join(workdir, "records.txt"), args.sort_size,
                                                       args.seed)
    return inputs


def run_task(task: str, info: Any, systems: list[str], args: argparse.Namespace, workdir: str) -> list[Row]:
    """Time every system on one task and verify every output (the baseline's first).

    The repeats are interleaved: each round runs every system once, so that systems
    compared by their ratio are measured minutes apart at most, not a whole system's
    repeats apart (this machine's speed drifts by a third within an hour); every other
    round runs them in reverse order, so no system is always first.
    """
    verifier = Verifier(task, info if task == "sort" else None)
    rows, specs = [], {}
    for system in systems:
        row = Row(task, system, info.bytes)
        rows.append(row)
        spec = plan(system, task, info.path, os.path.join(workdir, f"out-{task}-{system}"),
                    os.path.join(workdir, "tmp"), args.split_size, args.pymr_env, args.pymr_python)
        if isinstance(spec, str):
            row.note = "skipped: " + spec
            print(f"  {system:16s} {row.note}", flush=True)
            continue
        row.note = spec.note
        specs[system] = (row, spec)
        if args.against and pymr_kind(system):  # the same system as of --against, run in the same rounds
            twin = f"{system}@{args.against}"
            rows.append(Row(task, twin, info.bytes, note=spec.note))
            specs[twin] = (rows[-1], plan(system, task, info.path, os.path.join(workdir, f"out-{task}-{twin}"),
                                          os.path.join(workdir, "tmp"), args.split_size, args.against_env,
                                          args.pymr_python))
    in_order = list(specs.values())
    for round_number in range(max(args.repeat, STARTUP_REPEAT) if task == "startup" else args.repeat):
        # every other round in reverse: the first system of a round ran up to 10% slower
        # (a run of the same commit under two names, `--against`, was 1.10x "slower" first)
        for row, spec in in_order if round_number % 2 == 0 else in_order[::-1]:
            if not (row.runs and row.runs[-1].error):
                row.runs.append(measure_once(spec, args, workdir))
    for system, (row, spec) in specs.items():
        if not row.runs:  # --repeat 0
            continue
        failed = row.runs[-1] if row.runs[-1].error else None
        row.measurement = failed or sorted(row.runs, key=lambda m: m.wall_s)[len(row.runs) // 2]
        row.verified = "FAILED: " + failed.error if failed else verifier.check(spec, system)
        row.note = "; ".join(filter(None, [row.note, pymr_note(spec), leftover_note(row.measurement),
                                           cpu_note(row.measurement), load_note(row.measurement)]))
        print(f"  {system:16s} {describe(row)}", flush=True)
        shutil.rmtree(spec.output, ignore_errors=True)
    return rows


@dataclass
class RoundsRow:
    """pagerank's wall and CPU (medians) at each round count, for one pymr system."""

    system: str
    wall_s: dict[int, float] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    round_s: float | None = None  # the median round's elapsed_s in the job reports
    error: str = ""

    @property
    def per_round_s(self) -> float | None:
        few, many = PAGERANK_ROUNDS
        if self.error or len(self.wall_s) < 2:
            return None
        return (self.wall_s[many] - self.wall_s[few]) / (many - few)


def run_rounds(info: Any, systems: list[str], args: argparse.Namespace, workdir: str) -> list[RoundsRow]:
    """``jobs/pagerank.py`` with each round count of ``PAGERANK_ROUNDS``, for every pymr system."""
    rows = []
    for system in [s for s in systems if pymr_kind(s) == "pymr"]:
        row = RoundsRow(system)
        for rounds in PAGERANK_ROUNDS:
            out = os.path.join(workdir, f"out-rounds-{system}")
            argv = [args.pymr_python, "-m", "pymr", "submit", str(EXAMPLE_JOBS / "pagerank.py"), info.path, "-o", out,
                    "--workers", system.rsplit("-", 1)[1], "-q", "--overwrite", "--iterations", str(rounds),
                    "--tolerance", "0"]
            spec = RunSpec(argv, out, "tsv", env=dict(args.pymr_env))
            runs = [measure(spec, args.timeout, os.path.join(workdir, "log.txt"), cwd=workdir)
                    for _ in range(max(args.repeat, STARTUP_REPEAT))]
            failed = next((m.error for m in runs if m.error), "")
            ran, round_times = _report_rounds(out)
            if not failed and ran != rounds:
                failed = f"FAILED: ran {ran} rounds, not {rounds}"
            if failed:
                row.error = failed
                break
            row.round_s = sorted(round_times)[len(round_times) // 2]
            row.wall_s[rounds] = sorted(m.wall_s for m in runs)[len(runs) // 2]
            row.cpu_s[rounds] = sorted(m.cpu_s for m in runs)[len(runs) // 2]
            shutil.rmtree(out, ignore_errors=True)
        rows.append(row)
        print(f"  {system:16s} " + (row.error or "  ".join(f"{n} rounds {row.wall_s[n]:.2f} s" for n in row.wall_s)
                                    + f"  -> {row.per_round_s:.3f} s per round"), flush=True)
    return rows


def _report_rounds(out: str) -> tuple[int | None, list[float]]:
    """How many rounds the last pagerank run ran, and each round's elapsed_s, from its report."""
    try:
        with open(os.path.join(out, "_REPORT.json")) as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None, []
    times = [step["elapsed_s"] for step in report.get("steps", []) if step.get("round")]
    return report["counters"].get("pagerank", {}).get("rounds"), times


def measure_once(spec: RunSpec, args: argparse.Namespace, workdir: str) -> Measurement:
    """One run of a system, into a fresh output folder (the last run's output is verified)."""
    shutil.rmtree(spec.output, ignore_errors=True)
    os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
    try:
        return measure(spec, args.timeout, os.path.join(workdir, "log.txt"), cwd=workdir)
    finally:
        shutil.rmtree(os.path.join(workdir, "tmp"), ignore_errors=True)


def pymr_note(spec: RunSpec) -> str:
    """The task counts from pymr's ``_REPORT.json``, when the output has one."""
    report = os.path.join(spec.output, "_REPORT.json")
    if not os.path.exists(report):
        return ""
    with open(report) as f:
        data = json.load(f)
    if "map_tasks" not in data:
        return ""
    return f"{data['map_tasks']} map + {data.get('reduce_tasks', 0)} reduce task(s)"


def leftover_note(m: Measurement) -> str:
    return f"{m.leftovers} process(es) outlived the command and were killed" if m.leftovers else ""


def cpu_note(m: Measurement) -> str:
    if m.cpu_sampled_s > 1.05 * m.cpu_rusage_s + 0.1:
        return f"CPU sampled from /proc: wait() reported only {m.cpu_rusage_s:.1f} s"
    return ""


def load_note(m: Measurement) -> str:
    """Say so when processes outside the measured tree competed for the CPUs."""
    return f"other load {m.other_cores:.1f} cores" if m.other_cores >= 0.2 and m.wall_s >= 1 else ""


def describe(row: Row) -> str:
    m = row.measurement
    if m is None:
        return row.note
    mem = f"{m.peak_pss / MiB:,.0f} MiB PSS"
    return f"{m.wall_s:8.2f} s wall {m.cpu_s:8.2f} s CPU {mem:>14s}  {row.verified}  {row.note}"


# =========================================================================================
# Reporting
# =========================================================================================
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def export_pymr(ref: str, workdir: str, name: str = "pymr-src") -> dict[str, str]:
    """Copy ``pymr/`` as of git ``ref`` into ``workdir/name``; the environment that runs that copy."""
    dest = os.path.join(workdir, name)
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", "--format=tar", ref, "pymr"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest)
    compileall.compile_dir(dest, quiet=1)  # as an installed copy would be: no compiling in the timed runs
    return {"PYTHONPATH": dest}


def working_tree_commit() -> str:
    """A commit of the working tree as it is, uncommitted changes to tracked files
    included (``git stash create``, which changes no branch; a new file must be
    ``git add``-ed first), or HEAD when there are none."""
    made = subprocess.run(["git", "-C", str(HERE.parent), "stash", "create"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return made or "HEAD"


def pymr_source(ref: str | None) -> str:
    """Which pymr is measured: a commit (``--pymr-ref``) or the working tree as installed."""
    if ref:
        commit = _first_line(["git", "-C", str(HERE.parent), "log", "-1", "--format=%h %cd %s", "--date=iso", ref])
        return f"{commit[:100]} (--pymr-ref {ref}, exported with git archive)"
    return "working tree: " + _git_state()


def _git_state() -> str:
    """The commit of the working tree, and whether pymr/ has uncommitted changes."""
    root = str(HERE.parent)
    commit = _first_line(["git", "-C", root, "log", "-1", "--format=%h %cd", "--date=short"])
    changed = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "pymr"],
                             capture_output=True, text=True).stdout.split("\n")
    changed = [line[3:] for line in changed if line.strip()]
    return f"{commit}" + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def environment(pymr_ref: str | None = None, pymr_python: str = sys.executable) -> dict[str, str]:
    """The machine and software versions, for the report."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    memory = next((line.split(":", 1)[1].strip() for line in open("/proc/meminfo") if line.startswith("MemTotal")),
                  "?")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {int(memory.split()[0]) / MiB:.1f} GiB RAM, "
                   f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pymr": _version("pymr"),
        "pyarrow": _version("pyarrow"),
        "dask": _version("dask"),
        "pyspark": _version("pyspark"),
        "py-spy": _version("py-spy"),
        "pymr source": pymr_source(pymr_ref),
        "pymr python": pymr_python if pymr_python != sys.executable else f"{pymr_python} (this one)",
        "java": _first_line(["java", "-XX:-UsePerfData", "-version"]),
        "GNU sort": _first_line(["sort", "--version"]),
    }


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value and base else "—"


def markdown_table(rows: list[Row]) -> str:
    """One table for all tasks; ratios are to the same task's ``python`` row."""
    head = ("| task | system | input | wall s | × py | CPU s | × py | peak PSS MiB | × py | peak RSS MiB "
            "| MB/s | result | notes |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
    base = {r.task: r.measurement for r in rows if r.system == BASELINE and r.measurement}
    lines = []
    for r in rows:
        m, b = r.measurement, base.get(r.task)
        size = f"{r.input_bytes / MiB:,.0f} MiB" if r.input_bytes >= MiB else f"{r.input_bytes / 1024:,.0f} KiB"
        if m is None:
            lines.append(f"| {r.task} | {r.system} | {size} | — | — | — | — | — | — | — | — | skipped "
                         f"| {_cell(r.note)} |")
            continue
        pss, rss = m.peak_pss / MiB, m.peak_rss / MiB
        rate = "—" if r.task == "startup" else f"{r.input_bytes / 1e6 / m.wall_s:,.1f}"
        lines.append(
            f"| {r.task} | {r.system} | {size} | {m.wall_s:,.2f} | {_ratio(m.wall_s, b and b.wall_s)} "
            f"| {m.cpu_s:,.2f} | {_ratio(m.cpu_s, b and b.cpu_s)} "
            f"| {_fmt(pss)} | {_ratio(pss, b and b.peak_pss / MiB)} | {_fmt(rss)} "
            f"| {rate} | {_cell(r.verified)} | {_cell(r.note)} |")
    return head + "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fmt(value: float | None) -> str:
    """MiB, or a dash when not measured (the run ended before the first sample)."""
    return "—" if not value else f"{value:,.0f}"


def markdown_report(rows: list[Row], env: dict[str, str], inputs: dict[str, Any], args: argparse.Namespace,
                    rounds: list[RoundsRow] = ()) -> str:
    parts = ["## Environment\n"]
    parts += [f"- {k}: {v}" for k, v in env.items()]
    parts += ["", "## Inputs\n"]
    for task, info in inputs.items():
        if isinstance(info, make_corpus.CorpusInfo):
            parts.append(f"- {task}: {info.bytes:,} bytes of text from {info.files_used:,} files "
                         f"(seed {args.seed}, sha256 {info.sha256[:16]}…)")
        else:
            parts.append(f"- {task}: {info.records:,} records of 100 bytes (seed {args.seed}, "
                         f"checksum {info.checksum:x})")
    parts += [f"- chunk / split size for every system: {args.split_size / MiB:g} MiB; repeats: {args.repeat} "
              f"(startup: {max(args.repeat, STARTUP_REPEAT)}); peers' processes: {PROCESSES}",
              "", "## Results\n", markdown_table(rows)]
    parts += floor_lines(rows) + against_lines(rows, args.against)
    if len({r.system for r in rows if pymr_kind(r.system)}) > 2:
        parts += ["## Scaling\n", scaling_table(rows)]
    if rounds:
        parts += ["## Fixed cost per step\n", rounds_table(rounds)]
    return "\n".join(parts) + "\n"


def floor_lines(rows: list[Row]) -> list[str]:
    """pymr's per-record word count over the hand-written floors (``floor``, and
    ``floor-mr``, the floor under MapReduce's contract), as many workers as they have
    processes, and ``floor-mr`` over ``floor``: the ratio of the medians, and the ratio
    within each round (they ran one after the other), which a drifting machine disturbs less."""
    floors = [r for r in rows if r.task == "wordcount" and r.system in ("floor", "floor-mr") and r.measurement
              and not r.measurement.error]
    pymrs = [r for r in rows if r.task == "wordcount" and r.system.split("@")[0] == f"pymr-{PROCESSES}"
             and r.measurement and not r.measurement.error]
    pairs = [(row, floor) for floor in floors for row in pymrs]
    pairs += [(mr, floor) for mr in floors if mr.system == "floor-mr" for floor in floors if floor.system == "floor"]
    lines = []
    for row, floor in pairs:
        m, f = row.measurement, floor.measurement
        lines.append(f"- `{row.system}` / `{floor.system}` ({PROCESSES} processes): **{m.wall_s / f.wall_s:.2f}×** "
                     f"wall ({m.wall_s:.2f} s / {f.wall_s:.2f} s), {m.cpu_s / f.cpu_s:.2f}× CPU; round by round "
                     + by_round(row.runs, floor.runs, "wall_s"))
    return lines + [""] if lines else []


def against_lines(rows: list[Row], ref: str | None) -> list[str]:
    """Each pymr system over itself as of ``--against``: the ratio within each round (the
    two ran one after the other) and its median, for wall time and CPU."""
    lines = []
    for old in [r for r in rows if ref and r.system.endswith(f"@{ref}") and r.runs]:
        new = next((r for r in rows if r.task == old.task and r.system == old.system.split("@")[0] and r.runs), None)
        if new is None or any(m.error for m in new.runs + old.runs):
            continue
        lines.append(f"- {new.task}, `{new.system}` / `{old.system}`: wall round by round "
                     f"{by_round(new.runs, old.runs, 'wall_s')}; CPU {by_round(new.runs, old.runs, 'cpu_s')}")
    return lines + [""] if lines else []


def by_round(runs: list[Measurement], others: list[Measurement], field_name: str) -> str:
    """``runs`` over ``others`` round by round (each pair ran side by side), and the median."""
    ratios = [getattr(a, field_name) / getattr(b, field_name) for a, b in zip(runs, others)]
    return ", ".join(f"{r:.2f}×" for r in ratios) + f" (median **{statistics.median(ratios):.2f}×**)"


def scaling_table(rows: list[Row]) -> str:
    """Each pymr system by worker count: wall, CPU, memory, speed-up over its fewest workers."""
    out = ["| task | system | workers | wall s | CPU s | peak PSS MiB | peak RSS MiB | speed-up |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for task in dict.fromkeys(r.task for r in rows):
        for kind in ("pymr", "pymr-fast"):
            runs = [r for r in rows if r.task == task and pymr_kind(r.system) == kind and r.measurement]
            runs.sort(key=lambda r: int(r.system.rsplit("-", 1)[1]))
            for r in runs:
                m = r.measurement
                out.append(f"| {task} | {kind} | {r.system.rsplit('-', 1)[1]} | {m.wall_s:,.2f} | {m.cpu_s:,.2f} "
                           f"| {_fmt(m.peak_pss / MiB)} | {_fmt(m.peak_rss / MiB)} "
                           f"| {runs[0].measurement.wall_s / m.wall_s:.2f}× |")
    return "\n".join(out) + "\n"


def rounds_table(rounds: list[RoundsRow]) -> str:
    few, many = PAGERANK_ROUNDS
    out = [f"`jobs/pagerank.py` on a {TINY_GRAPH.count(chr(10))}-edge graph, `--tolerance 0`, medians of "
           f"{STARTUP_REPEAT} runs; the last column is the median of the rounds' own `elapsed_s` in the job reports "
           "(submit to commit, on the coordinator's clock):\n",
           f"| system | {few} rounds: wall s | CPU s | {many} rounds: wall s | CPU s | s per extra round "
           "| a round, by the report |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        if r.error:
            out.append(f"| {r.system} | {_cell(r.error)} | | | | | |")
            continue
        out.append(f"| {r.system} | {r.wall_s[few]:.2f} | {r.cpu_s[few]:.2f} | {r.wall_s[many]:.2f} "
                   f"| {r.cpu_s[many]:.2f} | **{r.per_round_s:.3f}** | {r.round_s:.3f} |")
    return "\n".join(out) + "\n"


# =========================================================================================
# Profiling pymr's word count
# =========================================================================================
STAGE_MARKERS = {  # the innermost of these on a stack names its stage
    "spill": "map: spill (partition, sort, combine, write run)",
    "merge_run_files": "map: merge spills into one run",
    "_run_reduce": "reduce",
    "_feed": "map: read and map records",
}
OUTSIDE = "start-up, imports, job setup, commit"
PHASE_RULES = (  # within a stage, the innermost matching frame names the phase: (file, functions, phase)
    ("inputs.py", {"read_text_records", "_record_blocks", "read_lines", "_read_lines", "_lines_from",
                   "read_text_batches", "_text_blocks", "_lines_batch", "_decode_each", "records", "_line_blocks",
                   "_records_line_by_line", "_split_keep_newline"}, "read + decode lines"),
    ("wordcount.py", {"map"}, "user map()"),
    ("wordcount.py", {"combine"}, "user combine()"),
    ("wordcount.py", {"reduce"}, "user reduce()"),
    ("keys.py", {"partition_for"}, "partition hashing"),
    ("job.py", {"partition"}, "partition hashing"),
    ("shuffle.py", {"_partitions", "_partition_array"}, "partition hashing"),
    ("shuffle.py", {"_key_array", "_value_array", "_key_kind", "_value_kind", "pairs_table", "_groups_table",
                    "_normalize_table", "_concat"}, "Python lists -> Arrow arrays"),
    ("shuffle.py", {"_sorted_table", "write_table_run"}, "sort (Arrow sort_indices + take)"),
    ("shuffle.py", {"_batch_triples", "batch_triples", "_table_pairs", "_table_columns", "triples", "batches"},
     "Arrow -> Python (to_pylist)"),
    ("shuffle.py", {"group_pairs", "_values"}, "group values by key"),
    ("grouping.py", {"key_groups", "_group_starts", "key_changes", "_python_keys", "_python_values",
                     "_values_from", "__next__", "single_groups"}, "group values by key"),
    ("grouping.py", {"apply_per_key", "columns_of"}, "calls of reduce or combine, pairs to columns"),
    ("heapq.py", {"merge"}, "k-way merge (heapq.merge)"),
    ("shuffle.py", {"merge_partition"}, "k-way merge (heapq.merge)"),
    ("shuffle.py", {"write_run", "write", "write_pairs", "close", "start_partition", "__init__"}, "Arrow IPC write"),
    ("shuffle.py", {"_combine", "_compact", "_combine_sorted", "_combine_table", "_combine_groups"}, "combine loop"),
    ("shuffle.py", {"add", "put", "check", "_add_grouped", "_add_aggregated", "add_table", "_check_size", "_size",
                    "due", "count", "_held_pairs", "_resident_bytes"}, "buffer add"),
    ("shuffle.py", {"_merge_into", "merge_run_files", "_merge_down", "_merge"}, "merge loop"),
    ("shuffle.py", {"_take_buffered"}, "spill"),
    ("outputs.py", {"write", "write_table", "write_columns", "_text_table", "format_text", "_text_field",
                    "to_json", "_json_default"},
     "output: format + write"),
    ("outputs.py", {"close"}, "output: flush + fsync"),
    ("encoder.py", {"encode", "iterencode"}, "output: format + write"),  # json, under to_json
    ("__init__.py", {"dumps"}, "output: format + write"),
    ("tasks.py", {"_arrow_aggregate"}, "reduce: Arrow aggregate"),
)
SPILL_CONTEXT = {"_combine": "combine", "write_run": "write_run"}  # else "spill": the first pass
CATEGORIES = {  # phase -> the summary row it is counted in (reduce and merge stages are whole rows)
    "Arrow -> Python (to_pylist)": "combine (Arrow -> Python, grouping, user combine)",
    "group values by key": "combine (Arrow -> Python, grouping, user combine)",
    "combine loop": "combine (Arrow -> Python, grouping, user combine)",
    "calls of reduce or combine, pairs to columns": "combine (Arrow -> Python, grouping, user combine)",
    "user combine()": "combine (Arrow -> Python, grouping, user combine)",
    "Python lists -> Arrow arrays": "sort (Python -> Arrow arrays, sort_indices, take)",
    "sort (Arrow sort_indices + take)": "sort (Python -> Arrow arrays, sort_indices, take)",
    "map loop (_feed)": "map driver loop (_feed: records in, pairs out)",
}


def _frame_parts(frame: str) -> tuple[str, str]:
    """``("func", "file.py")`` from py-spy's ``Class.func (path/file.py:12)``."""
    name, _, where = frame.rpartition(" (")
    return name.rsplit(".", 1)[-1].strip(), os.path.basename(where.rsplit(":", 1)[0])


def classify(stack: list[str]) -> tuple[str, str]:
    """``(stage, phase)`` of one sampled stack (outermost frame first, as py-spy writes it)."""
    frames = [_frame_parts(f) for f in reversed(stack)]  # innermost first
    depth = next((i for i, (name, _) in enumerate(frames) if name in STAGE_MARKERS), None)
    if depth is None:
        return OUTSIDE, "imports, cluster and job setup, commit"
    stage = STAGE_MARKERS[frames[depth][0]]
    inside = frames[:depth]
    phase = next((label for name, file in inside for rule_file, names, label in PHASE_RULES
                  if file == rule_file and name in names), None)
    if phase is None:
        phase = {"_feed": "map loop (_feed)", "_run_reduce": "reduce loop", "merge_run_files": "merge loop",
                 "spill": "spill"}[frames[depth][0]]
    if stage.startswith("map: spill") and phase in ("partition hashing", "Python lists -> Arrow arrays",
                                                    "sort (Arrow sort_indices + take)"):
        phase += " [" + next((SPILL_CONTEXT[name] for name, _ in inside if name in SPILL_CONTEXT), "spill") + "]"
    return stage, phase


def category(stage: str, phase: str) -> str:
    """The summary row of a phase: the pipeline steps a fast path would replace."""
    if stage == OUTSIDE:
        return OUTSIDE
    if stage.startswith("map: merge"):
        return "merge spills (map side: k-way merge, combine again, write)"
    if stage == "reduce":
        return phase if phase.startswith("output") else "reduce (read runs, merge, group, user reduce)"
    return CATEGORIES.get(phase.split(" [")[0], phase.split(" [")[0])


def profile_pymr(args: argparse.Namespace, workdir: str) -> str:
    """Sample ``pymr submit --inline`` on a word count with py-spy; a Markdown breakdown."""
    if shutil.which("py-spy") is None:
        return "py-spy not found: pip install py-spy\n"
    corpus = make_corpus.make_text_corpus(os.path.join(workdir, "corpus.txt"), args.size, args.seed)
    raw = os.path.join(workdir, "profile.txt")
    command = [sys.executable, "-m", "pymr", "submit", str(EXAMPLE_JOBS / "wordcount.py"), corpus.path,
               "-o", os.path.join(workdir, "out"), "--inline", "--workers", "1", "-q", "--overwrite",
               "--split-size", str(args.split_size)]
    started = time.perf_counter()
    subprocess.run(["py-spy", "record", "--rate", str(args.profile_rate), "--format", "raw",
                    "-o", raw, "--", *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, **args.pymr_env}, cwd=workdir)  # not the repo: python -m would import its pymr/
    wall = time.perf_counter() - started
    stacks = read_stacks(raw)
    if args.keep_profile:
        shutil.copy(raw, args.keep_profile)
    total = sum(stacks.values()) or 1
    header = (f"pymr word count, `--inline`, {corpus.bytes / MiB:.0f} MiB corpus, split size "
              f"{args.split_size / MiB:g} MiB, pymr source: {pymr_source(args.pymr_ref)}. "
              f"{wall:.1f} s wall under py-spy ({total:,} samples at {args.profile_rate} Hz; "
              "time in C code counts for the Python function that called it)\n")
    return "\n\n".join([header, phase_tables(stacks, total), self_time_table(stacks, total)]) + "\n"


def read_stacks(path: str) -> collections.Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count`` lines, outermost frame first."""
    stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def phase_tables(stacks: collections.Counter[tuple[str, ...]], total: int) -> str:
    """Samples per stage and phase, then per summary row (see ``classify`` and ``category``)."""
    stages: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[tuple[str, str]] = collections.Counter()
    for stack, n in stacks.items():
        stage, phase = classify(list(stack))
        stages[stage] += n
        phases[stage, phase] += n
    out = ["| stage | phase | % of samples |", "|---|---|---:|"]
    for stage, n in stages.most_common():
        out.append(f"| **{stage}** | | **{100 * n / total:.1f}** |")
        out += [f"| | {phase} | {100 * m / total:.1f} |" for (s, phase), m in phases.most_common() if s == stage]
    by_category: collections.Counter[str] = collections.Counter()
    for (stage, phase), n in phases.items():
        by_category[category(stage, phase)] += n
    out += ["", "| where the time goes (summary) | % |", "|---|---:|"]
    out += [f"| {name} | {100 * n / total:.1f} |" for name, n in by_category.most_common()]
    return "\n".join(out)


def self_time_table(stacks: collections.Counter[tuple[str, ...]], total: int, top: int = 20) -> str:
    """The functions most often innermost on the stack (``file:function``), whatever their phase."""
    own: collections.Counter[str] = collections.Counter()
    for stack, n in stacks.items():
        name, file = _frame_parts(stack[-1]) if stack and stack[-1] else ("", "")
        if name.startswith("<") and name != "<module>" and len(stack) > 1:  # <genexpr>, <listcomp>: say whose
            name = _frame_parts(stack[-2])[0] + "/" + name
        own[f"{file}:{name}" if name else "(no Python frame: thread start or exit)"] += n
    out = ["| self time (innermost Python frame) | % |", "|---|---:|"]
    out += [f"| `{where}` | {100 * n / total:.1f} |" for where, n in own.most_common(top)]
    return "\n".join(out)


# =========================================================================================
# Command line
# =========================================================================================
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)} "
                        "[default: all]")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)} "
                        "[default: all; python always runs]")
    parser.add_argument("--size", default="128M", type=make_corpus.parse_size,
                        help="word-count corpus size; K, M, G suffixes (binary) [default: 128M]")
    parser.add_argument("--sort-size", default="64M", type=make_corpus.parse_size,
                        help="sort input size [default: 64M]")
    parser.add_argument("--split-size", default="32M", type=make_corpus.parse_size,
                        help="input chunk per task for every system (pymr --split-size, Dask blocksize, "
                             "Spark partitions, Pool chunks) [default: 32M]")
    parser.add_argument("--workers", metavar="N,N,...", help="run every selected pymr system with each of these "
                        "worker counts (e.g. 1,2,4,8,16) and add a scaling table [default: as --systems names them]")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes (or threads) of every peer: Pool, Dask, Spark, pyarrow, GNU sort [default: 2]")
    parser.add_argument("--repeat", type=int, default=1, help="runs per system; the median is kept [default: 1; "
                        f"startup: at least {STARTUP_REPEAT}]")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed [default: 900]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs [default: 0]")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write raw results as JSON")
    parser.add_argument("--work-dir", metavar="DIR", help="where to make the temporary folder [default: $TMPDIR]")
    parser.add_argument("--pymr-ref", metavar="REF", help="measure pymr as of this git commit (exported to the "
                        "temporary folder) instead of the installed working tree, e.g. HEAD")
    parser.add_argument("--against", metavar="REF", help="also run every pymr system as of this git commit, as "
                        "system `pymr-N@REF`, in the same rounds, and report new/old ratios round by round (the "
                        "working tree is then exported and compiled as REF is, uncommitted changes to tracked files "
                        "included)")
    parser.add_argument("--pymr-python", metavar="PYTHON", default=sys.executable,
                        help="the interpreter that runs pymr, e.g. a fresh venv's bin/python after `pip install .`, "
                             "which imports only pymr's dependencies; start-up depends on it [default: this one]")
    parser.add_argument("--profile", action="store_true",
                        help="instead: profile pymr's word count (--size corpus, --inline) with py-spy")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second [default: 200]")
    parser.add_argument("--keep-profile", metavar="FILE", help="with --profile: keep py-spy's raw stacks")
    parser.add_argument("--run-peer", nargs=4, metavar=("SYSTEM", "TASK", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.tasks = _choices(parser, args.tasks, TASKS, "task")
    args.systems = _choices(parser, args.systems, SYSTEMS, "system")
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.workers:
        try:
            counts = sorted({int(n) for n in args.workers.split(",") if n.strip()})
        except ValueError:
            parser.error(f"--workers takes whole numbers separated by commas, got {args.workers!r}")
        if not counts or counts[0] < 1:
            parser.error("--workers counts must be at least 1")
        kinds = sorted({pymr_kind(s) for s in args.systems if pymr_kind(s)})
        args.systems = [s for s in args.systems if not pymr_kind(s)] + [f"{k}-{n}" for k in kinds for n in counts]
    if BASELINE not in args.systems:
        args.systems.insert(0, BASELINE)
    args.systems = sorted(set(args.systems), key=_system_order)
    return args


def pymr_kind(system: str) -> str | None:
    """``pymr`` or ``pymr-fast`` for ``pymr-N`` and ``pymr-fast-N``, else None."""
    kind, _, workers = system.rpartition("-")
    return kind if kind in ("pymr", "pymr-fast") and workers.isdigit() else None


def _system_order(system: str) -> tuple[int, int]:
    kind = pymr_kind(system)
    if kind:
        return SYSTEMS.index(f"{kind}-1"), int(system.rsplit("-", 1)[1])
    return SYSTEMS.index(system), 0


def _choices(parser: argparse.ArgumentParser, text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in allowed and not (what == "system" and pymr_kind(c))]
    if unknown:
        parser.error(f"unknown {what}(s): {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return chosen


def run_benchmark(args: argparse.Namespace, workdir: str) -> None:
    subreaper = become_subreaper()
    env = environment(args.pymr_ref, args.pymr_python)
    if args.against:
        env["pymr against"] = pymr_source(args.against)
    for key, value in env.items():
        print(f"{key}: {value}")
    if not subreaper:
        print("warning: could not become a child subreaper; CPU of orphaned processes may be missed")
    print(f"writing inputs in {workdir} ...", flush=True)
    inputs = make_inputs(args.tasks, args, workdir)
    rows: list[Row] = []
    rounds: list[RoundsRow] = []
    for task in args.tasks:
        print(f"{task} ({inputs[task].bytes / MiB:,.2f} MiB):", flush=True)
        if task == "rounds":
            rounds = run_rounds(inputs[task], args.systems, args, workdir)
        else:
            rows += run_task(task, inputs[task], args.systems, args, workdir)
    report = markdown_report(rows, env, inputs, args, rounds)
    print("\n" + report)
    if args.markdown:
        Path(args.markdown).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "rows": [asdict(r) for r in rows],
                                               "rounds": [asdict(r) for r in rounds]}, indent=2))
    if any(r.verified.startswith("FAILED") for r in rows) or any(r.error for r in rounds):
        sys.exit(1)


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> None:
    global PROCESSES
    args = parse_args(argv)
    PROCESSES = args.processes
    if args.run_peer:
        system, task, inp, out = args.run_peer
        PEERS[task, system](inp, out, args.split_size, args.work_dir)
        return
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # clean up however we are stopped
        signal.signal(signum, _stop)
    workdir = tempfile.mkdtemp(prefix="pymr-bench-", dir=args.work_dir)
    try:
        if args.against and not args.pymr_ref:  # both sides exported and compiled alike: the working tree too
            args.pymr_ref = working_tree_commit()
        args.pymr_env = export_pymr(args.pymr_ref, workdir) if args.pymr_ref else {}
        if not args.pymr_ref:  # the working tree as installed, compiled as an installed copy is
            compileall.compile_dir(str(HERE.parent / "pymr"), quiet=1)
        args.against_env = export_pymr(args.against, workdir, "pymr-against") if args.against else {}
        if args.profile:
            report = profile_pymr(args, workdir)
            print(report)
            if args.markdown:
                Path(args.markdown).write_text(report)
        else:
            run_benchmark(args, workdir)
    finally:
        end_descendants(0)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
