"""Benchmark TeraSort: order 100-byte records by their first 10 bytes.

Input lines are 99 printable bytes plus a newline: a 10-byte key and 89 bytes of
payload (see ``scripts/make_corpus.py``). Map emits ``(key, rest-of-record)``; the
identity reduce writes ``key<TAB>rest``. ``total_order`` range-partitions by sampled
keys, so the part files read in order are one sorted output with any number of
reducers.

    pymr submit scripts/bench_jobs/terasort.py RECORDS -o OUT --workers 2
"""

import pymr


class TeraSort(pymr.Job):
    total_order = True

    def map(self, key, line):
        yield line[:10], line[10:]

    def reduce(self, key, payloads):
        for payload in payloads:
            yield key, payload


if __name__ == "__main__":
    TeraSort.main()
