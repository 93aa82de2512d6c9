"""Benchmark TeraSort: order 100-byte records by their first 10 bytes.

Input lines are 99 printable bytes plus a newline: a 10-byte key and 89 bytes of
payload (see ``scripts/make_corpus.py``). Map emits ``(key, rest-of-record)``; the
identity reduce writes ``key<TAB>rest``. pymr has no range partitioner yet, so a
totally ordered output needs a single reducer: ``reducers = 1``. With hash
partitioning and more reducers each part file would be sorted, but not the whole.

    pymr submit scripts/bench_jobs/terasort.py RECORDS -o OUT --workers 2
"""

import pymr


class TeraSort(pymr.Job):
    reducers = 1

    def map(self, key, line):
        yield line[:10], line[10:]

    def reduce(self, key, payloads):
        for payload in payloads:
            yield key, payload


if __name__ == "__main__":
    TeraSort.main()
