"""Word count without stop words; the stop words come in side files (a file, and a folder of them)."""
import os

import pymr


class StopWords(pymr.Job):
    def map_init(self):
        self.stop = set()
        for name, path in self.files.items():
            paths = [os.path.join(path, n) for n in sorted(os.listdir(path))] if os.path.isdir(path) else [path]
            for p in paths:
                with open(p) as f:
                    self.stop.update(f.read().split())

    def map(self, key, line):
        for word in line.split():
            if word not in self.stop:
                yield word, 1

    def reduce(self, word, counts):
        yield word, sum(counts)
