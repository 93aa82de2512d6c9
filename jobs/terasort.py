"""TeraSort: a total-order sort of 100-byte records by their first 10 bytes.

Input: one record per line, as ``scripts/teragen.py`` writes them (a 10-byte key of
printable ASCII, then 89 bytes of payload, then ``\\n``; a ``\\r\\n`` ending, as
gensort's ASCII mode writes, is read the same). Map splits each record into its key
and the rest (``map_batch`` does it for a block of records at once, in Arrow, and
``reduce_batch`` joins them again a sorted block at a time);
``total_order`` range-partitions the keys by cut points sampled from the
input (as Hadoop's TeraSort does), so reduce task ``r`` gets a key range below task
``r + 1``'s and each part file is sorted: the part files read in order are the whole
input sorted by key. Records with equal keys keep no particular order among
themselves.

Output: the records themselves, one per line ending in ``\\n`` (in text output a pair
whose value is None is written as the key alone), in ``part-00000 ...`` with 4
reducers by default. ``scripts/teravalidate.py`` checks the order across part files,
the record count and a checksum against the input.

    python scripts/teragen.py /tmp/records.txt --records 1000000
    pymr submit jobs/terasort.py /tmp/records.txt -o out/sorted --reducers 8
    python scripts/teravalidate.py out/sorted --input /tmp/records.txt
"""

import pyarrow as pa
import pyarrow.compute as pc

import pymr

KEY_CHARS = 10


class TeraSort(pymr.Job):
    total_order = True
    reducers = 4

    def map(self, _, record):
        yield record[:KEY_CHARS], record[KEY_CHARS:]

    def map_batch(self, batch):
        """The same split for a block of records at once, in Arrow (``map`` is what the
        sampler for the range partitioner calls, and what this does per record)."""
        records = batch.column("line")
        return pa.table({"key": pc.utf8_slice_codeunits(records, 0, KEY_CHARS),
                         "value": pc.utf8_slice_codeunits(records, KEY_CHARS)})

    def reduce(self, key, payloads):
        for payload in payloads:
            yield key + payload, None

    def reduce_batch(self, pairs):
        """The same records for a sorted block of pairs at once, in Arrow (``reduce`` runs
        if the map output is not in typed columns)."""
        keys = pairs.column("key")
        records = pc.binary_join_element_wise(keys, pairs.column("value"), pa.scalar("", keys.type))
        return pa.table({"key": records, "value": pa.nulls(len(records))})


if __name__ == "__main__":
    TeraSort.main()
