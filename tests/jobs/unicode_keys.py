"""Keys that are non-ASCII, tuples, ints and floats mixed: each line's first character, its length, its words."""
import pymr


class MixedKeys(pymr.Job):
    reducers = 3

    def map(self, key, line):
        if line:
            yield line[0], 1
            yield ("len", len(line)), 1
            yield len(line.split()), 1.5
            yield None, 1

    def reduce(self, key, values):
        yield key, sum(values)
