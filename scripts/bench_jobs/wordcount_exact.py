"""Benchmark word count: exact ``str.split()`` tokens, no lower-casing, no stripping.

The per-record API as a user would write it: map yields ``(word, 1)``, combine and
reduce sum. Its output (``word<TAB>count``) must equal ``collections.Counter`` over
``str.split()`` of the whole input, which ``scripts/benchmark.py`` checks.

    pymr submit scripts/bench_jobs/wordcount_exact.py CORPUS -o OUT --workers 2
"""

import pymr


class ExactWordCount(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def combine(self, word, counts):
        yield word, sum(counts)

    def reduce(self, word, counts):
        yield word, sum(counts)


if __name__ == "__main__":
    ExactWordCount.main()
