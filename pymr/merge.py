"""Merging sorted runs in Arrow, a window at a time.

Each run is a stream of ``key``/``value`` record batches sorted by key, all runs with
the same column types (so Arrow's order is pymr's key order: str by UTF-8 bytes, int
by value, encoded keys by their bytes). A window takes, from every run, the rows read
so far that sort at or before the *bound*, in the order of (key, run): the smallest
last-read (key, run index) among the runs not yet exhausted. No row still unread can
sort before the bound, so the windows, each sorted stably with its rows concatenated in
run order, come out in order, and equal keys come run after run, each run's in its own
order (as ``heapq.merge`` gives them). A run is read ahead only when all its pending rows have
gone into windows (or it holds fewer than ``window_rows``), so memory stays at about
``window_rows`` rows per run, and each row is sorted once: Arrow does the comparisons
in C instead of a Python heap comparing row by row. Equal keys may straddle two
windows (they come out adjacent); readers group them across windows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc


def merge_windows(runs: list[Iterator[pa.RecordBatch]], window_rows: int, sort: bool = True,
                  unique_keys: bool = False) -> Iterator[pa.Table]:
    """Sorted ``key``/``value`` tables in key order from sorted batch streams.

    ``sort=False`` leaves each window's rows unsorted (a caller that aggregates a window
    first sorts the smaller result itself). ``unique_keys``: no run holds a key twice
    (runs of partial aggregates), so every run gives its rows equal to the bound at
    once and no key straddles two windows (the order among runs does not matter)."""
    if len(runs) == 1:
        for batch in runs[0]:
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
        return
    pending: list[pa.Table | None] = [None] * len(runs)
    done = [False] * len(runs)
    while True:
        for i, stream in enumerate(runs):
            pending[i], done[i] = _read_ahead(stream, pending[i], done[i], window_rows)
        bounds = [(table.column("key")[-1].as_py(), i) for i, table in enumerate(pending)
                  if not done[i] and table is not None]
        bound_key, bound_run = min(bounds) if bounds else (None, len(runs))
        parts = []
        for i, table in enumerate(pending):
            if table is None:
                continue
            if i == bound_run or not bounds:
                upto = table.num_rows
            else:  # a later run's rows equal to the bound wait: the bound's run may hold more of them
                below = pc.less_equal if i < bound_run or unique_keys else pc.less
                upto = pc.sum(below(table.column("key"), pa.scalar(bound_key, table.schema.field("key").type)))
                upto = upto.as_py() or 0
            if upto:
                parts.append(table.slice(0, upto))
            pending[i] = table.slice(upto) if upto < table.num_rows else None
        if not parts:
            return  # the bound's run always gives its rows: no parts means nothing is left
        window = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        yield window.sort_by([("key", "ascending")]) if sort and len(parts) > 1 else window


def _read_ahead(stream: Iterator[pa.RecordBatch], pending: pa.Table | None, done: bool,
                window_rows: int) -> tuple[pa.Table | None, bool]:
    """Read batches until the run has ``window_rows`` pending rows (at least one batch)."""
    tables = [pending] if pending is not None else []
    rows = pending.num_rows if pending is not None else 0
    while not done and rows < window_rows:
        batch = next(stream, None)
        if batch is None:
            done = True
        elif batch.num_rows:
            tables.append(pa.Table.from_batches([batch]))
            rows += batch.num_rows
    if not tables:
        return None, done
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), done
