"""Job code on the wire: a job class cloudpickled by value, and restored in a worker.

The job script is not installed where workers run, so its classes and functions travel
by value, once per worker per job. cloudpickle (from 3.0) renames every code object's
file to ``<dynamic-code>``; the worker puts the script's path back, so a traceback from
a task names the user's file and line.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

import cloudpickle

_DYNAMIC = "<dynamic-code>"


def dump_job(job_class: type, options: dict[str, Any]) -> bytes:
    """The job class (by value), its option values and its source file, as one blob."""
    module = sys.modules.get(job_class.__module__)
    if module is not None and job_class.__module__ != "__main__" and not job_class.__module__.startswith("pymr."):
        cloudpickle.register_pickle_by_value(module)
    try:
        source = inspect.getsourcefile(job_class)
    except TypeError:
        source = None
    return cloudpickle.dumps((job_class, options, source))


def load_job(blob: bytes) -> tuple[type, dict[str, Any]]:
    """Unpickle a job blob; code objects get their source file back."""
    job_class, options, source = cloudpickle.loads(blob)
    if source:
        _restore_filenames(job_class, source, set())
    return job_class, options


def _restore_filenames(obj: Any, source: str, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (staticmethod, classmethod)):
        _restore_filenames(obj.__func__, source, seen)
    elif isinstance(obj, property):
        for accessor in (obj.fget, obj.fset, obj.fdel):
            if accessor is not None:
                _restore_filenames(accessor, source, seen)
    elif isinstance(obj, types.FunctionType):
        if obj.__code__.co_filename == _DYNAMIC:
            obj.__code__ = _with_filename(obj.__code__, source)
            for value in list(obj.__globals__.values()):
                _restore_filenames(value, source, seen)
    elif isinstance(obj, type) and obj.__module__ not in ("builtins",) and obj.__module__.split(".")[0] != "pymr":
        for value in list(vars(obj).values()):
            _restore_filenames(value, source, seen)


def _with_filename(code: types.CodeType, source: str) -> types.CodeType:
    consts = tuple(_with_filename(c, source) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=source, co_consts=consts)
