"""Benchmark word count on pymr's fast paths: ``map_batch`` tokenizes a block of lines in
Arrow, ``aggregate = "sum"`` adds up in C. Exact ``str.split()`` tokens for text without
the ASCII separators 0x1C-0x1F (Arrow's whitespace is Unicode's White_Space).

    pymr submit scripts/bench_jobs/wordcount_exact_fast.py CORPUS -o OUT --workers 2
"""

import pyarrow as pa
import pyarrow.compute as pc

import pymr


class ExactWordCountFast(pymr.Job):
    aggregate = "sum"

    def map_batch(self, batch):
        words = pc.list_flatten(pc.utf8_split_whitespace(batch.column("line")))
        words = words.filter(pc.greater(pc.binary_length(words), 0))
        return pa.table({"key": words, "value": pa.repeat(1, len(words)).cast(pa.int64())})


if __name__ == "__main__":
    ExactWordCountFast.main()
