"""Every map task kills its own process (as a segfault or the OOM killer would)."""
import os

import pymr


class CrashAlways(pymr.Job):
    def map(self, key, line):
        os._exit(9)

    def reduce(self, key, values):
        yield key, sum(values)
