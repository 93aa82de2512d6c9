"""Words grouped by their first letter with a custom partition: a-m go to reducer 0, the rest to 1.

The reducer reports how its values arrive (an iterator, never a list) and a user counter.
"""
import pymr


class FirstLetter(pymr.Job):
    reducers = 2

    def map(self, key, line):
        for word in line.split():
            if word[0].isascii() and word[0].isalpha():
                yield word[0].lower(), 1
                self.increment_counter("letters", "words seen")

    def partition(self, key, num_reducers):
        return 0 if key <= "m" else 1

    def reduce(self, letter, counts):
        kind = type(counts).__name__
        yield letter, [sum(counts), kind]
