"""Grep: the input lines that match a regular expression (a map-only job).

Each matching line is written as it is, one per output line, like ``grep``; with
``--with-location`` it is prefixed by ``path:byte_offset<TAB>``. There is no reduce, so
each map task writes its own part file, in input order.

    pymr submit jobs/grep.py sample_data/books/ -o out/grep --pattern 'whale|ship'
"""

import re

import pymr


class Grep(pymr.Job):
    options = [
        pymr.Option("pattern", str, required=True, help="Python regular expression to search for."),
        pymr.Option("ignore-case", bool, default=False, help="Match without regard to case."),
        pymr.Option("with-location", bool, default=False, help="Prefix each line with path:byte_offset."),
    ]

    def map_init(self):
        flags = re.IGNORECASE if self.options.ignore_case else 0
        self.regex = re.compile(self.options.pattern, flags)

    def map(self, key, line):
        if self.regex.search(line):
            self.increment_counter("grep", "matching lines")
            if self.options.with_location:
                path, offset = key
                yield f"{path}:{offset}", line
            else:
                yield line, None


if __name__ == "__main__":
    Grep.main()
