"""Where a training step's time goes: forward, backward, gradient clipping, Adam, the
weight average, on the SBI benchmark tasks' own training pairs.

    python benchmarks/step_cost.py two_moons gaussian_mean

writes ``benchmarks/results/step_cost.json``. One torch thread; the estimator's default
network, built by a one-epoch fit on 10,000 pairs; batches of 128 as in training. Three
ways, interleaved in the same run: ``flat``, as training runs now (the parameters as
views of one tensor, ``skcinn._flat_parameters``, with ``training.clip_gradients``);
``clip_gradients``, the same per parameter tensor (what training did before); and
``clip_grad_norm_``, per tensor with ``torch.nn.utils.clip_grad_norm_`` (before that).
Milliseconds per step, the median of five rounds of 60 steps, and the number of
autograd nodes behind one batch's loss (parameters' gradient accumulators included):
most of a small network's step is paid per operator, not per element.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sbibm_harness import TASKS, training_pairs  # noqa: E402
from step_ab import graph_nodes, trained_parts  # noqa: E402

import skcinn  # noqa: E402
from skcinn._flat_parameters import FlatParameters  # noqa: E402
from skcinn.training import (  # noqa: E402
    WeightAverage,
    batch_log_prob,
    clip_gradients,
    make_optimizer,
)

OUT = Path(__file__).resolve().parent / "results" / "step_cost.json"
PHASES = ("forward", "backward", "clip", "adam", "average")


def _trained_parts(task_name: str, **options):
    """The default network (or one with the estimator ``options``) after one epoch on
    the harness's 10,000 pairs of ``task_name``, and the training tensors it was given."""
    theta, x = training_pairs(TASKS[task_name](), 10_000, 0)
    return trained_parts(skcinn, theta, x, **options)


def _graph_nodes(model, data) -> int:
    """Autograd nodes behind the loss of one batch of 128."""
    return graph_nodes(-batch_log_prob(model, tuple(t[:128] for t in data)).mean())


def _steps(model, data, clip, n: int, gen, flatten: bool = False) -> dict[str, float]:
    """Milliseconds per step in each phase over ``n`` steps; ``flatten``: the
    parameters as views of one tensor, as training holds them."""
    params = [p for p in model.parameters() if p.requires_grad]
    flat = FlatParameters(params) if flatten else None
    if flat is not None:
        params = [flat.parameter]
    optimizer, average = make_optimizer(params, 1e-4), WeightAverage(model, 0.99)
    totals = dict.fromkeys(PHASES, 0.0)
    order = torch.randperm(len(data[0]), generator=gen)[: n * 128]
    for index in order.split(128):
        batch = tuple(t[index] for t in data)
        t0 = time.perf_counter()
        loss = -batch_log_prob(model, batch).mean()
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=not flatten)
        loss.backward()
        t2 = time.perf_counter()
        clip(params)
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        average.update()
        loss.item()
        t5 = time.perf_counter()
        for phase, a, b in zip(PHASES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
            totals[phase] += b - a
    if flat is not None:
        flat.release()
    return {phase: 1e3 * total / n for phase, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {  # name: (clipping, parameters flattened)
        "clip_gradients": (lambda params: clip_gradients(params, 5.0), False),
        "clip_grad_norm_": (lambda params: torch.isfinite(
            nn.utils.clip_grad_norm_(params, 5.0)).item(), False),
        "flat": (lambda params: clip_gradients(params, 5.0), True),
    }
    results = {}
    for task in args.tasks:
        model, data = _trained_parts(task)
        gen = torch.Generator().manual_seed(0)
        rounds = {name: [] for name in variants}
        for _ in range(args.rounds + 1):  # the first round warms up, not recorded
            for name, (clipping, flatten) in variants.items():
                rounds[name].append(_steps(model, data, clipping, args.steps, gen, flatten))
        results[task] = {"autograd_nodes": _graph_nodes(model, data)} | {
            name: {phase: round(statistics.median(r[phase] for r in runs[1:]), 3)
                   for phase in PHASES} | {"step": round(statistics.median(
                       sum(r.values()) for r in runs[1:]), 3)}
            for name, runs in rounds.items()
        }
        print(task, json.dumps(results[task]))
    OUT.write_text(json.dumps({"command": "python benchmarks/step_cost.py " + " ".join(
        args.tasks), "torch_threads": 1, "ms_per_step": results}, indent=1))


if __name__ == "__main__":
    main()
