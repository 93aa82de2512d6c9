"""The second step of top_words.py as a job of its own, reading the first step's jsonl output."""
import pymr


class InvertCounts(pymr.Job):
    def map(self, key, pair):
        word, count = pair
        yield count, word

    def reduce(self, count, words):
        yield count, sorted(words)
