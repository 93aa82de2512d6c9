"""What the coordinator keeps of task results, and the job report it builds from them.

A map's result is slimmed as it arrives (``slim_result``): its location with interned
host names, and its counters packed into one flat tuple of interned names, since at
200,000 maps nested dicts would take gigabytes. ``job_report`` is the machine-readable
summary written to ``OUT/_REPORT.json`` and sent to the client.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import scheduler as sched

if TYPE_CHECKING:
    from .coordinator import ActiveJob


def storable(result: dict[str, Any]) -> dict[str, Any]:
    """A task's result as the state database keeps it (a map's packed counters unpacked)."""
    counters: dict[str, dict[str, int]] = {}
    for group, name, amount in _counter_items(result.get("counters")):
        counters.setdefault(group, {})[name] = amount
    return dict(result, counters=counters)


def slim_result(result: dict[str, Any]) -> dict[str, Any]:
    """What the coordinator keeps of a task's result. A map's counters are packed into one
    flat tuple of interned names: at 200,000 maps, nested dicts would take gigabytes."""
    if "map_output" in result:
        location = result["map_output"]
        result["map_output"] = {"path": location["path"], **{k: sys.intern(location[k]) for k in ("host", "address")
                                                              if isinstance(location.get(k), str)}}
        result["counters"] = tuple(item for group, names in result.get("counters", {}).items()
                                   for name, amount in names.items()
                                   for item in (sys.intern(group), sys.intern(name), amount))
    return result


def _counter_items(counters: Any) -> list[tuple[str, str, int]]:
    if isinstance(counters, tuple):
        return [counters[i:i + 3] for i in range(0, len(counters), 3)]  # type: ignore[misc]
    return [(group, name, amount) for group, names in (counters or {}).items() for name, amount in names.items()]


def job_report(active: ActiveJob) -> dict[str, Any]:
    """The machine-readable summary of a job: state, counters, tasks, attempts, time."""
    run = active.run
    totals: Counter[tuple[str, str]] = Counter()
    for task in run.all_tasks():
        if task.result:
            for group, name, amount in _counter_items(task.result.get("counters")):
                totals[(group, name)] += amount
    counters: dict[str, dict[str, int]] = {}
    for (group, name), amount in sorted(totals.items()):
        counters.setdefault(group, {})[name] = amount
    tasks = run.all_tasks()
    return {
        "job_id": run.job_id,
        "name": run.name,
        "state": run.state.value,
        "error": run.error,
        "error_detail": run.error_detail,
        "elapsed_s": round(time.monotonic() - active.started_s, 3),
        "output": active.committer.output_dir,
        "map_tasks": len(run.maps),
        "reduce_tasks": len(run.reduces),
        "attempts": sum(len(t.attempts) for t in tasks),
        "failed_attempts": run.failed_attempts,
        "killed_attempts": sum(a.state == "killed" for t in tasks for a in t.attempts),
        "backup_attempts": sum(a.backup for t in tasks for a in t.attempts),
        "excluded_workers": list(active.excluded_workers),
        "peak_task_rss_mib": round(max((t.result.get("max_rss_kb", 0) for t in tasks if t.result), default=0) / 1024, 1),
        "phases": {"map": _phase_times(run.maps), "reduce": _phase_times(run.reduces)},
        "bytes": {kind: counters.get("pymr", {}).get(name, 0) for kind, name in
                  (("read", "map input bytes"), ("shuffled", "shuffle bytes"), ("written", "output bytes"))},
        "largest_reduce_partitions": _largest_partitions(run.reduces),
        "counters": counters,
        **({"resumed": _resumed(active)} if active.committed_before else {}),
    }


def _resumed(active: ActiveJob) -> dict[str, Any]:
    """What a resumed job kept of the work committed before the coordinator restarted, and
    what of it ran again (maps whose worker did not come back with their output)."""
    run = active.run
    kept: dict[str, int] = {}
    rerun: dict[str, list[int]] = {}
    for kind, indices in active.committed_before.items():
        tasks = run.maps if kind == "map" else run.reduces
        again = [i for i in sorted(indices) if tasks[i].winner is not None
                 and int(tasks[i].winner.attempt_id.rsplit("-", 1)[1]) >= run.attempt_offset]
        kept[kind] = len(indices) - len(again)
        rerun[kind] = again
    return {"restarts": run.attempt_offset // 1000, "kept": kept, "ran_again": rerun}


def _phase_times(tasks: list[sched.Task]) -> dict[str, Any]:
    """Wall time of a phase (first attempt started to last attempt ended) and the time
    its winning attempts took, added up, in seconds."""
    attempts = [a for t in tasks for a in t.attempts]
    ends = [a.finished_s for a in attempts if a.finished_s is not None]
    winners = [t.winner for t in tasks if t.winner is not None and t.winner.finished_s is not None]
    return {"wall_s": round(max(ends) - min(a.started_s for a in attempts), 3) if ends else 0.0,
            "task_s": round(sum(w.finished_s - w.started_s for w in winners), 3)}  # type: ignore[operator]


def _largest_partitions(reduces: list[sched.Task], count: int = 5) -> list[dict[str, int]]:
    """The reduce partitions with the most input records, largest first (skew shows here)."""
    sizes = [(t.result.get("counters", {}).get("pymr", {}).get("reduce input records", 0), t.index)
             for t in reduces if t.result]
    return [{"partition": index, "records": records} for records, index in sorted(sizes, key=lambda s: (-s[0], s[1]))[:count]]
