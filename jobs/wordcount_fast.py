"""Word count on the fast paths: a vectorized ``map_batch`` and the built-in ``sum``.

The same counts as ``wordcount.py``, but each map call gets a block of lines as an
Arrow array and splits it in C, and ``aggregate = "sum"`` adds the counts up in C on
both sides of the shuffle. Arrow's ``utf8_split_whitespace`` cuts at exactly the
characters ``str.split()`` cuts at (the ASCII separators 0x1C-0x1F and every Unicode
space included; a test checks each one), so both jobs give the same counts.

    pymr submit jobs/wordcount_fast.py sample_data/books/ -o out/wc-fast --reducers 4
"""

import pyarrow as pa
import pyarrow.compute as pc

import pymr


class WordCountFast(pymr.Job):
    aggregate = "sum"

    def map_batch(self, batch):
        words = pc.list_flatten(pc.utf8_split_whitespace(batch.column("line")))
        words = words.filter(pc.greater(pc.binary_length(words), 0))
        return pa.table({"key": words, "value": pa.repeat(1, len(words)).cast(pa.int64())})


if __name__ == "__main__":
    WordCountFast.main()
