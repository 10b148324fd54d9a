"""A training step's forward and backward pass, eager against ``torch.compile``.

    python benchmarks/compile_cost.py two_moons --coupling spline affine

writes ``benchmarks/results/compile_cost.json``. One torch thread; the estimator's
network with each coupling after one epoch on the task's 10,000 harness pairs (as
``step_cost.py`` builds it); batches of 128. The compiled step is the estimator's own
with ``compile=True`` (``training.step_log_prob``); it needs a C++ compiler, and its
first call compiles (timed; seconds once torch's kernel cache holds it). Milliseconds
per step (forward and backward only), the median of ``--rounds`` rounds of ``--steps``
steps, eager and compiled interleaved (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from skcinn.training import TrainingConfig, step_log_prob

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sbibm_harness import TASKS  # noqa: E402
from step_cost import _trained_parts  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "compile_cost.json"


def _milliseconds(model, log_prob, batch, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad()
        (-log_prob(*batch).mean()).backward()
    return 1e3 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--coupling", nargs="+", default=["spline", "affine"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for coupling in args.coupling:
        model, data = _trained_parts(args.task, coupling=coupling)
        batch = tuple(t[:128] for t in data)
        start = time.perf_counter()
        compiled = step_log_prob(model, TrainingConfig(compile=True), torch.Generator())
        _milliseconds(model, compiled, batch, 1)
        compile_s = time.perf_counter() - start
        times = {"eager": [], "compiled": []}
        for _ in range(args.rounds + 1):  # the first round warms up, not recorded
            times["eager"].append(_milliseconds(model, model.log_prob, batch, args.steps))
            times["compiled"].append(_milliseconds(model, compiled, batch, args.steps))
        results[coupling] = {name: round(statistics.median(t[1:]), 2)
                             for name, t in times.items()} | {"compile_s": round(compile_s, 1)}
        print(coupling, json.dumps(results[coupling]))
    OUT.write_text(json.dumps({"command": "python benchmarks/compile_cost.py " + " ".join(
        sys.argv[1:]), "torch_threads": 1, "ms_per_step_forward_backward": results},
        indent=1))


if __name__ == "__main__":
    main()
