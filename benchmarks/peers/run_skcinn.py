"""skcinn runner: ``CINNPosteriorEstimator()`` defaults, ``fit(x, theta)``.

With the option ``n_estimators`` it trains a ``PosteriorEnsemble`` of that many such
estimators instead (one after the other, on this process's one thread).

A uniform prior's box is passed as ``parameter_bounds`` (as sbi gets the prior), so
draws stay inside it; ``--options '{"parameter_bounds": null}'`` leaves them out.

Run by ``benchmarks/sbibm_harness.py`` with the project's Python. Flat tasks: ``x``
(n, d). Set tasks: the raw sets (list of (n_i, f) arrays), embedded by skcinn's
DeepSet (``summary_network="auto"``). ``--options`` may override constructor
arguments (the smoke test shrinks the networks); lists become tuples.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402


def main() -> None:
    args = c.parse_args(__doc__)
    c.limit_threads(args.threads)
    c.main_guard(args.out, lambda: run(args))


def run(args) -> None:
    import numpy as np
    import torch

    from skcinn import CINNPosteriorEstimator, PosteriorEnsemble, training
    from skcinn._torch_utils import CPU_THREADS

    c.set_torch_threads(torch, args.threads)
    data = c.load_data(args.data)
    options = {k: tuple(v) if isinstance(v, list) else v
               for k, v in json.loads(args.options).items()}
    if "sets" in data:
        X = c.unpad(data["sets"], data["set_lengths"])
        X_obs = c.unpad(data["obs_sets"], data["obs_set_lengths"])
        X_amort = c.unpad(data["amortized_sets"], data["amortized_set_lengths"])
    else:
        X, X_obs, X_amort = data["x"], data["x_obs"], data["x_amortized"]
    theta = data["theta"]
    if data["prior_kind"] == "uniform" and "parameter_bounds" not in options:
        options["parameter_bounds"] = [
            (float(lo), float(hi)) for lo, hi in zip(data["prior_low"], data["prior_high"],
                                                     strict=True)
        ]

    n_members = options.pop("n_estimators", None)
    est = CINNPosteriorEstimator(random_state=args.seed, **options)
    if n_members:
        est = PosteriorEnsemble(est, n_estimators=n_members, random_state=args.seed)
    fit, obs = c.Clock(), c.Clock()
    with fit.measure():
        est.fit(X, theta)
    with obs.measure():
        draws = est.sample_posterior(X_obs, n_samples=data["n_draws"],
                                     random_state=args.seed + 1)
    members = getattr(est, "estimators_", [est])
    first = members[0]
    info = {
        "versions": c.versions("skcinn", "torch", "numpy", "scikit-learn"),
        "torch_threads": torch.get_num_threads(),
        "skcinn_cpu_threads": CPU_THREADS,
        "summary_network": first.summary_network_,
        "coupling": first.coupling_,
        "learning_rate": first.learning_rate,
        "learning_rate_init": first._learning_rate_init(),
        "ema_decay": first.ema_decay,
        "anneal_fraction": training.ANNEAL_FRACTION,
        "support": first.support_,
        "stop_reason": first.stop_reason_,
        "best_validation_score": first.best_validation_score_,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "train_pairs": int(len(theta)),
    }
    if n_members:
        info["n_estimators"] = n_members
        info["member_epochs"] = [int(m.n_iter_) for m in members]
        info["member_stop_reasons"] = [m.stop_reason_ for m in members]

    def amortized():
        return est.sample_posterior(X_amort, n_samples=data["n_amortized_draws"],
                                    random_state=args.seed + 2)

    c.finish(args.out, data, fit, obs, sum(int(m.n_iter_) for m in members), np.asarray(draws),
             info, amortized)


if __name__ == "__main__":
    main()
