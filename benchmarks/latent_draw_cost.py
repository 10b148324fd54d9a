"""CPU seconds of 1,000 data sets x 1,000 draws for each latent, in one process.

Each latent's estimator is fitted briefly (``max_iter`` epochs) on the peer harness's
Gaussian-mean pairs; the draws are then timed in alternating rounds, so that all
latents meet the same machine load (timings of separate processes drift more than a
latent's cost differs):

    python benchmarks/latent_draw_cost.py [--rounds 4] [--max-iter 5]

Writes ``benchmarks/results/latent_draw_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sbibm_harness import TASKS, training_pairs  # noqa: E402

from skcinn import CINNPosteriorEstimator  # noqa: E402
from skcinn.networks.latent import LATENTS  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "latent_draw_cost.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    theta, x = training_pairs(TASKS["gaussian_mean"](), 10_000, 0)
    estimators = {kind: CINNPosteriorEstimator(latent=kind, max_iter=args.max_iter,
                                               random_state=0).fit(x, theta)
                  for kind in LATENTS}
    seconds: dict[str, list[float]] = {kind: [] for kind in LATENTS}
    for _ in range(args.rounds):
        for kind, est in estimators.items():
            start = time.process_time()
            est.sample_posterior(x[:1000], n_samples=1000, random_state=2)
            seconds[kind].append(round(time.process_time() - start, 2))
    result = {"task": "gaussian_mean", "draws": "1,000 data sets x 1,000 draws",
              "cpu_seconds": seconds}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
