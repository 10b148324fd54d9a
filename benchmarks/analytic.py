"""Training time, posterior error and sampling throughput on the analytic models.

Run: ``python benchmarks/analytic.py [--n-simulations 10000] [--out FILE.json]``

For each model: fit with default settings on ``n_simulations`` pairs, compare 1,000
held-out posteriors with the exact ones, time 1,000 data sets x 1,000 draws in one call
(1 and 2 torch threads), and profile a training step (forward, backward, optimiser).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

import skcinn._torch_utils as tu
from skcinn import CINNPosteriorEstimator
from skcinn.simulation import as_datasets
from skcinn.simulators import GaussianMean, LinearRegression
from skcinn.training import make_optimizer


def _timed(fn, repeat: int = 30) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e3


def profile_step(est, model, rng) -> dict:
    """Milliseconds per training step of one batch, split into its parts."""
    theta = model.sample_prior(est.batch_size, rng)
    batch = est._tensors(as_datasets(model.simulate(theta, rng)), theta)
    net = est.network_.train()
    opt = make_optimizer(list(net.parameters()), 1e-9)

    def forward():
        return -net.log_prob(*batch).mean()

    def forward_backward():
        net.zero_grad()
        forward().backward()

    out = {"forward_ms": _timed(forward), "forward_backward_ms": _timed(forward_backward)}
    out["clip_ms"] = _timed(lambda: torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0))
    out["adam_ms"] = _timed(opt.step)
    with torch.no_grad():
        out["summary_forward_ms"] = _timed(lambda: net.condition(*batch[1:]))
    net.eval()
    return out


def run(n_simulations: int, threads: int, options: dict | None = None) -> dict:
    tu.CPU_THREADS = threads
    torch.set_num_threads(threads)
    results = {}
    for model in (GaussianMean(), LinearRegression()):
        name = type(model).__name__
        est = CINNPosteriorEstimator(n_simulations=n_simulations, random_state=0, device="cpu",
                                     **(options or {}))
        start = time.perf_counter()
        est.fit(model.simulate, model.prior)
        fit_s = time.perf_counter() - start
        rng = np.random.default_rng(123)
        theta = model.sample_prior(1000, rng)
        X = model.simulate(theta, rng)
        sampling = {}
        for n_threads in (1, 2):
            tu.CPU_THREADS = n_threads
            start = time.perf_counter()
            draws = est.sample_posterior(X, n_samples=1000, random_state=0)
            sampling[f"threads_{n_threads}_s"] = time.perf_counter() - start
        tu.CPU_THREADS = 1
        mean, cov = model.posterior(X)
        sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        results[name] = {
            "fit_seconds": fit_s,
            "epochs": est.n_iter_,
            "seconds_per_epoch": fit_s / est.n_iter_,
            "mean_error_in_sd_median": float(np.median(np.abs(draws.mean(1) - mean) / sd)),
            "mean_error_in_sd_p90": float(np.quantile(np.abs(draws.mean(1) - mean) / sd, 0.9)),
            "sd_relative_error_median": float(np.median(np.abs(draws.std(1) / sd - 1))),
            "sample_1000x1000_seconds": sampling,
            "step_profile_ms": profile_step(est, model, rng),
        }
        print(name, json.dumps(results[name], indent=1), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-simulations", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--out", default="benchmarks/results/analytic.json")
    parser.add_argument("--options", default="{}",
                        help='estimator arguments as JSON, e.g. \'{"coupling": "affine"}\'')
    args = parser.parse_args()
    options = json.loads(args.options)
    results = run(args.n_simulations, args.threads, options)
    meta = {
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": __import__("os").cpu_count(),
        "n_simulations": args.n_simulations, "threads": args.threads, "options": options,
    }
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
