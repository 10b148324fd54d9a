"""Throughput of ``skcinn.simulate`` with a slow per-parameter simulator, by ``n_jobs``.

Run: ``python benchmarks/simulation_throughput.py [--n 2000] [--n-jobs 1 2] [--out FILE]``

Three simulators of one parameter vector, wrapped by ``batch_simulator``:

* ``numpy 2 ms``: element-wise numpy work on a 4,096-vector, repeated until one call
  takes about 2 ms on this machine (calibrated at start; CPU-bound, one thread);
* ``sleep 2 ms``: ``time.sleep(0.002)`` (waits without using a core, like a simulator
  that calls out to another program or service);
* ``trivial``: a few microseconds, to show what the chunked path costs per simulation.

Each is timed through ``simulate`` (chunks of ``CHUNK_SIZE``, loky workers for
``n_jobs > 1``), best of ``--repeats`` runs after a warm-up run that starts the workers
(its extra time over the best run is ``start_s``: starting the loky workers, which
import skcinn and hence torch; paid once per session, as loky reuses its workers).
"""

from __future__ import annotations

import os

# One BLAS / OpenMP thread everywhere (the workers inherit it), so that n_jobs alone
# decides how many cores work.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from skcinn import simulate  # noqa: E402
from skcinn.simulation import CHUNK_SIZE, batch_simulator  # noqa: E402

TARGET_S = 0.002


def numpy_work(theta_i: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """A CPU-bound simulation: ``reps`` element-wise passes over a 4,096-vector."""
    x = theta_i[0] + rng.normal(size=4096)
    for _ in range(reps):
        x = np.sin(x) * 0.9 + 0.1 * x
    return np.array([x.mean(), x.std()]) + theta_i


def sleepy(theta_i: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A simulation that waits 2 ms without using a core."""
    time.sleep(TARGET_S)
    return theta_i + rng.normal(size=len(theta_i))


def trivial(theta_i: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Almost no work: the cost of the chunked path itself."""
    return theta_i + rng.normal(size=len(theta_i))


def prior(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two standard normal parameters."""
    return rng.normal(size=(n, 2))


def calibrate() -> int:
    """Repetitions of ``numpy_work`` that take about ``TARGET_S`` per call."""
    rng, theta = np.random.default_rng(0), np.zeros(2)
    reps = 10
    while True:
        start = time.perf_counter()
        for _ in range(20):
            numpy_work(theta, rng, reps)
        seconds = (time.perf_counter() - start) / 20
        if seconds > TARGET_S / 4:
            return max(1, round(reps * TARGET_S / seconds))
        reps *= 4


def time_simulate(fn, n: int, n_jobs: int, repeats: int) -> tuple[float, float]:
    """First-call seconds and best seconds of ``simulate`` for ``n`` simulations."""
    simulator = batch_simulator(fn)
    start = time.perf_counter()
    simulate(simulator, prior, n, random_state=0, n_jobs=n_jobs)
    first = time.perf_counter() - start
    best = np.inf
    for r in range(repeats):
        start = time.perf_counter()
        simulate(simulator, prior, n, random_state=r + 1, n_jobs=n_jobs)
        best = min(best, time.perf_counter() - start)
    return first, best


def run(n: int, jobs: list[int], repeats: int) -> dict:
    """Simulations per second for every simulator and ``n_jobs``."""
    reps = calibrate()
    simulators = {
        "numpy 2 ms": functools.partial(numpy_work, reps=reps),
        "sleep 2 ms": sleepy,
        "trivial": trivial,
    }
    rows = []
    for name, fn in simulators.items():
        single = None
        for n_jobs in jobs:
            first, best = time_simulate(fn, n, n_jobs, repeats)
            single = best if single is None else single
            rows.append({
                "simulator": name, "n_jobs": n_jobs, "n": n, "seconds": round(best, 4),
                "simulations_per_s": round(n / best, 1), "speedup": round(single / best, 2),
                "start_s": round(max(first - best, 0.0), 3),
            })
            print(f"  {name}, n_jobs={n_jobs} done", flush=True)
    return {
        "machine": {
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__,
        },
        "chunk_size": CHUNK_SIZE, "numpy_reps": reps, "backend": "loky", "repeats": repeats,
        "results": rows,
    }


def table(result: dict) -> str:
    """A Markdown table of the results."""
    lines = [
        "| simulator | n_jobs | simulations / s | speedup | worker start (s) |",
        "|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['simulator']} | {r['n_jobs']} | {r['simulations_per_s']:,.0f} | "
            f"{r['speedup']:.2f} | {r['start_s']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="simulations per run")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--out", type=Path,
        default=Path(__file__).parent / "results" / "simulation_throughput.json",
    )
    args = parser.parse_args()
    result = run(args.n, args.n_jobs, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
