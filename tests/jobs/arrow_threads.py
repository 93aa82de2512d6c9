"""Reports the sizes of Arrow's thread pools in the process that runs its tasks."""
import os

import pyarrow as pa

import pymr


class ArrowThreads(pymr.Job):
    def map(self, key, line):
        yield "cpu threads", pa.cpu_count()
        yield "io threads", pa.io_thread_count()
        yield "task process", os.getpid()

    def reduce(self, key, values):
        yield key, len(set(values)) if key == "task process" else max(values)
