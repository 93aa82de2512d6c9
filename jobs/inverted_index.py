"""Inverted index: for every word, the sorted list of input files it occurs in.

Words are tokenized as in ``wordcount.py`` (``str.split()``, lower-cased, punctuation
stripped). The combiner drops repeated ``(word, file)`` pairs on the map side. Output:
``word<TAB>["/path/a.txt", "/path/b.txt"]`` (a JSON list of absolute paths).

    pymr submit jobs/inverted_index.py sample_data/books/ -o out/index --reducers 4
"""

import string

import pymr

PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u2014"


def words(line: str):
    for token in line.split():
        word = token.strip(PUNCTUATION).lower()
        if word:
            yield word


class InvertedIndex(pymr.Job):
    def map(self, key, line):
        path, _offset = key
        for word in set(words(line)):
            yield word, path

    def combine(self, word, paths):
        for path in sorted(set(paths)):
            yield word, path

    def reduce(self, word, paths):
        yield word, sorted(set(paths))


if __name__ == "__main__":
    InvertedIndex.main()
