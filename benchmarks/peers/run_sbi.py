"""sbi runner: ``NPE`` with its documented defaults, run with ``.venvs/sbi/bin/python``.

``--options '{"density_estimator": "nsf"}'`` selects the flow (default ``"maf"``, sbi's
default). Training: ``NPE(prior, density_estimator).append_simulations(theta, x)
.train()`` with sbi's defaults (batch 200, Adam 5e-4, 10 % validation, stop after 20
epochs without improvement, z-scored theta and x). Draws: ``posterior.sample_batched``
(one call for all observations), which by default rejects draws outside the prior's
support. Set tasks get the harness's hand-made sufficient statistics as ``x``.

The harness runs this with the working directory set to the run's output directory, so
sbi's TensorBoard logs (``sbi-logs/``) land there.
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


def make_prior(data: dict):
    import torch

    if data["prior_kind"] == "uniform":
        from sbi.utils import BoxUniform

        return BoxUniform(low=torch.as_tensor(data["prior_low"], dtype=torch.float32),
                          high=torch.as_tensor(data["prior_high"], dtype=torch.float32))
    return torch.distributions.MultivariateNormal(
        loc=torch.as_tensor(data["prior_mean"], dtype=torch.float32),
        covariance_matrix=torch.as_tensor(data["prior_cov"], dtype=torch.float32))


def run(args) -> None:
    import numpy as np
    import torch
    from sbi.inference import NPE

    c.set_torch_threads(torch, args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - sbi draws from the global generators
    data = c.load_data(args.data)
    options = json.loads(args.options)
    estimator = options.pop("density_estimator", "maf")
    train_kwargs = options.pop("train", {})
    if options:
        raise ValueError(f"unknown options {sorted(options)}")

    f32 = torch.float32
    theta = torch.as_tensor(data["theta"], dtype=f32)
    x = torch.as_tensor(data["x"], dtype=f32)
    x_obs = torch.as_tensor(data["x_obs"], dtype=f32)
    x_amort = torch.as_tensor(data["x_amortized"], dtype=f32)

    fit, obs = c.Clock(), c.Clock()
    with fit.measure():
        inference = NPE(prior=make_prior(data), density_estimator=estimator,
                        show_progress_bars=False)
        density = inference.append_simulations(theta, x).train(**train_kwargs)
        posterior = inference.build_posterior(density)
    with obs.measure():
        draws = posterior.sample_batched((data["n_draws"],), x=x_obs,
                                         show_progress_bars=False)
    draws = draws.transpose(0, 1).double().numpy()  # sample_batched: (n_draws, n_obs, p)
    summary = inference._summary  # epochs and losses (no public accessor in 0.27)
    info = {
        "versions": c.versions("sbi", "torch", "numpy", "zuko", "nflows"),
        "torch_threads": torch.get_num_threads(),
        "density_estimator": estimator,
        "train_kwargs": train_kwargs,
        "best_validation_loss": float(summary["best_validation_loss"][-1]),
        "reject_outside_prior": True,
        "train_pairs": int(len(theta)),
    }

    def amortized():
        out = posterior.sample_batched((data["n_amortized_draws"],), x=x_amort,
                                       show_progress_bars=False)
        return out.transpose(0, 1).double().numpy()

    c.finish(args.out, data, fit, obs, int(summary["epochs_trained"][-1]), draws, info,
             amortized)


if __name__ == "__main__":
    main()
