"""Counts words; each map task first sleeps --map-delay seconds; each reduce task first
leaves a marker file in --marker-dir (so a test knows reduces are running) and sleeps
--reduce-delay seconds."""
import os
import time
import uuid

import pymr


class SlowReduce(pymr.Job):
    options = [
        pymr.Option("marker-dir", str, default=None),
        pymr.Option("reduce-delay", float, default=0.0),
        pymr.Option("map-delay", float, default=0.0),
    ]

    def map_init(self):
        time.sleep(self.options.map_delay)

    def map(self, key, line):
        for word in line.split():
            yield word, 1

    def combine(self, word, counts):
        yield word, sum(counts)

    def reduce_init(self):
        if self.options.marker_dir:
            open(os.path.join(self.options.marker_dir, f"reduce-{uuid.uuid4().hex}"), "w").close()
        time.sleep(self.options.reduce_delay)

    def reduce(self, word, counts):
        yield word, sum(counts)
