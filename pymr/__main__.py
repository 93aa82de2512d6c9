"""The ``pymr`` command (and ``python -m pymr``).

A local-mode ``pymr submit`` starts its fork server first, before importing the rest
of pymr, so that the server's imports overlap this process's (``forkserver``).
"""

import sys


def main() -> None:
    from .forkserver import start_for_command

    start_for_command(sys.argv[1:])
    from .cli import run

    run()


if __name__ == "__main__":
    main()
