"""Lines per input file, keyed by the file's name (a str: undecodable bytes of a name as surrogates)."""
import os

import pymr


class LinesPerFile(pymr.Job):
    def map(self, key, line):
        yield os.path.basename(key[0]), 1

    def reduce(self, name, ones):
        yield name, sum(ones)
