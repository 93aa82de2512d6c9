"""Word count on the fast paths: a vectorized ``map_batch`` and the built-in ``sum``.

The same words and counts as ``wordcount.py`` (whitespace-separated tokens, lower-cased,
punctuation stripped from both ends), but each map call gets a block of lines as an
Arrow array and tokenizes it in C, and ``aggregate = "sum"`` adds the counts up in C on
both sides of the shuffle. Two details of Arrow's text functions differ from Python's:
whitespace is Unicode's White_Space (``str.split()`` also splits at the control
characters 0x1C-0x1F), and lower-casing maps each character to one (``"İ".lower()``
is two characters in Python, ``"i"`` in Arrow).

    pymr submit jobs/wordcount_fast.py sample_data/books/ -o out/wc-fast --reducers 4
"""

import string

import pyarrow as pa
import pyarrow.compute as pc

import pymr

PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u2014"


class WordCountFast(pymr.Job):
    aggregate = "sum"

    def map_batch(self, batch):
        tokens = pc.list_flatten(pc.utf8_split_whitespace(batch.column("line")))
        words = pc.utf8_lower(pc.utf8_trim(tokens, characters=PUNCTUATION))
        words = words.filter(pc.not_equal(pc.binary_length(words), 0))
        return pa.table({"key": words, "value": pa.repeat(1, len(words)).cast(pa.int64())})


if __name__ == "__main__":
    WordCountFast.main()
