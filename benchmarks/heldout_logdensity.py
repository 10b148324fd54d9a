"""Held-out log density of skcinn on an SBI benchmark task: the quick measure behind the
settings compared in ``benchmarks/README.md`` ("Changes made", "Measured and not kept").

The training pairs are the peer harness's own (same seed, budget and task, so the same
pairs sbi and BayesFlow get); the score is the mean ``log_posterior`` of 4,000 fresh
pairs from the prior (each clipped at -50 nats), in the original parameter space, so it
compares across settings and support maps. Higher is better; the gap to the best
achievable value is the mean KL divergence from the true posterior.

    python benchmarks/heldout_logdensity.py two_moons 10000
    python benchmarks/heldout_logdensity.py slcp 10000 --options '{"coupling": "spline"}'
    python benchmarks/heldout_logdensity.py two_moons 1000 --bounded   # prior box as bounds
    python benchmarks/heldout_logdensity.py slcp 10000 --variant lu    # flow_variants.py
    python benchmarks/heldout_logdensity.py two_moons 10000 --c2st 10  # and C2ST on obs 1-10
    python benchmarks/heldout_logdensity.py two_moons 10000 --history  # per-epoch scores

It also reports the fit's CPU seconds, and with ``--draws`` the CPU seconds of 1,000
draws for each of the harness's 1,000 amortisation data sets (the figures behind the
set-task fit times and the rejection rounds in ``benchmarks/README.md``):

    python benchmarks/heldout_logdensity.py gaussian_mean 10000
    python benchmarks/heldout_logdensity.py slcp 1000 --bounded --draws \
        --options '{"support": "reject"}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sbibm_harness import (  # noqa: E402
    TASKS,
    amortization_sets,
    c2st,
    find_sbibm_tasks_dir,
    prior_box,
    training_pairs,
)

from skcinn import CINNPosteriorEstimator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("budget", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", default="{}", help="estimator arguments as JSON")
    parser.add_argument("--bounded", action="store_true",
                        help="pass the uniform prior's box as parameter_bounds")
    parser.add_argument("--variant", help="a network variant of flow_variants.py, e.g. lu")
    parser.add_argument("--draws", action="store_true",
                        help="time 1,000 x 1,000 draws on the harness's amortisation sets")
    parser.add_argument("--history", action="store_true",
                        help="also print each epoch's validation score and learning rate "
                             "(to replay a schedule's rules offline)")
    parser.add_argument("--c2st", type=int, default=0, metavar="N",
                        help="also score C2ST on the task's first N observations "
                             "(10,000 draws each, as the harness does)")
    args = parser.parse_args()
    if args.variant:
        import flow_variants

        flow_variants.apply(args.variant)
    task = TASKS[args.task]()
    theta, x = training_pairs(task, args.budget, args.seed)
    options = {k: tuple(v) if isinstance(v, list) else v
               for k, v in json.loads(args.options).items()}
    if args.bounded:
        if task.prior_kind != "uniform":
            parser.error(f"--bounded needs a uniform prior; {args.task}'s is {task.prior_kind}")
        options["parameter_bounds"] = prior_box(task)
    est = CINNPosteriorEstimator(random_state=0, **options)
    start, cpu = time.perf_counter(), time.process_time()
    est.fit(x, theta)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    draws_cpu_s = None
    if args.draws:  # the harness's amortisation sets (its seeding)
        x_amort = amortization_sets(task, args.seed, 1000)
        cpu = time.process_time()
        est.sample_posterior(x_amort, n_samples=1000, random_state=2)
        draws_cpu_s = round(time.process_time() - cpu, 2)
    scores = None
    if args.c2st:
        x_obs, reference, _ = task.observe(args.c2st, 10_000, find_sbibm_tasks_dir())
        draws = est.sample_posterior(x_obs, n_samples=10_000, random_state=args.seed + 1)
        scores = [round(c2st(ref, d), 3) for ref, d in zip(reference, draws, strict=True)]
    test_rng = np.random.default_rng(123)
    theta_test = task.sample_prior(4000, test_rng)
    log_density = est.log_posterior(task.simulate(theta_test, test_rng), theta_test)
    print(json.dumps({
        "task": args.task, "budget": args.budget, "seed": args.seed, "options": args.options,
        "variant": args.variant,
        "bounded": args.bounded, "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu_s, 1),
        "draws_1000x1000_cpu_s": draws_cpu_s, "epochs": est.n_iter_,
        "stop_reason": est.stop_reason_,
        "heldout_log_density": round(float(np.mean(np.maximum(log_density, -50))), 3),
        **({} if scores is None else {"c2st": scores,
                                      "c2st_mean": round(float(np.mean(scores)), 4)}),
        **({} if not args.history else {
            "validation_scores": [float(v) for v in est.validation_scores_],
            "learning_rates": [float(f"{v:.3g}") for v in est.history_["learning_rate"]]}),
    }))


if __name__ == "__main__":
    main()
