"""Held-out log density of skcinn on a simulator of i.i.d. sets from ``skcinn.simulators``:
the check behind summary-network choices in ``benchmarks/README.md``, on a model whose
members are not summarised by their moments.

    python benchmarks/set_model_heldout.py telegraph
    python benchmarks/set_model_heldout.py telegraph --variant shallow_phi \
        --variant anneal=0

``telegraph`` is the gene-expression model (sets of 100-500 cells' mRNA counts, 3
parameters) with 10,000 training and 2,000 held-out data sets; ``levy_flight`` the
Lévy-flight model (500 trials of log response time, choice and condition, 6
parameters) with 5,000 and 1,000. The score is the mean ``log_posterior`` of the
held-out pairs (each clipped at -50 nats); higher is better. Pairs are simulated once
per model and seed and kept in ``benchmarks/results/.cache`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from skcinn import CINNPosteriorEstimator  # noqa: E402
from skcinn.simulators import LevyFlightModel, TelegraphModel  # noqa: E402

CACHE = Path(__file__).resolve().parent / "results" / ".cache"


def _log_rt(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[..., 0] = np.log(x[..., 0])
    return x


MODELS = {  # name: (model, training sets, held-out sets, preprocessing)
    "telegraph": (lambda: TelegraphModel(n_cells=(100, 500)), 10_000, 2_000, None),
    "levy_flight": (lambda: LevyFlightModel(n_trials=500, n_conditions=2), 5_000, 1_000,
                    _log_rt),
}


def pairs(name: str, seed: int) -> tuple[np.ndarray, list | np.ndarray]:
    """The model's (theta, data sets), simulated once and cached."""
    make, n_train, n_test, prepare = MODELS[name]
    path = CACHE / f"{name}_seed{seed}.npz"
    if not path.exists():
        model, rng = make(), np.random.default_rng(seed)
        theta = model.sample_prior(n_train + n_test, rng)
        x = model.simulate(theta, rng)
        x = prepare(x) if prepare else x
        CACHE.mkdir(parents=True, exist_ok=True)
        packed = np.empty(len(x), dtype=object)
        packed[:] = list(x)
        np.savez(path, theta=theta, x=packed)
    stored = np.load(path, allow_pickle=True)
    x = list(stored["x"])
    return stored["theta"], (np.stack(x) if prepare else x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", default="{}", help="estimator arguments as JSON")
    parser.add_argument("--variant", action="append", default=[],
                        help="a variant of flow_variants.py (repeat to combine)")
    args = parser.parse_args()
    if args.variant:
        import flow_variants

        for variant in args.variant:
            flow_variants.apply(variant)
    theta, x = pairs(args.model, args.seed)
    n_train = MODELS[args.model][1]
    options = {k: tuple(v) if isinstance(v, list) else v
               for k, v in json.loads(args.options).items()}
    est = CINNPosteriorEstimator(summary_network="deepset", random_state=0, **options)
    cpu = time.process_time()
    est.fit(x[:n_train], theta[:n_train])
    fit_cpu_s = time.process_time() - cpu
    log_density = est.log_posterior(x[n_train:], theta[n_train:])
    print(json.dumps({
        "model": args.model, "options": args.options, "variant": args.variant,
        "fit_cpu_s": round(fit_cpu_s, 1), "epochs": est.n_iter_,
        "stop_reason": est.stop_reason_,
        "heldout_log_density": round(float(np.mean(np.maximum(log_density, -50))), 3),
    }))


if __name__ == "__main__":
    main()
