"""Whether a user's function reads one of its arguments, from its bytecode.

A text record's key, ``(path, byte_offset)``, costs a tuple and an int per line to
build: 15% of a word count's map loop, for a key most maps never look at. The map
loop builds keys only when the job's ``map`` may read its key. The answer errs towards
yes: anything but a plain Python function, a name that is read at all (or captured by
an inner function, or passed on as ``*args``), and any function that can see its own
frame (``locals()``, ``breakpoint()``, ``sys._getframe``...) count as reading it.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Callable
from typing import Any

# Names through which a function can see its own frame's variables.
_INTROSPECTION = frozenset({"locals", "vars", "eval", "exec", "breakpoint", "set_trace", "_getframe",
                            "currentframe", "f_locals", "stack", "trace", "getargvalues", "getframeinfo"})


def reads_argument(function: Callable[..., Any], position: int) -> bool:
    """Whether ``function`` may read its positional argument ``position`` (after
    ``self`` for a bound method); True whenever that cannot be ruled out."""
    if isinstance(function, types.MethodType):
        function, position = function.__func__, position + 1
    if type(function) is not types.FunctionType or hasattr(function, "__wrapped__"):
        return True
    code = function.__code__
    if position >= code.co_argcount:
        return True  # taken by *args, or not a parameter at all
    name = code.co_varnames[position]
    if name in code.co_cellvars or not _INTROSPECTION.isdisjoint(code.co_names):
        return True
    return any(_names(instruction.argval, name) for instruction in dis.get_instructions(code))


def _names(argval: Any, name: str) -> bool:
    """Whether an instruction's argument is ``name`` (or, on 3.13, a pair holding it)."""
    return argval == name if isinstance(argval, str) else isinstance(argval, tuple) and name in argval
