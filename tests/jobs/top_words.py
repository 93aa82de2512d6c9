"""Two steps: count words, then group the words by their count (most frequent last).

With --fail-in-step2 the second step's reduce raises, to check errors name the step.
"""
import pymr


class WordsByCount(pymr.Job):
    options = [pymr.Option("fail-in-step2", bool, default=False)]

    def steps(self):
        return [
            pymr.Step(map=self.split_words, combine=self.add, reduce=self.add, reducers=3),
            pymr.Step(map=self.invert, reduce=self.collect, reducers=1),
        ]

    def split_words(self, key, line):
        for word in line.split():
            yield word, 1

    def add(self, word, counts):
        yield word, sum(counts)

    def invert(self, word, count):
        yield count, word

    def collect(self, count, words):
        if self.options.fail_in_step2:
            raise RuntimeError(f"step two cannot take count {count}")
        self.increment_counter("words by count", "groups")
        yield count, sorted(words)
