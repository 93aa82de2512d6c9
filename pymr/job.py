"""The job API: subclass ``pymr.Job``, write ``map`` (and ``reduce``, ``combine``).

A job instance is made fresh for every task in the worker that runs it, so attributes
set in ``map_init`` live for one task. Methods that yield pairs are generators::

    class WordCount(pymr.Job):
        def map(self, key, line):
            for word in line.split():
                yield word, 1

        def combine(self, word, counts):
            yield word, sum(counts)

        def reduce(self, word, counts):
            yield word, sum(counts)

A job without ``reduce`` is map-only: map output is written as the job's output.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from . import keys
from .errors import JobScriptError

Pair = tuple[Any, Any]
OUTPUT_FORMATS = ("text", "jsonl", "parquet")
AGGREGATES = ("sum", "count", "min", "max")  # the built-in reducers ``Job.aggregate`` can name
DEFAULT_MAX_ROUNDS = 100  # bounds an iterative step whose repeat_while never says stop


@dataclass(frozen=True)
class Option:
    """A job option: a flag of ``pymr submit`` and of the script, read as ``self.options.NAME``."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    required: bool = False

    @property
    def attr(self) -> str:
        """The name the value is read by: ``self.options.min_count`` for ``min-count``."""
        return self.name.lstrip("-").replace("-", "_")

    @property
    def flag(self) -> str:
        """The command-line flag: ``--min-count`` for ``min_count``."""
        return "--" + self.name.lstrip("-").replace("_", "-")


class Job:
    """Base class of every pymr job. Override ``map``; optionally ``reduce``, ``combine``."""

    #: number of reduce tasks (part files); ``--reducers`` overrides it
    reducers: ClassVar[int] = 1
    #: bytes of input per map task; ``--split-size`` overrides it
    split_size: ClassVar[int | str] = "64M"
    #: ``text`` (key<TAB>value lines), ``jsonl`` ([key, value] lines) or ``parquet``
    output_format: ClassVar[str] = "text"
    #: Parquet column types of the output key and value (pyarrow types); None infers them
    output_key_type: ClassVar[Any] = None
    output_value_type: ClassVar[Any] = None
    #: count and skip undecodable input lines instead of failing the task
    skip_bad_records: ClassVar[bool] = False
    #: input format of every input (None: by file extension, else text); ``--input-format``
    input_format: ClassVar[str | None] = None
    #: job options, see ``Option``
    options: ClassVar[Sequence[Option]] = ()
    #: a built-in reducer run in C instead of ``combine``/``reduce``: sum, count, min, max
    aggregate: ClassVar[str | None] = None
    #: range-partition by sampled keys so the part files in order are one sorted output
    total_order: ClassVar[bool] = False
    #: side files or folders shipped to every task; read them at ``self.files[name]``
    files: ClassVar[Sequence[str]] = ()
    #: secondary sort: True gives each key's values to ``reduce`` in their natural order;
    #: a function of one value (``lambda v: v["time"]``) orders them by what it returns
    sort_values: ClassVar[Any] = False

    def __init__(self, options: dict[str, Any] | None = None):
        given = dict(options or {})
        values = {opt.attr: given.pop(opt.attr, opt.default) for opt in type(self).options}
        values.update(given)
        self.options = SimpleNamespace(**values)  # type: ignore[misc]  # instance view of the declared options
        self.counters: dict[tuple[str, str], int] = {}
        self.files: dict[str, str] = {}  # type: ignore[misc]  # side file name -> local path, set per task

    # -- what a job overrides ---------------------------------------------------------
    def map(self, key: Any, value: Any) -> Iterable[Pair]:
        """Turn one input record into pairs. The default passes the record through.

        A map that never reads ``key`` is given None for it with text, jsonl, csv, parquet and
        arrow input (see README)."""
        yield key, value

    def map_batch(self, batch: Any) -> Any:
        """Turn a block of records into pairs at once (optional; replaces ``map``).

        ``batch`` is a ``pyarrow.RecordBatch``: for text input with columns ``offset``
        (int64) and ``line`` (string); for Parquet and Arrow input the file's own columns,
        a row group's or record batch's rows at a time. ``self.input_path`` names the
        file. Return a ``pyarrow.Table`` with columns ``key`` and ``value`` (vectorized,
        fastest) or an iterable of pairs. Other formats (jsonl, csv, ...) need ``map``.
        """
        raise NotImplementedError

    def combine(self, key: Any, values: Iterator[Any]) -> Iterable[Pair]:
        """Pre-reduce one key's values on the map side (optional). It may run zero, one or
        more times per key, on any share of its values in any order, and what it yields
        is map output, so ``reduce`` must give the same result whether it ran or not."""
        raise NotImplementedError

    def reduce(self, key: Any, values: Iterator[Any]) -> Iterable[Pair]:
        """Turn one key and a stream of its values into output pairs (the values in no
        promised order unless the job sets ``sort_values``)."""
        raise NotImplementedError

    def reduce_batch(self, table: Any) -> Any:
        """Reduce a block of pairs at once (optional; used instead of ``reduce`` when it can be).

        ``table`` is a ``pyarrow.Table`` with columns ``key`` and ``value``, sorted by
        key; a reduce task hands over its partition a block at a time, and one key's
        pairs may be split between two blocks, so this suits reductions that work pair
        by pair (the identity reduce of a sort, a filter), not per key. Return a
        ``key``/``value`` table (a ``null``-typed value column writes keys alone) or an
        iterable of pairs. It is used only when every map output has typed columns
        (keys all str or all int; values str, int or float) and the job asks for no
        ``sort_values``; otherwise the task calls ``reduce``, so a job that defines
        this defines ``reduce`` too.
        """
        raise NotImplementedError

    def partition(self, key: Any, num_reducers: int) -> int:
        """The reduce task of ``key``: a stable hash by default (never ``hash()``)."""
        return keys.partition_for(key, num_reducers)

    def map_init(self) -> None:
        """Called once per map task before its first record."""

    def map_final(self) -> Iterable[Pair]:
        """Called once per map task after its last record; may yield pairs."""
        return ()

    def reduce_init(self) -> None:
        """Called once per reduce task before its first key."""

    def reduce_final(self) -> Iterable[Pair]:
        """Called once per reduce task after its last key; may yield pairs."""
        return ()

    # -- what a job calls --------------------------------------------------------------
    def increment_counter(self, group: str, name: str, amount: int = 1) -> None:
        """Add ``amount`` to a named counter; totals come back with the job result."""
        counter = (str(group), str(name))
        self.counters[counter] = self.counters.get(counter, 0) + amount

    # -- running -------------------------------------------------------------------------
    @classmethod
    def has_reducer(cls) -> bool:
        """Whether the job reduces (``reduce``, ``reduce_batch`` or ``aggregate``); else it is map-only."""
        return cls.reduce is not Job.reduce or cls.reduce_batch is not Job.reduce_batch or cls.aggregate is not None

    @classmethod
    def has_combiner(cls) -> bool:
        """Whether the job defines ``combine``."""
        return cls.combine is not Job.combine

    @classmethod
    def has_map_batch(cls) -> bool:
        """Whether the job defines ``map_batch`` (used instead of ``map``)."""
        return cls.map_batch is not Job.map_batch

    @classmethod
    def has_reduce_batch(cls) -> bool:
        """Whether the job defines ``reduce_batch``."""
        return cls.reduce_batch is not Job.reduce_batch

    @classmethod
    def has_custom_partition(cls) -> bool:
        """Whether the job overrides ``partition``."""
        return cls.partition is not Job.partition

    def steps(self) -> Sequence[Step] | None:
        """A multi-step job returns its steps here (each a ``Step``); None: one step."""
        return None

    @classmethod
    def has_steps(cls) -> bool:
        """Whether the job overrides ``steps`` (a multi-step job)."""
        return cls.steps is not Job.steps

    @classmethod
    def run(cls, inputs: str | Sequence[str], output: str | None = None, **settings: Any):
        """Run this job and wait for it; returns a ``JobResult`` (iterate it for pairs).

        ``settings``: ``workers``, ``reducers``, ``split_size``, ``output_format``,
        ``inline``, ``overwrite``, ``coordinator``, ``skip_bad_records``, ``options``
        (a dict of job option values, checked as the command line checks them),
        ``files`` (side files), ``py_files`` (modules to ship, as ``--py-files``),
        ``quiet`` (default True), ``arrow_threads`` (local mode: Arrow's pool size in
        each task process, or with ``inline`` in this one for the run; default
        ``PYMR_ARROW_THREADS``, else 1). ``workers`` and ``arrow_threads`` do nothing with
        a ``coordinator`` (a warning says so). Without ``output``
        the result goes to a new temporary folder (``jsonl``), which is removed if the
        run fails.
        """
        from .runners import run_job

        return run_job(cls, inputs, output, **settings)

    @classmethod
    def main(cls, argv: Sequence[str] | None = None) -> None:
        """Run this job from the command line, as ``pymr submit`` would."""
        from .cli import submit_job_main

        submit_job_main(cls, argv)


@dataclass
class Step:
    """One MapReduce step of a multi-step job; every part is optional.

    ``map`` defaults to passing pairs through; without ``reduce`` (or ``aggregate``)
    the step is map-only. The output of one step feeds the next as Arrow (keys and
    values keep their types); only the last step writes the job's output.

    An iterative step sets ``repeat_while``: after each round it is called (in the
    submitting process) with that round's counters, ``{group: {name: count}}``, and
    while it returns True the step runs again on its own output, at most
    ``max_rounds`` rounds in all. This is how a job decides from counters whether
    another round is needed (PageRank until it converges).
    """

    map: Callable[[Any, Any], Iterable[Pair]] | None = None
    combine: Callable[[Any, Iterator[Any]], Iterable[Pair]] | None = None
    reduce: Callable[[Any, Iterator[Any]], Iterable[Pair]] | None = None
    aggregate: str | None = None
    reducers: int | None = None
    map_init: Callable[[], None] | None = None
    map_final: Callable[[], Iterable[Pair]] | None = None
    reduce_init: Callable[[], None] | None = None
    reduce_final: Callable[[], Iterable[Pair]] | None = None
    repeat_while: Callable[[dict[str, dict[str, int]]], bool] | None = None
    max_rounds: int | None = None

    def __post_init__(self) -> None:
        if self.max_rounds is None:
            self.max_rounds = 1 if self.repeat_while is None else DEFAULT_MAX_ROUNDS
        elif self.repeat_while is None:
            raise ValueError("Step(max_rounds=...) needs repeat_while, the test that ends the rounds")
        if self.max_rounds < 1:
            raise ValueError(f"Step(max_rounds={self.max_rounds}): a step runs at least once")

    @property
    def has_reduce(self) -> bool:
        """Whether the step reduces (``reduce`` or ``aggregate``); else it is map-only."""
        return self.reduce is not None or self.aggregate is not None


class StepJob(Job):
    """One step of a multi-step job, seen as a plain job by the task runner."""

    def __init__(self, base: Job, step: Step):
        self.base = base
        self.step = step
        self.options = base.options  # type: ignore[misc]
        self.counters = base.counters
        self.aggregate = step.aggregate  # type: ignore[misc]

    def map(self, key: Any, value: Any) -> Iterable[Pair]:
        return self.step.map(key, value) if self.step.map else ((key, value),)

    def combine(self, key: Any, values: Iterator[Any]) -> Iterable[Pair]:
        return self.step.combine(key, values)

    def reduce(self, key: Any, values: Iterator[Any]) -> Iterable[Pair]:
        return self.step.reduce(key, values)

    def partition(self, key: Any, num_reducers: int) -> int:
        return self.base.partition(key, num_reducers)

    def map_init(self) -> None:
        if self.step.map_init:
            self.step.map_init()

    def map_final(self) -> Iterable[Pair]:
        return self.step.map_final() if self.step.map_final else ()

    def reduce_init(self) -> None:
        if self.step.reduce_init:
            self.step.reduce_init()

    def reduce_final(self) -> Iterable[Pair]:
        return self.step.reduce_final() if self.step.reduce_final else ()

    # the base class answers these from the class; a step answers from its parts
    def has_reducer(self) -> bool:  # type: ignore[override]
        return self.step.has_reduce

    def has_combiner(self) -> bool:  # type: ignore[override]
        return self.step.combine is not None

    def has_map_batch(self) -> bool:  # type: ignore[override]
        return False

    def has_reduce_batch(self) -> bool:  # type: ignore[override]
        return False

    def has_custom_partition(self) -> bool:  # type: ignore[override]
        return self.base.has_custom_partition()


def job_for_task(job_class: type[Job], options: dict[str, Any], step: int | None) -> Job:
    """The job instance a task runs: the job itself, or one of its steps.

    Step index ``len(steps)`` is the map-only pass that copies the rounds of a repeated
    last step into the job's output format (a round cannot know it is the last).
    """
    job = job_class(options)
    if step is None:
        return job
    steps = list(job.steps() or ())
    return StepJob(job, steps[step] if step < len(steps) else Step())


def load_job_class(path: str | Path, name: str | None = None) -> type[Job]:
    """Import a job script and return its Job subclass (the one named ``name`` if given)."""
    script = Path(path)
    if not script.is_file():
        raise JobScriptError(f"job script not found: {script}")
    module = _import_script(script)
    candidates = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Job) and obj is not Job and obj.__module__ == module.__name__
    ]
    if name is not None:
        chosen = [c for c in candidates if c.__name__ == name]
        if not chosen:
            found = ", ".join(c.__name__ for c in candidates) or "none"
            raise JobScriptError(f"{script}: no Job class named {name!r} (found: {found})")
        return chosen[0]
    leaves = [c for c in candidates if not any(o is not c and issubclass(o, c) for o in candidates)]
    if not leaves:
        raise JobScriptError(f"{script}: defines no subclass of pymr.Job")
    if len(leaves) > 1:
        names = ", ".join(sorted(c.__name__ for c in leaves))
        raise JobScriptError(f"{script}: defines several jobs ({names}); choose one with --job NAME")
    return leaves[0]


def _import_script(script: Path):
    import cloudpickle

    module_name = "pymr_job_" + "".join(c if c.isalnum() else "_" for c in script.stem)
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise JobScriptError(f"{script}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(script.resolve().parent)
    if folder not in sys.path:  # as ``python job.py`` does: modules beside the script import
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise JobScriptError(f"{exc.filename}, line {exc.lineno}: SyntaxError: {exc.msg}") from None
    except BaseException as exc:
        del sys.modules[module_name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)).rstrip()
        if isinstance(exc, ModuleNotFoundError):
            detail += "\n(modules beside the script are found; name others with --py-files PATH, or install them)"
        raise JobScriptError(f"{script}: failed to import:\n{detail}") from None
    # The worker has no copy of the script: ship its functions and classes by value.
    cloudpickle.register_pickle_by_value(module)
    return module
