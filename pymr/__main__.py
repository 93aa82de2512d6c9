"""``python -m pymr``: the same as the ``pymr`` command."""

from pymr.cli import run

if __name__ == "__main__":
    run()
