"""BayesFlow 2 runner (Keras 3, torch backend), run with ``.venvs/bayesflow/bin/python``.

The documented ``BasicWorkflow`` with a default ``CouplingFlow()`` (6 affine coupling
layers, MLP subnets, actnorm, random permutations) and the workflow's default AdamW at
5e-4; ``fit_offline`` with its defaults (100 epochs, batch 32, no validation data, no
early stopping). ``standardize="all"`` (theta and x z-scored, as in BayesFlow's own
examples and as sbi and skcinn do by default; the workflow's bare default standardises
theta only) -- ``--options '{"standardize": "inference_variables"}'`` restores it.
Set tasks get the harness's hand-made sufficient statistics as ``x``.
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
    os.environ["KERAS_BACKEND"] = "torch"
    c.main_guard(args.out, lambda: run(args))


def run(args) -> None:
    import numpy as np
    import torch

    c.set_torch_threads(torch, args.threads)
    import bayesflow as bf
    import keras

    keras.utils.set_random_seed(args.seed)
    data = c.load_data(args.data)
    options = json.loads(args.options)
    standardize = options.pop("standardize", "all")
    fit_kwargs = options.pop("fit", {})
    if options:
        raise ValueError(f"unknown options {sorted(options)}")

    f32 = np.float32
    train = {"theta": data["theta"].astype(f32), "x": data["x"].astype(f32)}
    fit, obs = c.Clock(), c.Clock()
    with fit.measure():
        workflow = bf.BasicWorkflow(
            inference_network=bf.networks.CouplingFlow(),
            inference_variables=["theta"],
            inference_conditions=["x"],
            standardize=standardize,
        )
        history = workflow.fit_offline(train, verbose=2, **fit_kwargs)  # a line per epoch
    with obs.measure():
        draws = workflow.sample(num_samples=data["n_draws"],
                                conditions={"x": data["x_obs"].astype(f32)})["theta"]
    losses = history.history.get("loss", [])
    info = {
        "versions": c.versions("bayesflow", "keras", "torch", "numpy"),
        "keras_backend": keras.backend.backend(),
        "torch_threads": torch.get_num_threads(),
        "standardize": standardize,
        "fit_kwargs": fit_kwargs,
        "final_loss": float(losses[-1]) if losses else None,
        "train_pairs": int(len(train["theta"])),
    }

    def amortized():
        out = workflow.sample(num_samples=data["n_amortized_draws"],
                              conditions={"x": data["x_amortized"].astype(f32)})["theta"]
        return np.asarray(out, dtype=np.float64)

    c.finish(args.out, data, fit, obs, len(losses), np.asarray(draws, dtype=np.float64), info,
             amortized)


if __name__ == "__main__":
    main()
