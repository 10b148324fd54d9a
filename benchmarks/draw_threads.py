"""Threads for drawing: 1,000 data sets x 1,000 draws with one thread, with two threads
that each draw whole chunks of data sets (what ``sample_posterior`` does when torch
allows the caller two threads), and with two intra-op torch threads instead, each with
both cores free and with the other core busy (a spinning process).

    python benchmarks/draw_threads.py gaussian_mean two_moons

writes ``benchmarks/results/draw_threads.json``: wall seconds, the median of three
calls per setting, settings interleaved. The estimator is the default network (fitted
for 5 epochs on the harness's 10,000 pairs: the cost of a draw depends on the
network's size, not on its training), drawing for the harness's amortisation sets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sbibm_harness import TASKS, amortization_sets, prior_box, training_pairs  # noqa: E402

from skcinn import CINNPosteriorEstimator, _torch_utils  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "draw_threads.json"
# setting: (threads the caller allows torch, intra-op threads the estimator uses)
SETTINGS = {"one thread": (1, 1), "two chunk threads": (2, 1), "two intra-op threads": (1, 2)}
SPIN = "import time\nt = time.time()\nwhile time.time() - t < {}: pass"


def _fitted(task_name: str):
    task = TASKS[task_name]()
    theta, x = training_pairs(task, 10_000, 0)
    options = {"parameter_bounds": prior_box(task)} if task.prior_kind == "uniform" else {}
    est = CINNPosteriorEstimator(max_iter=5, random_state=0, **options).fit(x, theta)
    return est, amortization_sets(task, 0, 1000)


def _seconds(est, X, caller: int, intra: int) -> float:
    torch.set_num_threads(caller)
    _torch_utils.CPU_THREADS = intra
    try:
        start = time.perf_counter()
        est.sample_posterior(X, n_samples=1000, random_state=2)
        return time.perf_counter() - start
    finally:
        _torch_utils.CPU_THREADS = 1
        torch.set_num_threads(1)


def _measure(est, X, repeats: int) -> dict[str, float]:
    times = {name: [] for name in SETTINGS}
    for _ in range(repeats):
        for name, (caller, intra) in SETTINGS.items():
            times[name].append(_seconds(est, X, caller, intra))
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", choices=list(TASKS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for task in args.tasks:
        est, X = _fitted(task)
        _seconds(est, X, 1, 1)  # warm up
        quiet = _measure(est, X, args.repeats)
        spin = subprocess.Popen([sys.executable, "-c", SPIN.format(600)])
        try:
            busy = _measure(est, X, args.repeats)
        finally:
            spin.kill()
        results[task] = {"both cores free": quiet, "other core busy": busy}
        print(task, json.dumps(results[task]))
    OUT.write_text(json.dumps({
        "command": "python benchmarks/draw_threads.py " + " ".join(args.tasks),
        "wall_seconds_1000x1000_draws": results}, indent=1))


if __name__ == "__main__":
    main()
