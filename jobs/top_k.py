"""Top-K: the K most frequent words of the input, most frequent first.

Two steps. The first counts words (``str.split()`` tokens, as ``wordcount.py``). In the
second, every map task keeps a heap of its K largest counts (per-task heaps) and emits
only those; one reducer merges the heaps. Ties are broken by the word, ascending.
Output: ``rank<TAB>[word, count]``.

    pymr submit jobs/top_k.py sample_data/books/ -o out/top --k 20
"""

import heapq

import pymr


class TopK(pymr.Job):
    options = [pymr.Option("k", int, default=10, help="How many words to keep.")]

    def steps(self):
        return [
            pymr.Step(map=self.words, aggregate="sum", reducers=4),
            pymr.Step(map_init=self.start_heap, map=self.offer, map_final=self.emit_heap,
                      reduce=self.merge_heaps, reducers=1),
        ]

    def words(self, key, line):
        for word in line.split():
            yield word, 1

    def start_heap(self):
        self.heap = []

    def offer(self, word, count):
        entry = (count, _Descending(word))
        if len(self.heap) < self.options.k:
            heapq.heappush(self.heap, entry)
        elif entry > self.heap[0]:
            heapq.heapreplace(self.heap, entry)
        return ()

    def emit_heap(self):
        for count, word in self.heap:
            yield None, (count, word.word)

    def merge_heaps(self, _, entries):
        best = heapq.nlargest(self.options.k, entries, key=lambda e: (e[0], _Descending(e[1])))
        for rank, (count, word) in enumerate(best, 1):
            yield rank, [word, count]


class _Descending:
    """Orders words in reverse, so that among equal counts the smaller word ranks higher."""

    __slots__ = ("word",)

    def __init__(self, word):
        self.word = word

    def __lt__(self, other):
        return self.word > other.word

    def __gt__(self, other):
        return self.word < other.word

    def __eq__(self, other):
        return self.word == other.word


if __name__ == "__main__":
    TopK.main()
