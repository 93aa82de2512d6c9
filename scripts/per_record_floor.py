"""The floor under a per-record word count in CPython: what no engine can make cheaper.

``jobs/wordcount.py``'s ``map`` is a Python generator that yields ``(word, 1)`` per word.
Whatever a framework does with the pairs, running that generator over every line costs
a generator per line and a resumption and a tuple per word, all in the interpreter.
This script measures that cost side by side with the plain-Python baselines of
``scripts/benchmark.py``, over the same corpus, in one run:

* ``counter``      one process, ``Counter.update(block.split())`` over 16 MiB blocks (in C)
* ``pool2``        ``multiprocessing.Pool(2)``: the same, over 2 halves, merged (wall time)
* ``map only``     the job's ``map`` over every line, its pairs consumed in C and dropped:
                   the user's code alone, with no engine at all
* ``map + group``  the same, each pair appended to a dict of lists by key: the least
                   work a combiner needs before it can run
* ``pymr 1 worker`` ``pymr submit jobs/wordcount.py --workers 1``: the whole job on one
                   core (read, map, combine, sort, spill, shuffle, reduce, write),
                   start-up included

Lines are split from the corpus in memory before the clock starts, so the two middle
rows hold no reading or decoding. Each row is the best of ``--repeat`` runs. The report
gives CPU seconds per GiB of input and, for the rows that run on one core, the wall
time two perfectly parallel cores would need for the whole input (CPU / 2). ``map only``
/ 2 is the floor of any engine that runs the user's ``map``; when ``map + group`` / 2 is
above ``pool2``'s wall time, no engine that groups the pairs in Python (as a combiner
needs) can match ``Pool(2)`` on this machine, however little it adds.

    python scripts/per_record_floor.py --size 64M           # about 1 min on 2 cores
    python scripts/per_record_floor.py --input corpus.txt --repeat 3
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_corpus  # noqa: E402  (a sibling script)

import pymr  # noqa: E402

GiB = 1 << 30
BLOCK = 16 << 20


def _count_range(job: tuple[str, int, int]) -> collections.Counter[str]:
    path, start, end = job
    counts: collections.Counter[str] = collections.Counter()
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()
        while f.tell() < end:
            data = f.read(min(BLOCK, end - f.tell()))
            if not data.endswith(b"\n"):
                data += f.readline()
            counts.update(data.decode("utf-8").split())
    return counts


def counter(path: str) -> None:
    _count_range((path, 0, os.path.getsize(path)))


def pool2(path: str) -> None:
    size = os.path.getsize(path)
    with multiprocessing.Pool(2) as pool:
        total: collections.Counter[str] = collections.Counter()
        for counts in pool.imap_unordered(_count_range, [(path, 0, size // 2), (path, size // 2, size)]):
            total.update(counts)


def map_only(lines: list[str], map_: Callable) -> None:
    drop = deque(maxlen=0).extend
    for offset, line in enumerate(lines):
        drop(map_(offset, line))


def map_and_group(lines: list[str], map_: Callable) -> None:
    groups: dict = {}
    held_values = groups.get
    for offset, line in enumerate(lines):
        for key, value in map_(offset, line):
            held = held_values(key)
            if held is None:
                groups[key] = [value]
            else:
                held.append(value)


def pymr_one_worker(path: str, workdir: str) -> None:
    command = [sys.executable, "-m", "pymr", "submit", str(HERE.parent / "jobs" / "wordcount.py"), path,
               "-o", os.path.join(workdir, "out"), "--workers", "1", "--overwrite", "-q"]
    subprocess.run(command, check=True)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeat: int, run: Callable[[], None]) -> tuple[float, float]:
    """(wall s, CPU s of this process and its children) of the fastest of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), _cpu()
        run()
        best = min(best, (time.perf_counter() - wall, _cpu() - cpu))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="64M", help="corpus size to build (scripts/make_corpus.py text)")
    parser.add_argument("--input", help="a text file to use instead of building a corpus")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row; the fastest is kept")
    args = parser.parse_args(argv)

    job = pymr.load_job_class(HERE.parent / "jobs" / "wordcount.py")()
    with tempfile.TemporaryDirectory(prefix="pymr-floor-") as workdir:
        path = args.input or os.path.join(workdir, "corpus.txt")
        if not args.input:
            make_corpus.make_text_corpus(path, make_corpus.parse_size(args.size))
        size = os.path.getsize(path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        rows = [
            ("counter", best_of(args.repeat, lambda: counter(path)), True),
            ("pool2", best_of(args.repeat, lambda: pool2(path)), False),
            ("map only", best_of(args.repeat, lambda: map_only(lines, job.map)), True),
            ("map + group", best_of(args.repeat, lambda: map_and_group(lines, job.map)), True),
            ("pymr 1 worker", best_of(args.repeat, lambda: pymr_one_worker(path, workdir)), True),
        ]
    scale = GiB / size
    print(f"corpus: {size:,} bytes, {len(lines):,} lines; Python {sys.version.split()[0]}; "
          f"best of {args.repeat}; per GiB of input\n")
    print("| row | wall s / GiB | CPU s / GiB | × counter CPU | on 2 ideal cores, s / GiB |")
    print("|---|---:|---:|---:|---:|")
    base_cpu = rows[0][1][1]
    for name, (wall, cpu), one_core in rows:
        ideal = f"{cpu * scale / 2:.1f}" if one_core else "—"
        print(f"| {name} | {wall * scale:.1f} | {cpu * scale:.1f} | {cpu / base_cpu:.2f} | {ideal} |")


if __name__ == "__main__":
    main()
