"""A partition's sorted pairs grouped by key, a merged window at a time.

A reduce (and the combine over a map task's merged spills) sees each key once, with an
iterator over its values. Grouping row by row in Python (``itertools.groupby`` and a
generator per key) cost more than the user's own reduce. Here Arrow finds where the key
changes over a whole window in C, the window's values become one Python list, and each
key's values are a slice of it: a caller runs its function over a block of keys with
``map``, driven from C (``apply_per_key``).

The last key of a window may go on in the windows after it. It is handed over alone,
and its values stream from those windows, so a key with more values than fit in memory
still reduces in bounded memory.
"""

from __future__ import annotations

import inspect
import pickle
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from operator import itemgetter
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import keys as keyenc

Block = tuple[list[Any], Iterable[Iterator[Any]]]  # keys, and one iterator of values per key
PAIRS_PER_CHUNK = 65536  # output pairs handed to a writer at a time
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_NO_PAIR = object()


def key_groups(windows: Iterable[pa.Table], key_kind: str, value_kind: str) -> Iterator[Block]:
    """Blocks of ``(keys, value iterators)`` over sorted ``key``/``value`` windows whose
    columns are of the kinds given (see ``shuffle``), in key order.

    A key's values must be read, or left, before the next block is asked for: the last
    key of a window is a block of its own whose values may stream from later windows.
    """
    source = _Windows(windows)
    for window in source:
        raw = window.column("key").combine_chunks()
        values = _python_values(window.column("value"), value_kind)
        starts = _group_starts(raw)
        last = starts[-1]
        if last:
            keys = _python_keys(raw.take(pa.array(starts[:-1], pa.int64())), key_kind)
            yield keys, map(iter, map(values.__getitem__, map(slice, starts, starts[1:])))
        last_raw = raw[last].as_py()
        tail = _values_from(values[last:], last_raw, source, value_kind)
        yield _python_keys([last_raw], key_kind), [tail]
        deque(tail, maxlen=0)  # values the caller left unread: the next key starts after them


def single_groups(groups: Iterable[tuple[Any, Iterator[Any]]]) -> Iterator[Block]:
    """Blocks of one key each, from ``(key, values)`` pairs (``shuffle.group_pairs``)."""
    for key, values in groups:
        yield [key], [values]


def apply_per_key(function: Callable[[Any, Iterator[Any]], Iterable[Any]], blocks: Iterable[Block],
                  who: str) -> Iterator[tuple[list[Any], list[Any]]]:
    """``function(key, values)`` for every key, its pairs as ``(keys, values)`` lists of
    at most ``PAIRS_PER_CHUNK``; a result of ``None`` (a forgotten ``yield``) is an error."""
    for keys, values in blocks:
        pairs = chain.from_iterable(map(function, keys, values))
        try:
            while chunk := list(islice(pairs, PAIRS_PER_CHUNK)):
                yield columns_of(chunk, who)
        except TypeError as exc:
            if exc.__traceback__ is not None and exc.__traceback__.tb_next is None and str(exc) == _NONE_ITERATED:
                raise returned_none(who) from None  # chain.from_iterable, right here, was given None
            if str(exc).startswith(f"{who} must yield"):
                raise exc.with_traceback(definition_traceback(function))
            raise


_NONE_ITERATED = "'NoneType' object is not iterable"


def returned_none(who: str) -> TypeError:
    """The error for a map, combine or reduce that returned None instead of pairs."""
    kind = who.rsplit(".", 1)[-1]
    kind = kind if kind in ("map", "combine", "reduce") else "function"
    return TypeError(f"{who} returned None; a {kind} must yield (key, value) pairs or return an iterable of them")


def definition_traceback(function: Callable) -> TracebackType | None:
    """A traceback entry at the first line of a user's generator function, so an error
    about what it yielded points at the user's code (the generator that yielded it is
    gone by the time a block of pairs is checked). Nothing of the function runs."""
    if not inspect.isgeneratorfunction(function):
        return None
    try:
        frame = function(None, iter(())).gi_frame
    except TypeError:  # another signature
        return None
    return TracebackType(None, frame, 0, frame.f_lineno)


def yielded_at(generator: Any) -> TracebackType | None:
    """A traceback entry at the ``yield`` where a suspended user generator stopped."""
    frame = getattr(generator, "gi_frame", None)
    return None if frame is None else TracebackType(None, frame, max(frame.f_lasti, 0), frame.f_lineno)


def function_name(function: Callable) -> str:
    """How errors name a user's function: ``WordCount.reduce``."""
    return getattr(function, "__qualname__", repr(function))


def columns_of(pairs: Sequence[Any], who: str) -> tuple[list[Any], list[Any]]:
    """The keys and the values of ``pairs``, each of which must be a ``(key, value)``
    tuple or other sequence of two (not a str or bytes of length 2)."""
    if not set(map(type, pairs)) <= {tuple, list} or set(map(len, pairs)) != {2}:
        bad = next((p for p in pairs if not _is_pair(p)), _NO_PAIR)
        if bad is not _NO_PAIR:
            raise TypeError(f"{who} must yield (key, value) pairs; it yielded {bad!r}")
    return list(map(_FIRST, pairs)), list(map(_SECOND, pairs))


def unpacking_error(exc: BaseException, who: str) -> TypeError | None:
    """A clear error if ``exc`` is pymr's own loop failing to unpack what ``who`` yielded
    as a ``(key, value)`` pair; None if it came from anywhere else (the user's code)."""
    if not isinstance(exc, (TypeError, ValueError)) or exc.__traceback__ is None:
        return None
    frame = exc.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    raised_by_pymr = frame.tb_frame.f_globals.get("__name__", "").startswith("pymr.")
    if not raised_by_pymr or not _UNPACKING.search(str(exc)):
        return None
    return TypeError(f"{who} must yield (key, value) pairs; it yielded something else ({exc})")


_UNPACKING = re.compile(r"values to unpack|cannot unpack non-iterable")


def _is_pair(item: Any) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, (str, bytes, bytearray)) and len(item) == 2


def key_changes(keys: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """For each row after the first of sorted ``keys``: whether its key differs from the row before."""
    return pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))


def _group_starts(raw: pa.Array) -> list[int]:
    """Where each run of equal keys begins: ``[0, ...]``."""
    if len(raw) == 1:
        return [0]
    return [0, *pc.add(pc.indices_nonzero(key_changes(raw)), 1).to_pylist()]


def _python_keys(raw: pa.Array | list[Any], key_kind: str) -> list[Any]:
    keys = raw if isinstance(raw, list) else raw.to_pylist()
    return list(map(keyenc.decode_key, keys)) if key_kind == "enc" else keys


def _python_values(column: pa.Array | pa.ChunkedArray, value_kind: str) -> list[Any]:
    values = column.to_pylist()
    return list(map(pickle.loads, values)) if value_kind == "pickle" else values


def _values_from(first: list[Any], raw_key: Any, source: _Windows, value_kind: str) -> Iterator[Any]:
    """``first``, then the values of ``raw_key`` at the head of the windows that follow;
    the rest of the window where the key changes goes back to ``source``."""
    yield from first
    for window in source:
        keys = window.column("key")
        if keys[0].as_py() != raw_key:
            source.push(window)
            return
        differs = pc.index(pc.not_equal(keys, pa.scalar(raw_key, keys.type)), True).as_py()
        upto = window.num_rows if differs < 0 else differs
        yield from _python_values(window.column("value").slice(0, upto), value_kind)
        if upto < window.num_rows:
            source.push(window.slice(upto))
            return


class _Windows:
    """The windows in order, non-empty ones only, with room to put one back."""

    def __init__(self, windows: Iterable[pa.Table]):
        self._windows = iter(windows)
        self._back: pa.Table | None = None

    def __iter__(self) -> _Windows:
        return self

    def __next__(self) -> pa.Table:
        if self._back is not None:
            window, self._back = self._back, None
            return window
        while True:
            window = next(self._windows)
            if window.num_rows:
                return window

    def push(self, window: pa.Table) -> None:
        self._back = window
