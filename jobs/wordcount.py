"""Word count: how often each word occurs in the input.

A word is a whitespace-separated token, exactly as ``str.split()`` cuts a line (case and
punctuation are kept: ``The`` and ``the,`` are two words). A combiner sums counts on the
map side, so one pair per distinct word leaves each map task. Output: ``word<TAB>count``,
sorted by word within each part file.

    pymr submit jobs/wordcount.py sample_data/books/ -o out/wordcount --reducers 4
    python jobs/wordcount.py sample_data/books/ -o out/wordcount
"""

import pymr


class WordCount(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def combine(self, word, counts):
        yield word, sum(counts)

    def reduce(self, word, counts):
        yield word, sum(counts)


if __name__ == "__main__":
    WordCount.main()
