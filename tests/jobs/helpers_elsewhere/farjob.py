"""A job that imports a module from outside its folder (found here through sys.path, as a
user's PYTHONPATH would): it ships only when named with --py-files."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helpers_lib"))

import pymr
from farlib import shout


class FarJob(pymr.Job):
    def map(self, key, line):
        for word in line.split():
            yield shout(word), 1

    def reduce(self, word, counts):
        yield word, sum(counts)
