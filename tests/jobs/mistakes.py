"""Jobs with the mistakes a new user makes; each should fail with an error naming it."""
import threading

import pymr

LOCK = threading.Lock()


class OpenFile(pymr.Job):
    log_file = open(__file__)  # opened where the job is submitted: cannot reach a worker

    def map(self, key, line):
        self.log_file.readline()
        yield line, 1


class GlobalLock(pymr.Job):
    def map(self, key, line):
        with LOCK:
            yield line, 1


class MapReturnsNone(pymr.Job):
    def map(self, key, line):
        [(word, 1) for word in line.split()]  # forgot the yield (or the return)

    def reduce(self, word, counts):
        yield word, sum(counts)


class ReduceReturnsNone(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def reduce(self, word, counts):
        sum(counts)


class CombineReturnsNone(ReduceReturnsNone):
    def combine(self, word, counts):
        sum(counts)

    def reduce(self, word, counts):
        yield word, sum(counts)


class MapYieldsNotAPair(pymr.Job):
    def map(self, key, line):
        yield line.split()[0]

    def reduce(self, word, counts):
        yield word, sum(counts)


class ReduceYieldsNotAPair(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def reduce(self, word, counts):
        yield word


class MissingSideFile(pymr.Job):
    files = ["no_such_words.txt"]

    def map(self, key, line):
        yield line, 1


if __name__ == "__main__":
    MissingSideFile.main()
