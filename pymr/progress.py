"""How far the reduce task running in this process has got, for its executor to report.

A reduce task says how many rows its partition holds (``expect``), the run readers
count the rows they hand over (``advance``, a batch at a time), and the executor's
``TaskProgress`` sends ``fraction`` to its worker. A map's progress is measured from
the bytes its process reads instead, which needs nothing from the map's loop.
"""

from __future__ import annotations

_expected = 0
_read = 0


def expect(rows: int) -> None:
    """A task begins that will read ``rows`` rows of runs (0: one whose rows are not counted)."""
    global _expected, _read
    _expected, _read = rows, 0


def advance(rows: int) -> None:
    global _read
    _read += rows


def fraction() -> float | None:
    """The share of the expected rows read so far, or None if none are expected."""
    return min(1.0, _read / _expected) if _expected else None
