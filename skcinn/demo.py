"""The demo: fit a built-in model and compare posteriors with the exact ones."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .estimator import CINNPosteriorEstimator
from .simulators import GaussianMean, LinearRegression

MODELS = {"linear_regression": LinearRegression, "gaussian_mean": GaussianMean}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skcinn demo",
        description="Fit CINNPosteriorEstimator on a model with a known posterior and "
        "print its posteriors next to the exact ones.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="linear_regression")
    parser.add_argument("--n-simulations", type=int, default=10_000)
    parser.add_argument("--max-iter", type=int, default=60, help="maximum epochs")
    parser.add_argument("--n-test", type=int, default=500, help="held-out data sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="one line per epoch")
    return parser


def run(argv: list[str] | None = None) -> dict:
    """Run the demo; returns the summary numbers it prints."""
    args = _parser().parse_args(argv)
    model = MODELS[args.model]()
    est = CINNPosteriorEstimator(
        n_simulations=args.n_simulations, max_iter=args.max_iter,
        random_state=args.seed, verbose=int(args.verbose),
    )
    print(f"skcinn demo: {args.model}, {args.n_simulations} simulations, "
          f"up to {args.max_iter} epochs")
    start = time.perf_counter()
    est.fit(model.simulate, model.prior)
    fit_time = time.perf_counter() - start
    print(f"trained in {fit_time:.1f} s ({est.n_iter_} epochs, device {est.device_})\n")

    rng = np.random.default_rng(args.seed + 1)
    theta = model.sample_prior(args.n_test, rng)
    X = model.simulate(theta, rng)
    start = time.perf_counter()
    draws = est.sample_posterior(X, n_samples=1000, random_state=args.seed)
    sample_time = time.perf_counter() - start
    exact_mean, cov = model.posterior(X)
    exact_sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    mean, sd = draws.mean(axis=1), draws.std(axis=1)

    names = list(est.parameter_names_)
    print(f"{'data set':>8} {'parameter':>9} {'true':>7}   {'exact mean ± sd':>17}   "
          f"{'skcinn mean ± sd':>17}")
    for i in range(min(5, args.n_test)):
        for j, name in enumerate(names):
            print(f"{i:>8} {name:>9} {theta[i, j]:>7.3f}   {exact_mean[i, j]:>8.3f} ± "
                  f"{exact_sd[i, j]:<6.3f}   {mean[i, j]:>8.3f} ± {sd[i, j]:<6.3f}")
    summary = {
        "mean_error_in_sd": float(np.median(np.abs(mean - exact_mean) / exact_sd)),
        "sd_relative_error": float(np.median(np.abs(sd / exact_sd - 1))),
        "fit_seconds": fit_time,
        "draws_per_second": draws.shape[0] * draws.shape[1] / sample_time,
    }
    print(f"\nOver {args.n_test} held-out data sets (medians over data sets and parameters):")
    print(f"  |posterior mean - exact| / exact sd : {summary['mean_error_in_sd']:.3f}")
    print(f"  |posterior sd / exact sd - 1|       : {summary['sd_relative_error']:.3f}")
    print(f"  draws per second                    : {summary['draws_per_second']:,.0f}")
    return summary
