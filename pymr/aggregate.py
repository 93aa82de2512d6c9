"""Built-in associative reducers, run over Arrow columns in C on both sides of the shuffle.

A job names one instead of writing ``combine`` and ``reduce``::

    class WordCount(pymr.Job):
        aggregate = "sum"

    ``sum``    the sum of a key's values         (map side: sum; reduce side: sum)
    ``count``  how many values a key has          (map side: count; reduce side: sum)
    ``min``    the smallest value                  (min; min)
    ``max``    the largest value                   (max; max)

Values must be numbers (``min``/``max`` also take strings). When they are (the run's
value column is typed ``int64``/``float64``/``large_string``), a spill groups its pairs
with Arrow's hash aggregation before sorting, and merging sorted runs (on the map side,
and in the reducer) is done window by window in Arrow (``merge_aggregate``): each window
holds the rows of every run up to the smallest "last key" among the runs' current
batches, so memory stays at about one batch per run. Otherwise (mixed or pickled
values, keys of different kinds) the same operation runs in Python over the sorted,
streamed merge. Results are identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

# how each aggregate is computed on the map side and on the reduce side (a count's partial counts add up)
SIDES = {"sum": ("sum", "sum"), "count": ("count", "sum"), "min": ("min", "min"), "max": ("max", "max")}
WINDOW_ROWS = 65536  # rows read ahead per run before a window is aggregated
_NUMERIC = (pa.int64(), pa.float64())


def arrow_ok(name: str, value_type: pa.DataType, side: str) -> bool:
    """Whether Arrow can run this aggregate over a value column of this type."""
    if side == "map" and name == "count":
        return True
    if name in ("min", "max"):
        return value_type in _NUMERIC or value_type == pa.large_string()
    return value_type in _NUMERIC


def aggregate_table(table: pa.Table, name: str, side: str) -> pa.Table:
    """Group ``key``/``value`` columns by key and aggregate; returns ``key``, ``value``."""
    how = SIDES[name][0 if side == "map" else 1]
    key_type = table.schema.field("key").type
    narrow = _NARROW.get(key_type)
    if narrow is not None and table.num_rows:  # Arrow groups 32-bit-offset strings ~3x faster
        table = table.set_column(0, "key", table.column("key").cast(narrow))
    counted = _by_value_counts(table, how)
    if counted is not None:
        return pa.table({"key": counted.column("key").cast(key_type), "value": counted.column("value")})
    grouped = table.group_by("key", use_threads=False).aggregate([("value", how)])
    value = grouped.column(f"value_{how}")
    if how == "count":
        value = value.cast(pa.int64())
    return pa.table({"key": grouped.column("key").cast(key_type), "value": value})


_NARROW = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}


def _by_value_counts(table: pa.Table, how: str) -> pa.Table | None:
    """A count, or an aggregate of a constant int column (word count's ones), from
    ``value_counts`` of the keys: about 3x faster than a hash group-by. None otherwise."""
    import pyarrow.compute as pc

    values = table.column("value")
    if not table.num_rows or values.null_count:
        return None
    constant = None
    if how != "count":
        if not pa.types.is_integer(values.type):
            return None
        low, high = (scalar.as_py() for scalar in pc.min_max(values).values())
        if low != high:
            return None
        constant = low
    counts = pc.value_counts(table.column("key"))
    keys, times = counts.field("values"), counts.field("counts").cast(pa.int64())
    if how == "count":
        value = times
    elif how == "sum":
        value = pc.multiply_checked(times, pa.scalar(constant, pa.int64()))
    else:  # min or max of one value
        value = pa.array([constant] * len(keys), values.type)
    return pa.table({"key": keys, "value": value})


def python_aggregate(name: str, side: str, key: Any, values: Iterator[Any]) -> Iterable[tuple[Any, Any]]:
    """The same aggregate in Python, for values Arrow cannot hold in one typed column."""
    how = SIDES[name][0 if side == "map" else 1]
    if how == "sum":
        yield key, sum(values)
    elif how == "count":
        yield key, sum(1 for _ in values)
    elif how == "min":
        yield key, min(values)
    else:
        yield key, max(values)


def merge_aggregate(runs: list[Iterator[pa.RecordBatch]], name: str) -> Iterator[pa.Table]:
    """Merge sorted ``key``/``value`` batch streams (partial aggregates, keys of one kind)
    into aggregated tables in key order, one window at a time (see ``pymr.merge``)."""
    from .merge import merge_windows

    if len(runs) == 1:  # one run is already aggregated and sorted
        for batch in runs[0]:
            yield pa.Table.from_batches([batch])
        return
    # big windows (each aggregation has a fixed cost), and each key in one window only
    for window in merge_windows(runs, WINDOW_ROWS, sort=False, unique_keys=True):
        yield aggregate_table(window, name, "reduce").sort_by([("key", "ascending")])
