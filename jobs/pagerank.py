"""PageRank of the nodes of a directed graph given as an edge list, iterated until it converges.

Input: text lines ``src dst`` (whitespace-separated node names; fields after the second,
such as a weight, are ignored). Lines starting with ``#`` and blank lines are skipped;
a line with one field is counted in ``pagerank / malformed lines`` and skipped. A
repeated edge counts once; every name that appears is a node.

Each round computes, for every node ``v`` of the ``N`` nodes::

    rank'(v) = (1 - d) / N + d * (sum of rank(u) / outdegree(u) over the edges u -> v  +  D / N)

with ``d`` the ``--damping`` (0.85), starting from ``1 / N`` everywhere. ``D`` is the
rank held by dangling nodes (no out-edges): it is spread evenly over all nodes, as if
they linked to every node, so the ranks always sum to 1.

Steps:

1. **links**: each node's out-links (a sorted list of distinct names).
2. **initial ranks**: ``1 / N`` with each node's links.
3. **iterate**: one round per run, repeated by the engine (``Step.repeat_while``) at most
   ``--iterations`` times. The map sends ``rank / outdegree`` along each link and passes
   the node's record on. ``N`` and ``D`` are global sums that every reduce task needs
   before its first node, so each map task *broadcasts* its share: at the end it emits
   ``(i, (nodes, dangling rank))`` for every reduce task ``i``, an ``int`` key that the
   job's ``partition`` sends to task ``i`` (``i % R``) and that sorts before every node
   name (``int`` keys sort before ``str``). The combiner adds the shares up, so a reduce
   task first gets one key holding the totals, then its nodes in order. (Counters cannot
   carry ``D`` into the next round: a round's tasks never see them.)
4. **ranks**: ``node -> rank``, map-only.

Convergence: each reduce task adds up ``|rank' - rank|`` over its nodes and counts it in
``pagerank / L1 change (1e-12)``, in units of 1e-12 (counters are integers). After each
round the engine stops when that round's L1 change is below ``--tolerance``, or after
``--iterations`` rounds; ``--tolerance 0`` runs exactly ``--iterations`` rounds.
``pagerank / rounds`` counts the rounds run (in the job's report, the L1 change counter
is summed over rounds; each round's own is in ``steps``).

``--partitions`` (4) is the number of reduce tasks of every step: the map side must know
it to broadcast, so ``--reducers`` does not change it. Output: ``node<TAB>rank``, one part
file per partition, sorted by node within each. ``scripts/pagerank_loop.py`` runs the
same rounds as separate jobs from a Python loop.

    pymr submit jobs/pagerank.py graph.txt -o out/ranks --tolerance 1e-9 --iterations 100
"""

import pymr
from pymr.keys import partition_for

CHANGE = "L1 change (1e-12)"
CHANGE_UNIT = 1e-12


class PageRank(pymr.Job):
    options = [
        pymr.Option("damping", float, default=0.85, help="The damping factor d: how much rank follows links."),
        pymr.Option("iterations", int, default=20, help="The most rounds to run."),
        pymr.Option("tolerance", float, default=1e-6,
                    help="Stop once a round changes the ranks by less than this (L1); 0: run every round."),
        pymr.Option("partitions", int, default=4, help="Reduce tasks of each step."),
    ]

    def steps(self):
        self.check_options()
        return [*self.setup_steps(), self.round_step(repeated=True), self.ranks_step()]

    def check_options(self):
        opts = self.options
        if not 0 <= opts.damping < 1:
            raise pymr.PymrError(f"--damping must be at least 0 and below 1, got {opts.damping}")
        if opts.iterations < 1 or opts.partitions < 1 or opts.tolerance < 0:
            raise pymr.PymrError("--iterations and --partitions must be at least 1, --tolerance not negative")

    def setup_steps(self):
        return [pymr.Step(map=self.edges, combine=self.merge_links, reduce=self.node_links,
                          reducers=self.options.partitions),
                pymr.Step(map_init=self.start_count, map=self.count_node, map_final=self.broadcast,
                          combine=self.add_shares, reduce=self.initial_rank, reducers=self.options.partitions)]

    def round_step(self, repeated):
        """A round; ``repeated``: run again by the engine until the ranks converge."""
        repeat = {"repeat_while": self.not_converged, "max_rounds": self.options.iterations} if repeated else {}
        return pymr.Step(map_init=self.start_count, map=self.spread_rank, map_final=self.broadcast,
                         combine=self.add_shares, reduce=self.new_rank, reduce_final=self.count_change,
                         reducers=self.options.partitions, **repeat)

    def ranks_step(self):
        return pymr.Step(map=self.rank_only)

    def not_converged(self, counters):
        change = counters.get("pagerank", {}).get(CHANGE, 0) * CHANGE_UNIT
        return change >= self.options.tolerance

    def partition(self, key, num_reducers):
        if type(key) is int:  # a broadcast copy, one per reduce task
            return key % num_reducers
        return partition_for(key, num_reducers)

    # -- step 1: links -------------------------------------------------------------------------
    def edges(self, _, line):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            return
        if len(fields) < 2:
            self.increment_counter("pagerank", "malformed lines")
            return
        src, dst = fields[0], fields[1]
        yield src, (dst,)
        yield dst, ()

    def merge_links(self, node, links):
        yield node, tuple(sorted(set().union(*links)))

    def node_links(self, node, links):
        links = sorted(set().union(*links))
        self.increment_counter("pagerank", "nodes")
        self.increment_counter("pagerank", "edges", len(links))
        if not links:
            self.increment_counter("pagerank", "dangling nodes")
        yield node, links

    # -- the broadcast of N and D (steps 2 and 3) -----------------------------------------------
    def start_count(self):
        self.nodes = 0
        self.dangling = 0.0

    def broadcast(self):
        for task in range(self.options.partitions):
            yield task, (self.nodes, self.dangling)

    def add_shares(self, key, values):
        if type(key) is int:
            yield key, _total(values)
            return
        shares = None
        for value in values:
            if type(value) is float:
                shares = value if shares is None else shares + value
            else:
                yield key, value  # the node's own record
        if shares is not None:
            yield key, shares

    def read_totals(self, values):
        self.total_nodes, self.total_dangling = _total(values)

    # -- step 2: initial ranks ----------------------------------------------------------------
    def count_node(self, node, links):
        self.nodes += 1
        yield node, (None, links)

    def initial_rank(self, key, values):
        if type(key) is int:
            self.read_totals(values)
            return
        for _, links in values:
            yield key, (1.0 / self.total_nodes, links)

    # -- step 3: one round ----------------------------------------------------------------------
    def spread_rank(self, node, record):
        rank, links = record
        self.nodes += 1
        yield node, record
        if not links:
            self.dangling += rank
            return
        share = rank / len(links)
        for target in links:
            yield target, share

    def new_rank(self, key, values):
        if type(key) is int:
            self.read_totals(values)
            self.change = 0.0
            if key == 0:
                self.increment_counter("pagerank", "rounds")
            return
        record, incoming = None, 0.0
        for value in values:
            if type(value) is float:
                incoming += value
            else:
                record = value
        if record is None:
            raise ValueError(f"rank sent to {key!r}, which is not a node: the input is not this job's own records")
        old, links = record
        n, d = self.total_nodes, self.options.damping
        rank = (1 - d) / n + d * (incoming + self.total_dangling / n)
        self.change += abs(rank - old)
        yield key, (rank, links)

    def count_change(self):
        self.increment_counter("pagerank", CHANGE, round(getattr(self, "change", 0.0) / CHANGE_UNIT))
        return ()

    # -- step 4: the ranks ----------------------------------------------------------------------
    def rank_only(self, node, record):
        yield node, record[0]


def _total(shares):
    nodes, dangling = 0, 0.0
    for n, mass in shares:
        nodes += n
        dangling += mass
    return nodes, dangling


if __name__ == "__main__":
    PageRank.main()
