"""User-facing errors: a small flat hierarchy, each saying what went wrong in a user's words.

The CLI prints ``PymrError`` subclasses as one line (or the user's traceback for a
failed task) and exits with ``exit_code``; anything else is a bug in pymr.
"""

from __future__ import annotations

import os
import pickle
import traceback


class PymrError(Exception):
    """Base of every error pymr reports to a user."""

    exit_code = 1


class JobScriptError(PymrError):
    """The job script cannot be loaded: missing, broken, or holding no usable Job."""

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


class JobFailed(PymrError):
    """A job did not finish: a task kept failing, or the job was cancelled.

    ``task_error`` holds what the failing task reported (``type``, ``message``,
    ``traceback``) when the cause was a task; ``__cause__`` is the user's own
    exception when it could be carried back.
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


def pickle_exception(exc: BaseException) -> bytes:
    """The exception itself, so a Python caller can see its real type (empty if it won't pickle)."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return b""
