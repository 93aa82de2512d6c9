"""Counts whitespace-separated words; each map task first sleeps --delay seconds.

With --straggle-dir, the first attempt of the task that reads offset 0 of a file named
--straggler sleeps --straggle seconds instead (a marker file remembers the attempt).
"""
import os
import time

import pymr


class SlowWords(pymr.Job):
    options = [
        pymr.Option("delay", float, default=0.0),
        pymr.Option("straggle-dir", str, default=None),
        pymr.Option("straggler", str, default=""),
        pymr.Option("straggle", float, default=60.0),
    ]

    def map_init(self):
        time.sleep(self.options.delay)
        self.first = True

    def map(self, key, line):
        path, offset = key
        if self.first and self.options.straggle_dir and os.path.basename(path) == self.options.straggler:
            marker = os.path.join(self.options.straggle_dir, "straggled")
            if offset == 0 and not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))  # the test checks this process is killed
                time.sleep(self.options.straggle)
        self.first = False
        for word in line.split():
            yield word, 1

    def combine(self, word, counts):
        yield word, sum(counts)

    def reduce(self, word, counts):
        yield word, sum(counts)
