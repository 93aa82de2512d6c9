"""Total-order output: a range partitioner built from a sample of the map output keys.

As Hadoop's ``InputSampler`` with ``TotalOrderPartitioner``: before the job runs, the
submitting process reads the first records of up to ``SAMPLE_SPLITS`` splits spread
over the input, runs the job's ``map`` on them, and sorts the keys it gets. The
``R - 1`` cut points at evenly spaced ranks split the key space so each reduce task
gets about as many keys; reducer ``r`` takes the keys in ``(cut[r-1], cut[r]]``. Since
every part file is sorted and the ranges are in order, the part files read in order
are one sorted output. Comparisons use ``keys.encode_key``, so any key type works.

The sample is read where ``pymr submit`` runs, so in cluster mode the input must be
visible there too. A skewed key distribution gives uneven parts, never wrong output.
"""

from __future__ import annotations

import bisect
from typing import Any

from . import keys
from .inputs import Split, input_format

SAMPLE_SPLITS = 20
RECORDS_PER_SPLIT = 1000


def sample_cuts(job: Any, splits: list[Split], num_reducers: int) -> list[bytes]:
    """The ``num_reducers - 1`` encoded cut points from a sample of ``job``'s map output."""
    if num_reducers < 2 or not splits:
        return []
    step = max(1, len(splits) // SAMPLE_SPLITS)
    sampled: list[bytes] = []
    job.map_init()
    for split in splits[::step][:SAMPLE_SPLITS]:
        records = input_format(split.format).records(split, {"skip_bad_records": True}, lambda *_: None)
        for count, (key, value) in enumerate(records):
            if count >= RECORDS_PER_SPLIT:
                break
            sampled.extend(keys.encode_key(k) for k, _ in job.map(key, value) or ())
    sampled.sort()
    if not sampled:
        return []
    return [sampled[len(sampled) * r // num_reducers] for r in range(1, num_reducers)]


class RangePartitioner:
    """``partition(key, R)`` by the sampled cut points (see the module docstring)."""

    def __init__(self, cuts: list[bytes]):
        self.cuts = cuts

    def __call__(self, key: Any, num_partitions: int) -> int:
        return bisect.bisect_left(self.cuts, keys.encode_key(key))

    def partition_array(self, column: Any) -> Any:
        """The partition of every key in an Arrow column of str, computed in C; None for
        other columns. A str key's encoded form is a type tag and its UTF-8 bytes, so
        its partition is the number of cuts of lower types plus the number of str cuts
        whose UTF-8 bytes are below its own, and Arrow compares strings by their bytes."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if column.type not in (pa.string(), pa.large_string()):
            return None
        try:
            str_cuts = [cut[1:].decode("utf-8") for cut in self.cuts if cut[:1] == keys.STR]
        except UnicodeDecodeError:  # a cut holding a lone surrogate
            return None
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        lower = sum(1 for cut in self.cuts if cut[:1] < keys.STR)
        parts = pa.nulls(len(column), pa.int32()).fill_null(lower)
        for cut in str_cuts:
            parts = pc.add(parts, pc.greater(column, pa.scalar(cut, column.type)).cast(pa.int32()))
        return parts
