"""PageRank driven from Python: ``jobs/pagerank.py``'s steps run as one job each, in a loop.

The way iterative MapReduce was driven before a step could repeat itself: one job
builds the links and initial ranks, then each round is a job of its own, reading the
previous round's output, and the driver reads the round's ``JobResult.counters`` to
decide whether to run another (the L1 change of the ranks against ``--tolerance``, at
most ``--iterations`` rounds); a last job writes ``node<TAB>rank``. The steps are those
of ``PageRank`` (see its docstring), so the ranks are the same as
``pymr submit jobs/pagerank.py`` gives, round for round.

Rounds pass records to each other as JSON lines in a scratch folder beside the output
(floats round-trip exactly), removed at the end. Every job runs on one local cluster
started once (or on ``--coordinator``), so a round costs no process start-up.

    python scripts/pagerank_loop.py graph.txt -o out/ranks --tolerance 1e-9 --iterations 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymr
from pymr.runners import LocalCluster

PageRank = pymr.load_job_class(Path(__file__).resolve().parent.parent / "jobs" / "pagerank.py")
_pagerank = sys.modules[PageRank.__module__]
CHANGE, CHANGE_UNIT = _pagerank.CHANGE, _pagerank.CHANGE_UNIT


class PageRankSetup(PageRank):
    """Steps 1 and 2: the links and initial ranks, as JSON lines."""

    def steps(self):
        self.check_options()
        return self.setup_steps()


class PageRankRound(PageRank):
    """Step 3 once: one round over the previous job's JSON lines."""

    input_format = "jsonl"

    def steps(self):
        step = self.round_step(repeated=False)
        step.map = self.spread_json_rank
        return [step]

    def spread_json_rank(self, _, pair):
        node, (rank, links) = pair
        return self.spread_rank(node, (rank, links))


class PageRankRanks(PageRank):
    """Step 4: ``node -> rank`` from the last round's JSON lines."""

    input_format = "jsonl"

    def steps(self):
        return [pymr.Step(map=self.json_rank_only)]

    def json_rank_only(self, _, pair):
        node, record = pair
        return self.rank_only(node, record)


@dataclass
class LoopResult:
    """The final job's result, the rounds run and each round's L1 change."""

    result: pymr.JobResult
    rounds: int
    changes: list[float]


def run_pagerank_loop(inputs: Sequence[str], output: str, *, damping: float = 0.85, iterations: int = 20,
                      tolerance: float = 1e-6, partitions: int = 4, workers: int = 2,
                      coordinator: str | None = None, secret_file: str | None = None) -> LoopResult:
    """Run PageRank as a loop of jobs (see the module docstring); the ranks go to ``output``."""
    options = {"damping": damping, "iterations": iterations, "tolerance": tolerance, "partitions": partitions}
    if coordinator is not None:
        return _loop(inputs, output, options, {"coordinator": coordinator, "secret_file": secret_file})
    with LocalCluster(workers) as cluster:
        return _loop(inputs, output, options, {"coordinator": cluster.address, "secret_file": cluster.key_file})


def _loop(inputs: Sequence[str], output: str, options: dict[str, Any], cluster: dict[str, Any]) -> LoopResult:
    settings = dict(cluster, options=options, overwrite=True)
    scratch = tempfile.mkdtemp(prefix=".pagerank-loop-", dir=os.path.dirname(os.path.abspath(output)))
    try:
        previous = os.path.join(scratch, "setup")
        PageRankSetup.run(list(inputs), output=previous, output_format="jsonl", **settings)
        changes: list[float] = []
        while len(changes) < options["iterations"]:
            current = os.path.join(scratch, f"round-{len(changes) + 1}")
            result = PageRankRound.run([previous], output=current, output_format="jsonl", **settings)
            changes.append(result.counter("pagerank", CHANGE) * CHANGE_UNIT)
            shutil.rmtree(previous)
            previous = current
            if changes[-1] < options["tolerance"]:
                break
        final = PageRankRanks.run([previous], output=output, **settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return LoopResult(final, len(changes), changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="edge list files or folders")
    parser.add_argument("-o", "--output", required=True, help="folder for node<TAB>rank (replaced if it exists)")
    parser.add_argument("--damping", type=float, default=0.85)
    parser.add_argument("--iterations", type=int, default=20, help="the most rounds to run [default: 20]")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="stop below this L1 change [default: 1e-6]")
    parser.add_argument("--partitions", type=int, default=4, help="reduce tasks of each job [default: 4]")
    parser.add_argument("-w", "--workers", type=int, default=2, help="local worker processes [default: 2]")
    parser.add_argument("--coordinator", help="run on this cluster instead of local workers")
    parser.add_argument("--secret-file", help="the cluster key of --coordinator")
    args = parser.parse_args(argv)
    try:
        loop = run_pagerank_loop(args.inputs, args.output, damping=args.damping, iterations=args.iterations,
                                 tolerance=args.tolerance, partitions=args.partitions, workers=args.workers,
                                 coordinator=args.coordinator, secret_file=args.secret_file)
    except pymr.JobFailed as exc:
        print(f"pagerank_loop: error: {exc}", file=sys.stderr)
        return 1
    except pymr.PymrError as exc:
        print(f"pagerank_loop: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps({"output": loop.result.output_dir, "rounds": loop.rounds, "l1_changes": loop.changes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
