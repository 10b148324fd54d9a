"""Cost of the rational-quadratic spline coupling: kernels per call and sampling time.

Run ``python benchmarks/spline_cost.py``; writes ``benchmarks/results/spline_cost.json``.
One torch thread. Measures (1) the aten operators of one spline call on (128, 1) inputs,
forward and backward, and (2) 200 data sets x 1,000 posterior draws of a two-parameter
estimator with ``coupling="spline"`` and with the default affine coupling (best of 3).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from skcinn import CINNPosteriorEstimator
from skcinn.networks.spline import rational_quadratic_spline


def ops_per_call() -> int:
    x = torch.randn(128, 1, requires_grad=True)
    params = torch.randn(128, 1, 23, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y, ladj = rational_quadratic_spline(x, params)
        (y.sum() + ladj.sum()).backward()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def sampling_seconds(coupling: str, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (4000, 2))
    X = theta + 0.1 * rng.normal(size=theta.shape)
    est = CINNPosteriorEstimator(coupling=coupling, max_iter=2, random_state=0,
                                 device="cpu").fit(X, theta)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        est.sample_posterior(X[:200], n_samples=1000, random_state=0)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/spline_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "aten_ops_per_spline_call_fwd_bwd": ops_per_call(),
        "sample_200x1000_s": {c: sampling_seconds(c) for c in ("spline", "affine")},
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
