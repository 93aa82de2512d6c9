"""pymr: MapReduce batch processing for Python.

Write a ``pymr.Job`` subclass in a script and run it with ``pymr submit JOB.py INPUT -o OUT``,
or from Python with ``MyJob.run(inputs, output=...)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .job import Job, Option, Step, load_job_class
    from .outputs import JobResult

_LAZY = {"Job": "job", "Option": "job", "Step": "job", "load_job_class": "job", "JobResult": "outputs"}


def __getattr__(name: str) -> Any:
    """``pymr.Job`` and the rest, imported when first used: the ``pymr`` command starts
    local mode's fork server before it imports them (see ``__main__``)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pymr' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


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
