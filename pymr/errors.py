"""User-facing errors: a small flat hierarchy, each saying what went wrong in a user's words.

The CLI prints ``PymrError`` subclasses as one line (or the user's traceback for a
failed task) and exits with ``exit_code``; anything else is a bug in pymr.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any


class PymrError(Exception):
    """Base of every error pymr reports to a user."""

    exit_code = 1


class JobScriptError(PymrError):
    """The job script cannot be loaded: missing, broken, or holding no usable Job."""

    exit_code = 2


class OptionError(PymrError):
    """A job option or setting the job does not have, or a required one missing."""

    exit_code = 2


class InputError(PymrError):
    """An input path is missing, unreadable or empty."""

    exit_code = 2


class OutputExistsError(PymrError):
    """The output folder exists and ``--overwrite`` was not given."""

    exit_code = 2


class SettingError(PymrError):
    """An environment variable or setting holds a value pymr cannot use."""

    exit_code = 2


class StorageError(PymrError, OSError):
    """A filesystem named by URI cannot be used: unreachable, access denied, no such bucket.

    An ``OSError`` too, so code that handles failed file operations handles it."""

    exit_code = 2


class InputChanged(PymrError):
    """An input file changed (size or mtime) between planning the splits and reading one:
    the job's result would mix two versions of it, so the job fails at once, not retried."""

    fatal = True


class KeyTypeError(PymrError, TypeError):
    """A map or combine emitted a key that cannot be ordered and hashed stably."""


class BadRecordError(PymrError):
    """An input record cannot be decoded (and bad records are not being skipped)."""


class OutputTypeError(PymrError, TypeError):
    """An output key or value does not fit the Parquet column type the job declared."""


class ProtocolError(PymrError):
    """A message did not follow pymr's wire protocol; it is logged and dropped."""


class ClusterError(PymrError):
    """The coordinator or the workers cannot be reached or refused the request."""

    exit_code = 3


class StateError(PymrError):
    """The coordinator's state dir cannot be used: locked by another coordinator, written by
    a newer pymr, corrupt or unreadable. Nothing in it is deleted."""

    exit_code = 2


class AddressError(PymrError):
    """An address cannot be listened on or connected to: port in use, unknown name, not this machine's."""

    exit_code = 2


class TaskError(PymrError):
    """A task's exception whose type is not loaded in this process: ``type`` names it."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type = type_name


class JobFailed(PymrError):
    """A job did not finish: a task kept failing, or the job was cancelled.

    ``task_error`` holds what the failing task reported (``type``, ``message``,
    ``traceback``) when the cause was a task; ``__cause__`` is then the user's
    exception rebuilt from that (see ``exception_from``).
    """

    def __init__(self, message: str, task_error: dict | None = None):
        super().__init__(message)
        self.task_error = task_error or {}


class JobCancelled(JobFailed):
    """The job was cancelled (Ctrl-C on ``pymr submit``, or a cancel request)."""

    exit_code = 130


def describe_error(exc: BaseException) -> dict[str, str]:
    """The user's view of an exception: type, message, and a traceback without pymr's frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep  # pymr's own frames are left out
    user_frames = [f for f in frames if not os.path.abspath(f.filename).startswith(package)]
    lines = ["Traceback (most recent call last):\n"] if user_frames else []
    lines += traceback.format_list(user_frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": str(exc),
        "traceback": "".join(lines).rstrip(),
    }


def exception_from(error: dict[str, Any]) -> Exception:
    """The user's exception as ``describe_error`` described it, from data only: of its own
    type when that type is a built-in or already loaded here (else a ``TaskError``), with
    its message, and its traceback text as a note. Nothing is imported or unpickled and
    the type's ``__init__`` is not run, so whoever sent ``error`` cannot choose code to run."""
    type_name, message = str(error.get("type", "Exception")), str(error.get("message", ""))
    module, _, qualname = type_name.rpartition(".")
    cls = _loaded_exception_class(module or "builtins", qualname)
    if cls is None:
        exc: Exception = TaskError(type_name, message)
    else:
        base = next(c for c in cls.__mro__ if c.__module__ == "builtins")  # its C layout, without user code
        exc = base.__new__(cls)
        exc.args = (message,)
        try:
            str(exc)
        except Exception:  # its __str__ wants attributes its __init__ would have set
            exc = TaskError(type_name, message)
    if error.get("traceback") and hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(str(error["traceback"]))
    return exc


def _loaded_exception_class(module_name: str, qualname: str) -> type[Exception] | None:
    found: Any = sys.modules.get(module_name)
    for name in qualname.split("."):
        if found is None:
            return None
        found = vars(found).get(name) if hasattr(found, "__dict__") else None
    return found if isinstance(found, type) and issubclass(found, Exception) else None


