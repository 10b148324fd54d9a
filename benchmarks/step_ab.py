"""A training step of this checkout against another checkout's, in one process.

    python benchmarks/step_ab.py two_moons gaussian_mean --code ../other-checkout

Timings of separate processes on a shared machine drift by more than the few per cent
an operator-level change is worth; here both versions of the package live in the same
interpreter (the other one imported as ``skcinn_other``) and rounds of steps alternate
between them. Both networks are the estimator's default after a one-epoch fit on the
SBI harness's 10,000 pairs, the other checkout's given this one's weights, and both
step through the same batches of 128 on one thread: forward, backward, clipping, Adam
and the weight average, as training runs them. Reports per task and checkout the median
milliseconds per step over ``--rounds`` rounds of ``--steps`` steps, the median of the
per-round ratios (this checkout / other), the autograd nodes behind one batch's loss
(gradient accumulators included) and the largest difference between the two
checkouts' log densities of that batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sbibm_harness import TASKS, training_pairs  # noqa: E402

import skcinn  # noqa: E402


def load_other(checkout: Path, name: str = "skcinn_other") -> ModuleType:
    """Import ``checkout``'s ``skcinn`` package under ``name`` (its imports are relative)."""
    init = checkout / "skcinn" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def trained_parts(package: ModuleType, theta, x, **options):
    """``package``'s default network (or one with the estimator ``options``) after one
    epoch on ``(theta, x)``, and the training tensors it was given."""
    fitting, seen = package._fitting, {}
    train = fitting.train

    def keep(model, tensors, *args, **kwargs):
        seen["tensors"] = tensors
        return train(model, tensors, *args, **kwargs)

    fitting.train = keep
    try:
        est = package.CINNPosteriorEstimator(max_iter=1, random_state=0, **options).fit(
            x, theta)
    finally:
        fitting.train = train
    return est.network_.train(), seen["tensors"]


class Stepper:
    """One checkout's training step on its own network, flattened as training holds it."""

    def __init__(self, package: ModuleType, model, data) -> None:
        self.training, self.model, self.data = package.training, model, data
        params = [p for p in model.parameters() if p.requires_grad]
        self.flat = package._flat_parameters.FlatParameters(params)
        self.params = [self.flat.parameter]
        self.optimizer = self.training.make_optimizer(self.params, 1e-4)
        self.average = self.training.WeightAverage(model, 0.99)

    def loss(self, batch) -> torch.Tensor:
        return -self.training.batch_log_prob(self.model, batch).mean()

    def run(self, order: torch.Tensor) -> float:
        """Milliseconds per step over the batches of ``order``."""
        start, n = time.perf_counter(), 0
        for index in order.split(128):
            loss = self.loss(tuple(t[index] for t in self.data))
            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
            self.training.clip_gradients(self.params, 5.0)
            self.optimizer.step()
            self.average.update()
            loss.item()
            n += 1
        return 1e3 * (time.perf_counter() - start) / n


def graph_nodes(loss: torch.Tensor) -> int:
    """Autograd nodes behind ``loss``."""
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(parent for parent, _ in node.next_functions)
    return len(seen)


def compare(task: str, other: ModuleType, steps: int, rounds: int) -> dict:
    theta, x = training_pairs(TASKS[task](), 10_000, 0)
    mine, data = trained_parts(skcinn, theta, x)
    theirs, _ = trained_parts(other, theta, x)
    theirs.load_state_dict(mine.state_dict())
    batch = tuple(t[:128] for t in data)
    with torch.no_grad():
        difference = (mine.log_prob(*batch) - theirs.log_prob(*batch)).abs().max().item()
    steppers = {"this": Stepper(skcinn, mine, data), "other": Stepper(other, theirs, data)}
    nodes = {name: graph_nodes(s.loss(batch)) for name, s in steppers.items()}
    gen = torch.Generator().manual_seed(0)
    times = {name: [] for name in steppers}
    for r in range(rounds + 1):  # the first round warms up, not recorded
        order = torch.randperm(len(data[0]), generator=gen)[: steps * 128]
        for name, stepper in (steppers.items() if r % 2 else reversed(steppers.items())):
            times[name].append(stepper.run(order))
    ratios = [a / b for a, b in zip(times["this"][1:], times["other"][1:], strict=True)]
    return {
        "ms_per_step": {k: round(statistics.median(v[1:]), 3) for k, v in times.items()},
        "ratio_this_to_other": round(statistics.median(ratios), 3),
        "autograd_nodes": nodes,
        "max_log_prob_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", choices=list(TASKS))
    parser.add_argument("--code", type=Path, required=True, help="the other checkout")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    other = load_other(args.code.resolve())
    for task in args.tasks:
        print(task, json.dumps(compare(task, other, args.steps, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
