"""Counts lines, pausing --pause seconds every --every lines: a map that reads its split slowly."""
import time

import pymr


class SlowLines(pymr.Job):
    options = [pymr.Option("pause", float, default=0.1), pymr.Option("every", int, default=10_000)]

    def map_init(self):
        self.seen = 0

    def map(self, key, line):
        self.seen += 1
        if self.seen % self.options.every == 0:
            time.sleep(self.options.pause)
        yield "lines", 1

    def reduce(self, key, values):
        yield key, sum(values)
