"""Cost of the rational-quadratic spline coupling: kernels per call and sampling time.

Run ``python benchmarks/spline_cost.py``; writes ``benchmarks/results/spline_cost.json``.
One torch thread. Measures (1) the aten operators of one spline call on (128, 1) inputs,
forward and backward, (2) microseconds per spline call (best of five rounds): the
inverse on 4,096 inputs as drawing makes it, with and without the log-determinant, and
forward + backward on 128 and 640 rows as training makes it, and (3) 200 data sets x
1,000 posterior draws of a two-parameter estimator with ``coupling="spline"`` and with
the default affine coupling (best of 3). ``--compile`` also times (2) with the spline
function under ``torch.compile``.
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


def microseconds(call, rounds: int = 5, per_round: int = 100) -> float:
    """Best of ``rounds`` mean times of ``call()``, in microseconds."""
    for _ in range(20):
        call()
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            call()
        best = min(best, (time.perf_counter() - start) / per_round)
    return round(best * 1e6, 1)


def call_microseconds(spline=rational_quadratic_spline) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 1, generator=gen)
    params = torch.randn(4096, 1, 23, generator=gen)
    out = {}
    with torch.inference_mode():
        for log_det in (True, False):
            out[f"inverse_4096_log_det_{log_det}"] = microseconds(
                lambda ld=log_det: spline(x, params, inverse=True, log_det=ld))
    for rows in (128, 640):
        xr = x[:rows].clone().requires_grad_()
        pr = params[:rows].clone().requires_grad_()

        def step(xr=xr, pr=pr):
            y, ladj = spline(xr, pr)
            (y.sum() + ladj.sum()).backward()

        out[f"forward_backward_{rows}"] = microseconds(step)
    return out


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
    parser.add_argument("--compile", action="store_true",
                        help="also time the spline call under torch.compile (needs a C++ "
                             "compiler; one graph per shape, compiled on first use)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "aten_ops_per_spline_call_fwd_bwd": ops_per_call(),
        "spline_call_us": call_microseconds(),
        "sample_200x1000_s": {c: sampling_seconds(c) for c in ("spline", "affine")},
        "torch": torch.__version__,
    }
    if args.compile:
        start = time.perf_counter()
        compiled = torch.compile(rational_quadratic_spline, dynamic=False)
        result["compiled_spline_call_us"] = call_microseconds(compiled)
        result["compile_and_time_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
