"""Online training with a slow simulator: next round simulated while the networks train.

Run: ``python benchmarks/online_overlap.py [--out benchmarks/results/online_overlap.json]``

A simulator that costs a fixed amount of CPU-free waiting per data set (as a call out to
an external program would) is fitted with ``online=True``; the same fit is timed with the
background simulation switched off (``skcinn.training._submit`` replaced by one that
submits nothing, so each round is simulated between epochs).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import skcinn.training as training
from skcinn import CINNPosteriorEstimator
from skcinn.simulators import GaussianMean

MODEL = GaussianMean(n_obs=20)


SECONDS_PER_SET = 5e-5


def slow_simulator(theta, rng):
    time.sleep(SECONDS_PER_SET * len(theta))
    return MODEL.simulate(theta, rng)


def fit_seconds(overlap: bool, epochs: int, n: int) -> tuple[float, float]:
    original = training._submit
    if not overlap:
        training._submit = lambda *args: None
    try:
        est = CINNPosteriorEstimator(online=True, n_simulations=n, max_iter=epochs,
                                     early_stopping=False, random_state=0, device="cpu")
        start = time.perf_counter()
        est.fit(slow_simulator, MODEL.prior)
        return time.perf_counter() - start, float(np.sum(est.history_["seconds"]))
    finally:
        training._submit = original


def main() -> None:
    global SECONDS_PER_SET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seconds-per-set", type=float, default=5e-5)
    parser.add_argument("--n-simulations", type=int, default=4000)
    parser.add_argument("--out", default="benchmarks/results/online_overlap.json")
    args = parser.parse_args()
    SECONDS_PER_SET = args.seconds_per_set
    simulate_s = SECONDS_PER_SET * args.n_simulations
    rows = {}
    for overlap in (False, True):
        total, train_s = fit_seconds(overlap, args.epochs, args.n_simulations)
        rows["overlapped" if overlap else "sequential"] = {
            "fit_seconds": total, "training_seconds": train_s,
            "simulation_seconds_per_round": simulate_s,
        }
        print(f"{'overlapped' if overlap else 'sequential':>10}: fit {total:.1f} s "
              f"(training {train_s:.1f} s, simulation {simulate_s:.1f} s per round, "
              f"{args.epochs} rounds)", flush=True)
    with open(args.out, "w") as fh:
        json.dump({"epochs": args.epochs, "n_simulations": args.n_simulations, **rows}, fh,
                  indent=1)


if __name__ == "__main__":
    main()
