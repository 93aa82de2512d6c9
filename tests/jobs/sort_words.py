"""Every word with the files' line offsets it appears at, totally ordered across part files."""
import pymr


class SortWords(pymr.Job):
    total_order = True
    reducers = 4

    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def reduce(self, word, ones):
        yield word, sum(ones)
