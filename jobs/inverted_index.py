"""Inverted index: for every word, the sorted list of input files it occurs in.

Words are whitespace-separated tokens, as in ``wordcount.py`` (``str.split()``). The
combiner drops repeated ``(word, file)`` pairs on the map side. Output:
``word<TAB>["/path/a.txt", "/path/b.txt"]``, a JSON list of the files' absolute paths.

    pymr submit jobs/inverted_index.py sample_data/books/ -o out/index --reducers 4
"""

import pymr


class InvertedIndex(pymr.Job):
    def map(self, key, line):
        path, _offset = key
        for word in set(line.split()):
            yield word, path

    def combine(self, word, paths):
        for path in sorted(set(paths)):
            yield word, path

    def reduce(self, word, paths):
        yield word, sorted(set(paths))


if __name__ == "__main__":
    InvertedIndex.main()
