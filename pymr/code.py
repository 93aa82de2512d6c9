"""Job code on the wire: a job class cloudpickled by value, its helper modules as source,
and its side files; restored in a worker.

The job script is not installed where workers run, so its classes and functions travel
by value, once per worker per job. The modules and packages the script imports from its
own folder (``from helpers import tokenize``), and those named with ``--py-files`` (a
``.py`` file, a package folder or a ``.zip``), travel as their source files: a worker
writes them to the job's folder and puts that first on ``sys.path``, so they import as
they did on the submitting machine: lazily, with their data files, and by reference
when a value of one of their classes crosses the shuffle. (Pickling them by value, with
``cloudpickle.register_pickle_by_value``, would miss all three.) Installed packages are
not shipped: workers need them installed.

Side files are small files a task reads by a local path, as Hadoop's distributed cache.
cloudpickle (from 3.0) renames every code object's file to ``<dynamic-code>``; the
worker puts the script's path back, so a traceback from a task names the user's file
and line.
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import pickle
import socket
import sys
import sysconfig
import threading
import types
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import cloudpickle

from .errors import InputError, JobScriptError

_DYNAMIC = "<dynamic-code>"
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


MAX_SIDE_FILE_BYTES = 64 * 1024 * 1024
MAX_MODULE_BYTES = 64 * 1024 * 1024  # the helper modules shipped with a job, all together
_SKIPPED_FOLDERS = {"__pycache__", ".git", ".hg", ".svn", ".ipynb_checkpoints"}


def dump_job(job_class: type, options: dict[str, Any], files: Sequence[str] = (),
             py_files: Sequence[str] = ()) -> bytes:
    """The job class (by value), its option values, source file, helper modules and side files, as one blob.

    Raises ``JobScriptError`` naming what cannot be sent (an open file in an attribute ...).
    """
    module = sys.modules.get(job_class.__module__)
    if module is not None and job_class.__module__ != "__main__" and not _is_pymr(job_class.__module__):
        cloudpickle.register_pickle_by_value(module)
    try:
        source = inspect.getsourcefile(job_class)
    except (TypeError, OSError):  # a class typed into a notebook or ``python -c`` has no file
        source = None
    code = check_sendable(job_class, options, source)
    modules = read_modules(job_modules(job_class, py_files))
    return pickle.dumps({"code": code, "modules": modules, "files": read_side_files(files)}, protocol=5)


def check_sendable(job_class: type, options: dict[str, Any], source: str | None = None) -> bytes:
    """The job class and options pickled, or ``JobScriptError`` naming what cannot be sent.

    Inline mode calls this too, so a job that cannot run on workers does not run inline.
    An open file is refused even where cloudpickle would send a copy of a file open for
    reading: every task would then read its own copy from the start, where inline mode
    shares one file position, so the results would differ.
    """
    problem = find_unsendable(job_class, options, try_pickling=False)
    if problem is None:
        try:
            return cloudpickle.dumps((job_class, options, source))
        except Exception as exc:  # noqa: BLE001  (then named below, whatever pickling raised)
            problem = (find_unsendable(job_class, options, try_pickling=True) or
                       f"job {job_class.__name__} cannot be sent to workers: {type(exc).__name__}: {exc}")
    raise JobScriptError(problem)


def job_folder(job_class: type) -> str:
    """The folder of the script that defines ``job_class``; the current folder for a
    class typed into a notebook or an interactive session."""
    module = sys.modules.get(job_class.__module__)
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.abspath(path)) if path else os.getcwd()


def side_file_paths(job_class: type, given: Sequence[str] = ()) -> list[str]:
    """The job's ``files`` (relative to its script's folder, as mrjob's ``FILES``), then
    those ``given`` (relative to the current folder), as absolute paths that exist."""
    folder = job_folder(job_class)
    paths = [os.path.join(folder, os.path.expanduser(p)) for p in getattr(job_class, "files", ())]
    paths += [os.path.abspath(os.path.expanduser(p)) for p in given]
    for path in paths:
        if not os.path.exists(path):
            raise InputError(f"side file not found: {os.path.abspath(path)}")
    return [os.path.abspath(p) for p in paths]


def read_side_files(paths: Sequence[str]) -> dict[str, bytes]:
    """``{relative name: contents}`` of files and folders (``folder/inner/name``) to ship."""
    for path in paths:
        if not os.path.exists(path):
            raise InputError(f"side file not found: {os.path.abspath(path)}")
    return _read_trees(paths, MAX_SIDE_FILE_BYTES, "side files hold {total} bytes; they are for small files (at "
                       "most {limit} bytes): read big data as input instead")


def _read_trees(paths: Sequence[str], limit: int, too_big: str) -> dict[str, bytes]:
    """``{name relative to each path's parent: contents}`` of files and of folders' files,
    refused (``too_big``) before anything is read if they hold more than ``limit`` bytes."""
    files: dict[str, str] = {}
    for path in map(os.path.abspath, paths):
        base = os.path.dirname(path)
        if os.path.isfile(path):
            files[os.path.relpath(path, base)] = path
            continue
        for root, folders, names in os.walk(path):
            folders[:] = sorted(f for f in folders if f not in _SKIPPED_FOLDERS)
            files.update((os.path.relpath(os.path.join(root, n), base), os.path.join(root, n)) for n in sorted(names))
    total = sum(map(os.path.getsize, files.values()))
    if total > limit:
        raise InputError(too_big.format(total=total, limit=limit))
    contents = {}
    for name, file in files.items():
        with open(file, "rb") as f:
            contents[name] = f.read()
    return contents


# -- helper modules ------------------------------------------------------------------------
def job_modules(job_class: type, py_files: Sequence[str] = ()) -> list[str]:
    """The files and package folders to ship with a job: the modules it has imported from
    its own folder (see ``job_folder``), and ``py_files`` (files, package folders, zips)."""
    folder = job_folder(job_class)
    shipped = {os.path.abspath(p) for p in py_files}
    for path in shipped:
        if not os.path.exists(path):
            raise InputError(f"--py-files: not found: {path}")
        if not (os.path.isdir(path) or path.endswith((".py", ".zip"))):
            raise InputError(f"--py-files: {path} is not a .py file, a package folder or a .zip")
    installed = _installed_folders()
    for name, module in list(sys.modules.items()):
        location = _top_level_location(name, module)
        if location is None or _is_pymr(name) or not _within(location, folder) or                 any(_within(location, place) for place in installed):
            continue
        shipped.add(location)
    return sorted(shipped)


def read_modules(paths: Sequence[str]) -> dict[str, bytes]:
    """``{name under the job's module folder: contents}`` of the files and folders to ship."""
    return _read_trees(paths, MAX_MODULE_BYTES, "the job's helper modules hold {total} bytes (at most {limit}): "
                       "install big libraries on the workers instead of shipping them")


def importable(py_files: Sequence[str]) -> None:
    """Make ``py_files`` importable in this process (the submitting one, or inline mode)."""
    for path in reversed([os.path.abspath(p) for p in py_files]):
        entry = path if path.endswith(".zip") else os.path.dirname(path)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    importlib.invalidate_caches()


def _top_level_location(name: str, module: Any) -> str | None:
    """The file or package folder of a top-level module that holds module ``name``."""
    if "." in name or name == "__main__" or name.startswith("pymr_job_"):  # (the script itself goes by value)
        return None
    search = getattr(module, "__path__", None)
    if search is not None:
        folders = list(search)
        return folders[0] if len(folders) == 1 and os.path.basename(folders[0]) == name else None
    path = getattr(module, "__file__", None)
    if not path or os.path.basename(path).split(".", 1)[0] != name:
        return None
    return os.path.abspath(path)


def _installed_folders() -> list[str]:
    paths = sysconfig.get_paths()
    places = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    places |= {p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")}
    return [os.path.abspath(p) for p in places]


def _within(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:
        return False


def _is_pymr(module_name: str) -> bool:
    return module_name == "pymr" or module_name.startswith("pymr.")


# -- in a worker -----------------------------------------------------------------------------
def load_job(blob: bytes, folder: str) -> tuple[type, dict[str, Any], dict[str, str]]:
    """Unpickle a job blob in a worker: its modules are written under ``folder`` and put
    first on ``sys.path`` (replacing any other job's of the same name), its side files
    too; returns the job class, its options and ``{side file name: local path}``."""
    shipped = pickle.loads(blob)
    modules = os.path.join(folder, "modules")
    os.makedirs(modules, exist_ok=True)
    write_side_files(shipped["modules"], modules)
    _put_first_on_path(modules, shipped["modules"])
    job_class, options, source = cloudpickle.loads(shipped["code"])
    if source:
        _restore_filenames(job_class, source, set())
    return job_class, options, write_side_files(shipped["files"], os.path.join(folder, "files"))


def forget_job(folder: str) -> None:
    """Take a finished job's modules off ``sys.path`` and out of ``sys.modules`` (its
    files are deleted by the caller), so a long-lived executor does not pile them up."""
    folder = os.path.abspath(folder)
    sys.path[:] = [p for p in sys.path if not _within(os.path.abspath(p), folder)]
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and _within(os.path.abspath(path), folder):
            del sys.modules[name]


def _put_first_on_path(modules: str, names: dict[str, bytes]) -> None:
    zips = [os.path.join(modules, n) for n in names if os.sep not in n and n.endswith(".zip")]
    tops = {n.split(os.sep, 1)[0].split(".", 1)[0] for n in names}
    for archive in zips:
        with zipfile.ZipFile(archive) as z:
            tops |= {n.split("/", 1)[0].split(".", 1)[0] for n in z.namelist()}
    for name in [m for m in sys.modules if m.split(".", 1)[0] in tops]:
        del sys.modules[name]  # another job's module of the same name
    sys.path[:0] = [modules, *zips]
    importlib.invalidate_caches()


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
    missing = [os.path.abspath(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise InputError(f"side file not found: {missing[0]}")
    return {os.path.basename(os.path.abspath(p)): os.path.abspath(p) for p in paths}


# -- what cannot be sent ----------------------------------------------------------------------
def find_unsendable(job_class: type, options: dict[str, Any], try_pickling: bool = True) -> str | None:
    """``"WordCount.log_file: an open file cannot be sent to workers; ..."`` for the first
    class attribute, global used by the job's code, or option value that is an open
    file, a lock or a socket, or (``try_pickling``) will not pickle; None if none is."""
    seen: set[int] = set()
    for cls in job_class.__mro__:
        if cls is object or _is_pymr(cls.__module__):
            continue
        for attr, value in vars(cls).items():
            if attr.startswith("__") and attr.endswith("__"):
                continue
            problem = _unsendable_in(value, f"{job_class.__name__}.{attr}", seen, try_pickling)
            if problem:
                return problem
    for name, value in options.items():
        if _unsendable(value, try_pickling):
            return f"option {name}: {_why(value)}"
    return None


def _unsendable_in(value: Any, where: str, seen: set[int], try_pickling: bool) -> str | None:
    """What in ``value`` (a function's globals and closure, recursively) cannot be sent."""
    if id(value) in seen:
        return None
    seen.add(id(value))
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        accessors = [a for a in (value.fget, value.fset, value.fdel) if a is not None]
        return next(filter(None, (_unsendable_in(a, where, seen, try_pickling) for a in accessors)), None)
    if not isinstance(value, types.FunctionType):
        return f"{where}: {_why(value)}" if _unsendable(value, try_pickling) else None
    if not _by_value(value):
        return None
    used = dict(zip(value.__code__.co_freevars, (c.cell_contents for c in value.__closure__ or ()
                                                 if _has_contents(c))))
    used.update((n, value.__globals__[n]) for n in _names_used(value.__code__) if n in value.__globals__)
    for name, inner in used.items():
        if isinstance(inner, types.ModuleType):
            continue
        problem = _unsendable_in(inner, f"{name} (a global used by {where})", seen, try_pickling)
        if problem:
            return problem
    return None


def _unsendable(value: Any, try_pickling: bool) -> bool:
    if isinstance(value, (io.IOBase, socket.socket, *_LOCK_TYPES)):
        return True
    return try_pickling and not _pickles(value)


def _by_value(function: types.FunctionType) -> bool:
    """Whether cloudpickle sends ``function`` by value (else by reference, which always pickles)."""
    name = getattr(function, "__module__", None) or ""
    return name == "__main__" or name not in sys.modules or name in cloudpickle.list_registry_pickle_by_value()


def _has_contents(cell: types.CellType) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # a closure variable not assigned yet
        return False
    return True


def _names_used(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names_used(const)


def _pickles(value: Any) -> bool:
    try:
        cloudpickle.dumps(value)
    except Exception:  # noqa: BLE001  (whatever a value's __reduce__ raises, it will not pickle)
        return False
    return True


def _why(value: Any) -> str:
    if isinstance(value, io.IOBase):
        return "an open file cannot be sent to workers; open it in map_init (or reduce_init)"
    if isinstance(value, _LOCK_TYPES):
        return "a lock cannot be sent to workers; create it in map_init (or reduce_init)"
    if isinstance(value, socket.socket):
        return "a socket cannot be sent to workers; open it in map_init (or reduce_init)"
    return (f"a {type(value).__module__}.{type(value).__qualname__} cannot be sent to workers (it will not "
            "pickle); create it in map_init (or reduce_init)")


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
