"""jobs/pagerank.py and scripts/pagerank_loop.py against a plain-Python power iteration."""

from __future__ import annotations

import importlib.util
import json
import random
import sys

import pytest

from conftest import JOBS, ROOT, read_parts

SMALL_GRAPH = """\
# a small graph: H and I link nowhere (they only appear as targets),
# A -> C is given twice, G links to itself, and the last line is malformed
A B
A C
A C
B C
B I
C A
D C\tweight=3

F D
G G
E H
lonely
"""


def reference_pagerank(text: str, damping: float, iterations: int, tolerance: float) -> tuple[dict, int]:
    """Power iteration as the job documents it: ranks after the rounds run, and how many ran."""
    links: dict[str, set[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            links.setdefault(fields[0], set()).add(fields[1])
            links.setdefault(fields[1], set())
    n = len(links)
    rank = dict.fromkeys(links, 1 / n)
    for rounds in range(1, iterations + 1):
        dangling = sum(rank[v] for v, out in links.items() if not out)
        new = dict.fromkeys(links, (1 - damping) / n + damping * dangling / n)
        for u, out in links.items():
            for v in out:
                new[v] += damping * rank[u] / len(out)
        change = sum(abs(new[v] - rank[v]) for v in links)
        rank = new
        if change < tolerance:
            break
    return rank, rounds


def random_graph(nodes: int, edges: int, seed: int) -> str:
    """Edges with preferential targets; about a tenth of the nodes link nowhere."""
    rng = random.Random(seed)
    sources = [f"n{i}" for i in range(nodes) if rng.random() > 0.1]
    targets = [f"n{i}" for i in range(nodes)]
    weights = [1 / (i + 1) for i in range(nodes)]
    lines = [f"{rng.choice(sources)} {rng.choices(targets, weights)[0]}" for _ in range(edges)]
    return "# random graph\n" + "\n".join(lines) + "\n"


def run_pagerank(pymr, graph, out, *options):
    pymr.run("submit", JOBS / "pagerank.py", graph, "-o", out, "-w", "2", "--output-format", "jsonl", *options,
             check=True)
    ranks = dict(json.loads(line) for lines in read_parts(out) for line in lines)
    return ranks, json.loads((out / "_REPORT.json").read_text())


def assert_close(got: dict, expected: dict, within: float = 1e-12):
    assert got.keys() == expected.keys()
    worst = max(abs(got[v] - expected[v]) for v in expected)
    assert worst < within, f"ranks differ by up to {worst}"


def test_fixed_rounds_on_a_small_graph_with_dangling_nodes(pymr, tmp_path):
    graph = tmp_path / "small.txt"
    graph.write_text(SMALL_GRAPH)
    ranks, report = run_pagerank(pymr, graph, tmp_path / "out", "--tolerance", "0", "--iterations", "12",
                                 "--damping", "0.8")
    expected, rounds = reference_pagerank(SMALL_GRAPH, 0.8, 12, 0)
    assert rounds == 12 and report["counters"]["pagerank"]["rounds"] == 12
    assert_close(ranks, expected)
    assert abs(sum(ranks.values()) - 1) < 1e-12
    assert report["counters"]["pagerank"]["dangling nodes"] == 2
    assert report["counters"]["pagerank"]["nodes"] == 9 and report["counters"]["pagerank"]["edges"] == 9
    assert report["counters"]["pagerank"]["malformed lines"] == 1
    rounds_run = [s["round"] for s in report["steps"] if s.get("step") == 3]
    assert rounds_run == list(range(1, 13))


@pytest.mark.slow
def test_converges_on_a_random_graph_in_the_rounds_the_reference_needs(pymr, tmp_path):
    text = random_graph(1200, 4000, seed=3)
    graph = tmp_path / "random.txt"
    graph.write_text(text)
    ranks, report = run_pagerank(pymr, graph, tmp_path / "out", "--tolerance", "1e-5", "--iterations", "50",
                                 "--partitions", "3")
    expected, rounds = reference_pagerank(text, 0.85, 50, 1e-5)
    assert 5 < rounds < 50, "stops early, on the tolerance"
    assert report["counters"]["pagerank"]["rounds"] == rounds
    assert_close(ranks, expected)
    assert abs(sum(ranks.values()) - 1) < 1e-9
    changes = [s["counters"]["pagerank"]["L1 change (1e-12)"] * 1e-12 for s in report["steps"] if s.get("step") == 3]
    assert changes[-1] < 1e-5 <= changes[-2]
    assert len(read_parts(tmp_path / "out")) == 3


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # cloudpickle ships the driver's job classes by value
    spec.loader.exec_module(module)
    return module


def test_python_loop_driver_gives_the_same_ranks(pymr, tmp_path):
    text = random_graph(300, 1000, seed=3)
    graph = tmp_path / "random.txt"
    graph.write_text(text)
    engine, report = run_pagerank(pymr, graph, tmp_path / "engine", "--tolerance", "1e-3", "--iterations", "30")
    expected, rounds = reference_pagerank(text, 0.85, 30, 1e-3)

    loop = load_script("pagerank_loop").run_pagerank_loop([str(graph)], str(tmp_path / "loop"), tolerance=1e-3,
                                                          iterations=30)
    assert 3 < loop.rounds == report["counters"]["pagerank"]["rounds"] == rounds < 30
    looped = dict(loop.result)
    assert_close(looped, engine)
    assert_close(looped, expected)
    assert not list(tmp_path.glob(".pagerank-loop-*")), "the rounds' scratch folder is removed"


def test_bad_options_are_clear_errors(pymr, tmp_path):
    graph = tmp_path / "small.txt"
    graph.write_text(SMALL_GRAPH)
    result = pymr.run("submit", JOBS / "pagerank.py", graph, "-o", tmp_path / "out", "--damping", "1.5")
    assert result.returncode != 0 and "--damping must be at least 0 and below 1, got 1.5" in result.stderr
