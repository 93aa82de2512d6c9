"""Word count as users lay it out: a helper module and a helper package beside the script,
and stop words in a side file found beside it. Values are objects of a class from the
helper package, so a reducer must import it to read the shuffle."""
from helpers import tokenize
from textkit import Tally, normalize

import pymr


class WordJob(pymr.Job):
    files = ["stop_words.txt"]

    def map_init(self):
        with open(self.files["stop_words.txt"], encoding="utf-8") as f:
            self.stop = set(f.read().split())

    def map(self, key, line):
        for word in map(normalize, tokenize(line)):
            if word and word not in self.stop:
                yield word, Tally(1)

    def reduce(self, word, tallies):
        yield word, sum(t.n for t in tallies)


if __name__ == "__main__":
    WordJob.main()
