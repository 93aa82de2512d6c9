"""Word count: how often each word occurs in the input.

Words are whitespace-separated tokens (``str.split()``), lower-cased, with
punctuation stripped from both ends; a token that is all punctuation is dropped.
A combiner sums counts on the map side, so one pair per distinct word leaves each map
task. Output: ``word<TAB>count``, sorted by word within each part file.

    pymr submit jobs/wordcount.py sample_data/books/ -o out/wordcount --reducers 4
    python jobs/wordcount.py sample_data/books/ -o out/wordcount
"""

import string

import pymr

PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u2014"


def words(line: str):
    for token in line.split():
        word = token.strip(PUNCTUATION).lower()
        if word:
            yield word


class WordCount(pymr.Job):
    def map(self, key, line):
        for word in words(line):
            yield word, 1

    def combine(self, word, counts):
        yield word, sum(counts)

    def reduce(self, word, counts):
        yield word, sum(counts)


if __name__ == "__main__":
    WordCount.main()
