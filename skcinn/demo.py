"""The demo: fit a built-in model, then check its posteriors against the truth."""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import simulators
from .estimator import CINNPosteriorEstimator

# model name -> (constructor, summary network); analytic models also get exact posteriors
MODELS = {
    "linear_regression": (simulators.LinearRegression, "auto"),
    "gaussian_mean": (simulators.GaussianMean, "auto"),
    "ricker": (lambda: simulators.Ricker(n_steps=(50, 100)), "tcn"),
    "sir": (lambda: simulators.SIR(n_days=100), "tcn"),
    "ddm": (lambda: simulators.DiffusionDecisionModel(n_trials=(50, 150)), "deepset"),
    "gene_expression": (lambda: simulators.TelegraphModel(n_cells=(100, 300)), "deepset"),
    "two_moons": (simulators.TwoMoons, "auto"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skcinn demo",
        description="Fit CINNPosteriorEstimator on a built-in model and print its posteriors "
        "next to the truth (and the exact posterior where one is known), with calibration.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="linear_regression")
    parser.add_argument("--n-simulations", type=int, default=10_000)
    parser.add_argument("--max-iter", type=int, default=200,
                        help="maximum epochs (the adaptive schedule usually stops earlier)")
    parser.add_argument("--n-test", type=int, default=500, help="held-out data sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


def run(argv: list[str] | None = None) -> dict:
    """Run the demo; returns the summary numbers it prints."""
    args = _parser().parse_args(argv)
    make, summary = MODELS[args.model]
    model = make()
    est = CINNPosteriorEstimator(
        n_simulations=args.n_simulations, max_iter=args.max_iter, summary_network=summary,
        random_state=args.seed, verbose=0 if args.quiet else 1,
    )
    print(f"skcinn demo: {args.model}, {args.n_simulations} simulations, "
          f"up to {args.max_iter} epochs", flush=True)
    start = time.perf_counter()
    est.fit(model.simulate, model.prior)
    fit_time = time.perf_counter() - start
    print(f"trained in {fit_time:.1f} s ({est.n_iter_} epochs, device {est.device_})\n")

    rng = np.random.default_rng(args.seed + 1)
    theta = model.sample_prior(args.n_test, rng)
    X = model.simulate(theta, rng)
    start = time.perf_counter()
    draws = est.sample_posterior(X, n_samples=1000, random_state=args.seed)
    summary = {"fit_seconds": fit_time,
               "draws_per_second": draws.shape[0] * draws.shape[1] / (time.perf_counter() - start)}
    exact = model.posterior(X) if hasattr(model, "posterior") else None
    _print_posteriors(est.parameter_names_, theta, draws, exact)
    if exact is not None:
        summary.update(_compare_exact(draws, *exact))
    report = est.check_calibration(X, theta, n_samples=500, random_state=args.seed)
    print("\nCalibration and recovery on the held-out data sets:")
    print(report[["calibration_error", "sbc_rejected", "r2", "nrmse", "contraction"]]
          .round(3).to_string())
    print(f"\ndraws per second: {summary['draws_per_second']:,.0f}")
    summary["calibration_error"] = report["calibration_error"].to_dict()
    summary["r2"] = report["r2"].to_dict()
    return summary


def _print_posteriors(names, theta, draws, exact) -> None:
    mean, sd = draws.mean(axis=1), draws.std(axis=1)
    head = f"{'data set':>8} {'parameter':>9} {'true':>8}   {'skcinn mean ± sd':>18}"
    print(head + ("   exact mean ± sd" if exact is not None else ""))
    for i in range(min(5, len(theta))):
        for j, name in enumerate(names):
            line = (f"{i:>8} {name:>9} {theta[i, j]:>8.3f}   {mean[i, j]:>9.3f} ± "
                    f"{sd[i, j]:<6.3f}")
            if exact is not None:
                exact_sd = np.sqrt(exact[1][i, j, j])
                line += f"   {exact[0][i, j]:>8.3f} ± {exact_sd:<6.3f}"
            print(line)


def _compare_exact(draws, exact_mean, cov) -> dict:
    exact_sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    numbers = {
        "mean_error_in_sd": float(np.median(np.abs(draws.mean(1) - exact_mean) / exact_sd)),
        "sd_relative_error": float(np.median(np.abs(draws.std(1) / exact_sd - 1))),
    }
    print("\nAgainst the exact posterior (medians over data sets and parameters):")
    print(f"  |posterior mean - exact| / exact sd : {numbers['mean_error_in_sd']:.3f}")
    print(f"  |posterior sd / exact sd - 1|       : {numbers['sd_relative_error']:.3f}")
    return numbers
