"""Job code on the wire: a job class cloudpickled by value, and restored in a worker.

The job script is not installed where workers run, so its classes and functions travel
by value, once per worker per job, together with the job's side files (small files a
task reads by a local path, as Hadoop's distributed cache). cloudpickle (from 3.0)
renames every code object's file to ``<dynamic-code>``; the worker puts the script's
path back, so a traceback from a task names the user's file and line.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

import cloudpickle

from .errors import PymrError

_DYNAMIC = "<dynamic-code>"


MAX_SIDE_FILE_BYTES = 64 * 1024 * 1024


def dump_job(job_class: type, options: dict[str, Any], files: Sequence[str] = ()) -> bytes:
    """The job class (by value), its option values, its source file and side files, as one blob."""
    module = sys.modules.get(job_class.__module__)
    if module is not None and job_class.__module__ != "__main__" and not job_class.__module__.startswith("pymr."):
        cloudpickle.register_pickle_by_value(module)
    try:
        source = inspect.getsourcefile(job_class)
    except TypeError:
        source = None
    return cloudpickle.dumps((job_class, options, source, read_side_files(files)))


def read_side_files(paths: Sequence[str]) -> dict[str, bytes]:
    """``{relative name: contents}`` of files and folders (``folder/inner/name``) to ship."""
    contents: dict[str, bytes] = {}
    for given in paths:
        path = os.path.abspath(given)
        if not os.path.exists(path):
            raise PymrError(f"side file not found: {given}")
        base = os.path.dirname(path)
        walked = [path] if os.path.isfile(path) else [
            os.path.join(root, name) for root, _, names in os.walk(path) for name in sorted(names)]
        for file in walked:
            with open(file, "rb") as f:
                contents[os.path.relpath(file, base)] = f.read()
    total = sum(map(len, contents.values()))
    if total > MAX_SIDE_FILE_BYTES:
        raise PymrError(f"side files hold {total} bytes; they are for small files (at most "
                        f"{MAX_SIDE_FILE_BYTES} bytes): read big data as input instead")
    return contents


def load_job(blob: bytes) -> tuple[type, dict[str, Any], dict[str, bytes]]:
    """Unpickle a job blob; code objects get their source file back."""
    job_class, options, source, files = cloudpickle.loads(blob)
    if source:
        _restore_filenames(job_class, source, set())
    return job_class, options, files


def write_side_files(files: dict[str, bytes], folder: str) -> dict[str, str]:
    """Write shipped side files under ``folder``; ``{top-level name: local path}``."""
    paths: dict[str, str] = {}
    for name, data in files.items():
        target = os.path.join(folder, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
        top = name.split(os.sep, 1)[0]
        paths[top] = os.path.join(folder, top)
    return paths


def local_side_files(paths: Sequence[str]) -> dict[str, str]:
    """``{name: path}`` for side files used where they are (inline mode)."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise PymrError(f"side file not found: {missing[0]}")
    return {os.path.basename(os.path.abspath(p)): os.path.abspath(p) for p in paths}


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
