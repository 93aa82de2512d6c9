"""Word count whose reduce raises on the word FAIL (a user's bug), which only the last
reducer sees: the other reduce tasks succeed and are committed before the job fails."""
import zlib

import pymr


class FailingReduce(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def partition(self, key, num_reducers):
        if key == "FAIL" or num_reducers == 1:
            return num_reducers - 1
        return zlib.crc32(key.encode()) % (num_reducers - 1)

    def reduce(self, key, values):
        if key == "FAIL":
            raise ValueError("reduce cannot handle FAIL")
        yield key, sum(values)
