"""Records when and where each task ran, to show tasks run at the same time in different processes."""
import os
import time

import pymr


class Spans(pymr.Job):
    options = [pymr.Option("sleep", float, default=1.0)]

    def map_init(self):
        self.start = time.time()
        time.sleep(self.options.sleep)

    def map(self, key, line):
        return ()

    def map_final(self):
        yield ("map", self.start), [os.getpid(), self.start, time.time()]

    def reduce_init(self):
        self.start = time.time()
        time.sleep(self.options.sleep)

    def reduce(self, key, values):
        for value in values:
            yield key, value

    def reduce_final(self):
        yield ("reduce", self.start), [os.getpid(), self.start, time.time()]
