"""Replay the adaptive schedule's stopping rules on recorded validation scores.

    python benchmarks/heldout_logdensity.py two_moons 10000 --bounded --history \
        >> benchmarks/results/schedule_histories.jsonl
    python benchmarks/schedule_replay.py benchmarks/results/schedule_histories.jsonl

A rule that only stops a fit *earlier* sees the same scores up to its stop, so its
outcome can be read off a recorded history without training again: the epoch it stops
at and the best validation score it keeps (the weights it keeps are those of that
score). The histories must come from fits with the estimator's default batch size,
validation fraction and patience. The package's own plateau rule (``training._update_best``
and ``training._lower_rate``) is replayed first and must stop where the fit did; then the
variants: ``delta=<d>``, a rate division counts as fruitless unless it raised the best
score by more than ``d`` nats (the package: by more than ``tol``), and ``reductions=<k>``,
at most ``k`` divisions (the package: three). Per history: epochs and the change of the
kept score; at the end the totals.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

from skcinn import training


def replay(scores, patience: int = 5, tol: float = 1e-4, delta: float | None = None,
           reductions: int = training.ADAPTIVE_REDUCTIONS) -> tuple[int, float]:
    """The epoch at which the schedule stops on ``scores`` and the best score it keeps."""
    state = training._State(training.History())
    optimizer = SimpleNamespace(param_groups=[{}])
    config = training.TrainingConfig()
    limit = training.ADAPTIVE_REDUCTIONS
    training.ADAPTIVE_REDUCTIONS = reductions
    try:
        for epoch, score in enumerate(scores, 1):
            if training._update_best(state, None, score, tol, patience, False) is None:
                continue
            best, last = state.history.best_score, state.best_at_reduction
            if delta is not None and last is not None and best <= last + delta:
                return epoch, best
            if training._lower_rate(state, optimizer, config) is not None:
                return epoch, best
    finally:
        training.ADAPTIVE_REDUCTIONS = limit
    return len(scores), state.history.best_score


def default_patience(budget: int) -> int:
    """The adaptive schedule's patience for ``budget`` simulations under the estimator's
    defaults (10 % held out for validation)."""
    return training.plateau_patience(training.TrainingConfig(),
                                     budget - int(round(0.1 * budget)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("histories", help="JSON lines of heldout_logdensity.py --history")
    parser.add_argument("--variants", nargs="+",
                        default=["delta=5e-4", "delta=1e-3", "delta=2e-3", "reductions=2"])
    args = parser.parse_args()
    variants = {"package": {}}
    for name in args.variants:
        key, value = name.split("=")
        variants[name] = {"delta": float(value)} if key == "delta" else {"reductions": int(value)}
    with open(args.histories) as lines:
        runs = sorted((json.loads(line) for line in lines if line.strip()),
                      key=lambda r: (r["task"], r["seed"]))
    totals = {name: [0, 0.0] for name in variants}
    print("task seed recorded-epochs | " + " | ".join(variants))
    for run in runs:
        scores = run.get("validation_scores")
        if not scores:
            raise SystemExit(f"{run['task']} seed {run['seed']}: no validation scores "
                             "(record with --history and early stopping)")
        patience = default_patience(run["budget"])
        _, kept = replay(scores, patience)
        cells = []
        for name, options in variants.items():
            epochs, best = replay(scores, patience, **options)
            totals[name][0] += epochs
            totals[name][1] += best - kept
            cells.append(f"{epochs} ({best - kept:+.4f})")
        print(f"{run['task']} {run['seed']} {run['epochs']} | " + " | ".join(cells))
    print("totals: " + "; ".join(f"{name} {n} epochs ({change:+.4f})"
                                 for name, (n, change) in totals.items()))


if __name__ == "__main__":
    main()
