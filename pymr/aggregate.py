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
with Arrow's hash aggregation before sorting, and a reducer aggregates its partition
the same way when it holds at most ``ARROW_REDUCE_ROWS`` rows; otherwise (mixed or
pickled values, or a partition too big to hash in memory) the same operation runs in
Python over the sorted, streamed merge, so memory stays bounded. Results are identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

AGGREGATES = {"sum": ("sum", "sum"), "count": ("count", "sum"), "min": ("min", "min"), "max": ("max", "max")}
ARROW_REDUCE_ROWS = 4_000_000
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
    how = AGGREGATES[name][0 if side == "map" else 1]
    grouped = table.group_by("key", use_threads=False).aggregate([("value", how)])
    value = grouped.column(f"value_{how}")
    if how == "count":
        value = value.cast(pa.int64())
    return pa.table({"key": grouped.column("key"), "value": value})


def python_aggregate(name: str, side: str, key: Any, values: Iterator[Any]) -> Iterable[tuple[Any, Any]]:
    """The same aggregate in Python, for values Arrow cannot hold in one typed column."""
    how = AGGREGATES[name][0 if side == "map" else 1]
    if how == "sum":
        yield key, sum(values)
    elif how == "count":
        yield key, sum(1 for _ in values)
    elif how == "min":
        yield key, min(values)
    else:
        yield key, max(values)
