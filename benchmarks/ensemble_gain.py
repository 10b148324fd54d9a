"""What a ``PosteriorEnsemble`` gains over its members on an SBI benchmark task.

Trains ``--members`` estimators as one ensemble on the peer harness's training pairs
(same task, budget and seed as ``sbibm_harness.py``), then scores by C2ST against
sbibm's reference draws, per observation: every member alone, and the mixtures of its
first 2, 3, ... members (each drawn as the ensemble draws). Writes
``benchmarks/results/ensemble_gain_<task>_<coupling>.json``.

    python benchmarks/ensemble_gain.py two_moons --members 4 --observations 5
    python benchmarks/ensemble_gain.py two_moons --members 4 --coupling spline
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sbibm_harness import (  # noqa: E402
    RESULTS,
    TASKS,
    c2st_many,
    find_sbibm_tasks_dir,
    prior_box,
    training_pairs,
)

from skcinn import CINNPosteriorEstimator, PosteriorEnsemble  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--coupling", default="affine", choices=["affine", "spline"])
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument("--c2st-jobs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)

    task = TASKS[args.task]()
    theta, x = training_pairs(task, args.budget, args.seed)
    x_obs, reference, _ = task.observe(args.observations, 10_000, find_sbibm_tasks_dir())
    options = {"coupling": args.coupling}
    if task.prior_kind == "uniform":
        options["parameter_bounds"] = prior_box(task)
    start = time.process_time()
    ens = PosteriorEnsemble(CINNPosteriorEstimator(**options), n_estimators=args.members,
                            random_state=args.seed).fit(x, theta)
    fit_cpu = time.process_time() - start

    def draws_of(members) -> np.ndarray:
        sub = PosteriorEnsemble(ens.estimator, n_estimators=len(members))
        sub._adopt(members)
        return sub.sample_posterior(x_obs, n_samples=10_000, random_state=args.seed + 1)

    which = range(args.observations)
    singles = [c2st_many(reference, draws_of([m]), which, args.c2st_jobs)
               for m in ens.estimators_]
    mixtures = {j: c2st_many(reference, draws_of(ens.estimators_[:j]), which, args.c2st_jobs)
                for j in range(2, args.members + 1)}
    result = {
        "command": " ".join(["python", "benchmarks/ensemble_gain.py", *sys.argv[1:]]),
        "task": args.task, "budget": args.budget, "seed": args.seed,
        "coupling": args.coupling, "fit_cpu_s": fit_cpu,
        "member_epochs": [int(m.n_iter_) for m in ens.estimators_],
        "c2st_members": singles, "c2st_mixtures": {str(j): v for j, v in mixtures.items()},
        "mean_member": float(np.mean(singles)),
        "mean_mixture": {str(j): float(np.mean(v)) for j, v in mixtures.items()},
    }
    out = RESULTS / f"ensemble_gain_{args.task}_{args.coupling}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"members {np.mean(singles, axis=1).round(3)} (mean {result['mean_member']:.3f}); "
          "mixtures of 2..K: "
          f"{[round(v, 3) for v in result['mean_mixture'].values()]}; fit {fit_cpu:.0f} CPU s")


if __name__ == "__main__":
    main()
