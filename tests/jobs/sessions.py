"""Each user's events in time order (a secondary sort by a key function of the value)."""
import pymr


class Sessions(pymr.Job):
    input_format = "jsonl"
    reducers = 3
    sort_values = lambda event: (event["ms"], event["id"])  # noqa: E731

    def map(self, key, event):
        yield event["user"], event

    def reduce(self, user, events):
        yield user, [e["id"] for e in events]


class Natural(pymr.Job):
    """Values sorted by their natural order (sort_values = True)."""

    sort_values = True

    def map(self, key, line):
        for word in line.split():
            yield len(word), word

    def reduce(self, length, words):
        words = list(words)
        yield length, [words[0], words[-1], len(words)]
