"""Plumbing shared by the method runners ``run_*.py``.

Only the standard library and numpy: this module is imported from every virtual
environment (the project's, ``.venvs/sbi``, ``.venvs/bayesflow``).

A runner is called by ``benchmarks/sbibm_harness.py`` as::

    <venv python> run_<method>.py --data task.npz --out DIR --threads 1 --seed S \
        [--options JSON]

It reads the training pairs and observations from the npz file written by the harness
(keys documented in :func:`load_data`), trains with the method's documented defaults and
writes ``DIR/result.json`` (timings, epochs, peak memory, versions) and
``DIR/draws.npz`` (``draws``: posterior draws (n_observations, n_draws, n_params)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np


def parse_args(description: str) -> argparse.Namespace:
    """The command line every runner accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="npz file written by the harness")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", default="{}", help="JSON dict of method options")
    return parser.parse_args()


def limit_threads(n: int) -> None:
    """Cap BLAS/OpenMP threads; call before numpy/torch do any work.

    The harness also sets these variables in the subprocess environment, which is what
    actually takes effect for libraries that read them at import.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ[var] = str(n)


def set_torch_threads(torch, n: int) -> None:
    """Intra-op threads ``n``, inter-op threads 1."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (parallel work has started)
        pass


def load_data(path: str) -> dict:
    """Read the harness's npz file into a dict of arrays and scalars.

    Keys: ``theta`` (n, p); ``x`` (n, d) flat features (for set tasks: hand-made
    sufficient statistics); ``x_obs`` (n_obs, d); ``x_amortized`` (n_amortized, d);
    ``prior_kind`` ("uniform" or "gaussian"); ``prior_low``/``prior_high`` or
    ``prior_mean``/``prior_cov``; ``n_draws``; ``n_amortized_draws`` (0: skip the
    amortised-sampling timing); for set tasks
    also ``sets`` (n, n_max, f), ``set_lengths`` (n,), ``obs_sets``,
    ``obs_set_lengths``, ``amortized_sets``, ``amortized_set_lengths``.
    """
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    for key in ("prior_kind", "task"):
        if key in data:
            data[key] = str(data[key])
    for key in ("n_draws", "n_amortized_draws"):
        data[key] = int(data[key])
    return data


def unpad(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Padded sets (n, n_max, f) -> list of (n_i, f) arrays."""
    return [v[: int(k)] for v, k in zip(values, lengths, strict=True)]


class Clock:
    """Wall and CPU time (all threads of this process) of a block."""

    def __init__(self) -> None:
        self.wall = self.cpu = float("nan")

    @contextmanager
    def measure(self):
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.wall = time.perf_counter() - w0
            self.cpu = time.process_time() - c0


def outside_prior(draws: np.ndarray, data: dict) -> float | None:
    """Fraction of draws outside a bounded (uniform) prior's box; None otherwise."""
    if data.get("prior_kind") != "uniform":
        return None
    low, high = data["prior_low"], data["prior_high"]
    inside = np.all((draws >= low) & (draws <= high), axis=-1)
    return float(1.0 - inside.mean())


def versions(*names: str) -> dict:
    """Installed versions of the given distributions."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process (getrusage maxrss; KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0**2 if sys.platform == "darwin" else 1024.0)


def write_outputs(out_dir: str, result: dict, draws: np.ndarray | None) -> None:
    """``result.json`` (plus peak memory) and ``draws.npz``."""
    os.makedirs(out_dir, exist_ok=True)
    if draws is not None:
        np.savez(os.path.join(out_dir, "draws.npz"), draws=np.asarray(draws, dtype=np.float64))
    result = dict(result, peak_rss_mib=peak_rss_mib())
    tmp = os.path.join(out_dir, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, default=_jsonable)
    os.replace(tmp, os.path.join(out_dir, "result.json"))


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def main_guard(out_dir: str, body) -> None:
    """Run ``body()``; on an exception write ``result.json`` with the traceback, exit 1."""
    try:
        body()
    except BaseException as exc:  # noqa: BLE001 - report everything to the harness
        write_outputs(out_dir, {"status": "error", "error": repr(exc),
                                "traceback": traceback.format_exc()}, None)
        raise


def finish(out_dir: str, data: dict, fit: Clock, obs: Clock, epochs: int,
           draws: np.ndarray, info: dict, sample_amortized) -> None:
    """Write the results, time ``sample_amortized()`` (the 1,000 x 1,000 draws), rewrite.

    The first write (``sample_amortized_status: "running"``) keeps the fit and the
    observations' draws if the harness stops a slow amortised sampling.
    """
    amort = Clock()
    result = standard_result(data, fit, obs, amort, epochs, draws, None, info)
    if not data["n_amortized_draws"]:
        write_outputs(out_dir, dict(result, sample_amortized_status="skipped"), draws)
        return
    write_outputs(out_dir, dict(result, sample_amortized_status="running"), draws)
    with amort.measure():
        amortized = sample_amortized()
    result = standard_result(data, fit, obs, amort, epochs, draws, amortized, info)
    write_outputs(out_dir, dict(result, sample_amortized_status="done"), None)


def standard_result(data: dict, fit: Clock, obs: Clock, amort: Clock, epochs,
                    draws: np.ndarray, amortized_draws: np.ndarray | None,
                    info: dict) -> dict:
    """The fields every runner reports (``amortized_draws`` None: not timed)."""
    return {
        "status": "ok",
        "fit_wall_s": fit.wall,
        "fit_cpu_s": fit.cpu,
        "epochs": epochs,
        "sample_obs_wall_s": obs.wall,
        "sample_obs_cpu_s": obs.cpu,
        "sample_obs_shape": list(draws.shape),
        "sample_amortized_wall_s": None if amortized_draws is None else amort.wall,
        "sample_amortized_cpu_s": None if amortized_draws is None else amort.cpu,
        "sample_amortized_shape": None if amortized_draws is None else
        list(amortized_draws.shape),
        "outside_prior_obs": outside_prior(draws, data),
        "outside_prior_amortized": None if amortized_draws is None else
        outside_prior(amortized_draws, data),
        "nonfinite_draws": int(np.size(draws) - np.isfinite(draws).sum()),
        "method_info": info,
    }
