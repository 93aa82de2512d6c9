"""pymr: MapReduce batch processing for Python.

Write a ``pymr.Job`` subclass in a script and run it with ``pymr submit JOB.py INPUT -o OUT``,
or from Python with ``MyJob.run(inputs, output=...)``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    BadRecordError,
    ClusterError,
    InputError,
    JobCancelled,
    JobFailed,
    JobScriptError,
    KeyTypeError,
    OptionError,
    OutputExistsError,
    OutputTypeError,
    PymrError,
)
from .job import Job, Option, Step, load_job_class
from .outputs import JobResult

__all__ = [
    "Job",
    "Option",
    "Step",
    "JobResult",
    "load_job_class",
    "PymrError",
    "JobScriptError",
    "InputError",
    "OutputExistsError",
    "OptionError",
    "OutputTypeError",
    "KeyTypeError",
    "BadRecordError",
    "ClusterError",
    "JobFailed",
    "JobCancelled",
]
