"""skcinn against sbi and BayesFlow on the SBI benchmark tasks, in one run.

For every task x budget x seed, the harness simulates ONE set of training pairs
(theta, x), draws the observations and the reference posterior draws, and writes them to
an ``.npz`` file. Each method then runs in its own virtual environment as a subprocess
(``benchmarks/peers/run_<method>.py``), reads that file, trains with its documented
defaults and writes its posterior draws; the harness scores them by C2ST against the
reference draws and writes ``benchmarks/results/sbibm_<timestamp>.json`` (plus a
Markdown table and a figure).

Methods (peers are installed by ``benchmarks/peers/install.sh``):

* ``skcinn``     -- ``CINNPosteriorEstimator()`` defaults, ``fit(x, theta)``; sets raw
  (DeepSet). Runs with the project's Python (the one running this script).
* ``skcinn_spline`` -- the same with ``coupling="spline"``.
* ``skcinn_reject`` -- the same with ``support="reject"`` (a uniform prior's box is kept
  by rejecting draws, not by the probit map).
* ``skcinn_spline_reject`` -- both: ``coupling="spline", support="reject"``.
* ``skcinn_spline_truncate`` -- ``coupling="spline", support="truncate"``: rejection
  sampling as above, trained on the likelihood of the flow truncated to the box.
* ``skcinn_spline6_truncate`` -- the same with ``n_coupling_blocks=6`` (two more than
  the default), for the posteriors with four separated modes (SLCP).
* ``skcinn_ensemble`` / ``skcinn_spline_ensemble`` -- a ``PosteriorEnsemble`` of
  ``ENSEMBLE_SIZE`` such estimators (affine / spline), trained one after the other.
* ``sbi_maf``    -- sbi ``NPE`` (default MAF), ``.venvs/sbi``.
* ``sbi_nsf``    -- sbi ``NPE(density_estimator="nsf")``, ``.venvs/sbi``.
* ``bayesflow``  -- BayesFlow 2 ``BasicWorkflow`` + ``CouplingFlow()``, ``.venvs/bayesflow``.

Tasks: ``two_moons``, ``slcp``, ``gaussian_linear``, ``gaussian_mixture``,
``bernoulli_glm`` (sbibm's tasks; observations 1-10 and reference posterior draws read
from the data files shipped inside the ``sbibm`` package in ``.venvs/sbi``; only
``gaussian_linear`` works without them, from its exact posterior), and the i.i.d.-set
tasks ``gaussian_mean`` and ``linear_regression`` (skcinn's models, set sizes 5-50,
exact posteriors): skcinn gets the raw sets, sbi and BayesFlow hand-made sufficient
statistics (feature means, means of all pairwise products, n).

Threads: every method subprocess runs with ONE torch intra-op thread (and
OMP/MKL/OpenBLAS limited to 1). skcinn always trains on one thread
(``skcinn._torch_utils.CPU_THREADS``), the machine has 2 cores that are shared with
other work, and one thread per method keeps the comparison like for like.

C2ST (Lueckmann et al., 2021, as in sbibm): reference draws and method draws are
standardised by the reference's mean and sd; an ``MLPClassifier`` (ReLU, two hidden
layers of 10 x dim, Adam, ``max_iter=10000``) is scored by 5-fold shuffled
cross-validated accuracy; 0.5 = indistinguishable, 1 = disjoint.

Usage (from the repository root, project venv active)::

    python benchmarks/sbibm_harness.py list
    python benchmarks/sbibm_harness.py run --tasks two_moons slcp gaussian_linear \\
        --budgets 1000 10000 --seeds 0 --timeout 900
    python benchmarks/sbibm_harness.py score benchmarks/results/sbibm_<ts>.json
    python benchmarks/sbibm_harness.py report benchmarks/results/sbibm_<ts>.json

``run`` writes the results JSON after every method, so an interrupted run keeps what it
finished; ``score`` fills in C2ST values left out (``--c2st-observations``, ``--no-c2st``)
from the draws kept in the work directory; ``report`` re-renders table and figure.
"""

from __future__ import annotations

import argparse
import bz2
import datetime as _dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"
VENVS = PEERS / ".venvs"
RESULTS = ROOT / "benchmarks" / "results"
WORK = PEERS / ".work"

N_OBSERVATIONS = 10
N_REFERENCE = 10_000
N_AMORTIZED_SETS = 1_000
N_AMORTIZED_DRAWS = 1_000
ENSEMBLE_SIZE = 4
DEFAULT_TASKS = ("two_moons", "slcp", "gaussian_linear", "gaussian_mixture", "bernoulli_glm",
                 "gaussian_mean", "linear_regression")
DEFAULT_BUDGETS = (1_000, 10_000, 100_000)
ADAPTIVE_SINCE = "20261125_180000"
"""skcinn runs recorded before this run id trained with the earlier default schedule
(a cosine over 60 epochs, patience 20); :func:`merge` labels them ``<method>_cosine60``."""
AVERAGE_SINCE = "20261125_210000"
"""From this run id on, skcinn runs record ``ema_decay``; those between
:data:`ADAPTIVE_SINCE` and here that do not (they trained without the weight average)
are labelled ``<method>_no_ema``."""
ANNEALED_AFTER = 0.8
"""skcinn runs that record ``ema_decay`` but not ``anneal_fraction`` trained before the
adaptive schedule's final anneal (over the last fifth of ``max_iter``); it changes only
fits that ran past this share of ``max_iter``, which :func:`merge` labels
``<method>_no_anneal``. The others are what today's defaults give."""
EARLIER = {"_cosine60": ":", "_no_ema": "--", "_no_anneal": "-.", "_lr2e-3": (0, (1, 3))}
"""Labels of skcinn runs under earlier defaults, with their line style in the figure.
``_lr2e-3``: runs with spline coupling that do not record ``learning_rate_init``
trained at 2e-3, before ``learning_rate_init="auto"`` gave the spline 6e-3."""
TIMING_NOTE = ("Timings are wall-clock and CPU seconds on a 2-core machine whose cores are "
               "shared with other jobs; they are noisy (load average recorded per run). "
               "C2ST is not affected.")


class TaskUnavailable(RuntimeError):
    """The task needs data (sbibm's files) that are not installed."""


# ------------------------------------------------------------------------ sbibm files


def find_sbibm_tasks_dir() -> Path | None:
    """The ``sbibm/tasks`` folder (data files) inside a peer venv, or ``$SBIBM_TASKS_DIR``."""
    env = os.environ.get("SBIBM_TASKS_DIR")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for path in sorted(VENVS.glob("*/lib/python*/site-packages/sbibm/tasks")):
        if (path / "two_moons" / "files").is_dir():
            return path
    return None


def _read_csv(path: Path) -> np.ndarray:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2)


def sbibm_observations(tasks_dir: Path | None, name: str, n_obs: int, n_ref: int):
    """Observations 1..n_obs (n_obs, d) and their reference draws (n_obs, n_ref, p)."""
    if tasks_dir is None or not (tasks_dir / name / "files").is_dir():
        raise TaskUnavailable(f"{name}: sbibm's data files not found (install sbibm into "
                              "benchmarks/peers/.venvs/sbi or set SBIBM_TASKS_DIR)")
    files = tasks_dir / name / "files"
    x_obs, refs = [], []
    for i in range(1, n_obs + 1):
        folder = files / f"num_observation_{i}"
        x_obs.append(_read_csv(folder / "observation.csv")[0])
        refs.append(_read_csv(folder / "reference_posterior_samples.csv.bz2")[:n_ref])
    return np.stack(x_obs), np.stack(refs)


# ------------------------------------------------------------------------------ tasks


@dataclass
class Task:
    """A benchmark task: prior, simulator, observations and reference posterior draws."""

    name: str
    n_params: int
    prior_kind: str  # "uniform" or "gaussian"
    prior: dict  # low/high or mean/cov
    sample_prior: object  # (n, rng) -> (n, p)
    simulate: object  # (theta, rng) -> (n, d) or list of (n_i, f) sets
    observe: object  # (n_obs, n_ref, tasks_dir) -> (x_obs, reference, source)
    is_set: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def prior_arrays(self) -> dict:
        if self.prior_kind == "uniform":
            return {"prior_low": np.asarray(self.prior["low"], float),
                    "prior_high": np.asarray(self.prior["high"], float)}
        return {"prior_mean": np.asarray(self.prior["mean"], float),
                "prior_cov": np.asarray(self.prior["cov"], float)}


def _box(model) -> dict:
    return {"low": np.full(model.n_params, model.low), "high": np.full(model.n_params, model.high)}


def _sbibm_observe(name):
    def observe(n_obs, n_ref, tasks_dir):
        x_obs, ref = sbibm_observations(tasks_dir, name, n_obs, n_ref)
        return x_obs, ref, f"sbibm files ({name}, num_observation 1-{n_obs})"
    return observe


def _two_moons() -> Task:
    from skcinn.simulators import TwoMoons

    m = TwoMoons()
    return Task("two_moons", 2, "uniform", _box(m), m.sample_prior, m.simulate,
                _sbibm_observe("two_moons"), notes="skcinn.simulators.TwoMoons")


def _slcp() -> Task:
    from skcinn.simulators import SLCP

    m = SLCP()
    return Task("slcp", 5, "uniform", _box(m), m.sample_prior, m.simulate,
                _sbibm_observe("slcp"), notes="skcinn.simulators.SLCP")


def _gaussian_linear() -> Task:
    from skcinn.simulators import GaussianLinear

    m = GaussianLinear()

    def observe(n_obs, n_ref, tasks_dir):
        try:
            return _sbibm_observe("gaussian_linear")(n_obs, n_ref, tasks_dir)
        except TaskUnavailable:
            rng = np.random.default_rng(20_240_601)
            x_obs = m.simulate(m.sample_prior(n_obs, rng), rng)
            ref = m.sample_posterior(x_obs, n_ref, rng)
            return x_obs, ref, "exact posterior (skcinn GaussianLinear), own observations"

    cov = m.prior_var * np.eye(m.n_params)
    return Task("gaussian_linear", m.n_params, "gaussian",
                {"mean": np.zeros(m.n_params), "cov": cov}, m.sample_prior, m.simulate,
                observe, notes="skcinn.simulators.GaussianLinear")


def _gaussian_mixture() -> Task:
    # sbibm's gaussian_mixture: theta ~ U(-10, 10)^2, x ~ 0.5 N(theta, I) + 0.5 N(theta, 0.01 I)
    low, high = np.full(2, -10.0), np.full(2, 10.0)

    def sample_prior(n, rng):
        return rng.uniform(low, high, size=(n, 2))

    def simulate(theta, rng):
        theta = np.asarray(theta, float).reshape(-1, 2)
        scale = np.where(rng.random(len(theta)) < 0.5, 1.0, 0.1)[:, None]
        return theta + scale * rng.standard_normal(theta.shape)

    return Task("gaussian_mixture", 2, "uniform", {"low": low, "high": high}, sample_prior,
                simulate, _sbibm_observe("gaussian_mixture"), notes="numpy, as sbibm")


def _bernoulli_glm() -> Task:
    # sbibm's bernoulli_glm: 10 parameters (offset + 9-tap filter), Gaussian smoothness
    # prior, 100 Bernoulli time bins; x = (spike count, 9 spike-triggered sums).
    m = 9
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.sqrt(np.diag(np.arange(m) / m))
    precision = np.zeros((m + 1, m + 1))
    precision[0, 0] = 0.5
    precision[1:, 1:] = f.T @ f
    cov = np.linalg.inv(precision)
    chol = np.linalg.cholesky(cov)
    cache: dict = {}

    def files():
        if not cache:
            import torch

            tasks_dir = find_sbibm_tasks_dir()
            folder = None if tasks_dir is None else tasks_dir / "bernoulli_glm" / "files"
            if folder is None or not (folder / "design_matrix.pt").is_file():
                raise TaskUnavailable("bernoulli_glm: sbibm's design_matrix.pt not found")
            cache["design"] = torch.load(folder / "design_matrix.pt").double().numpy()
            cache["stimulus"] = torch.load(folder / "stimulus_I.pt").double().numpy()
        return cache["design"], cache["stimulus"]

    def sample_prior(n, rng):
        return rng.standard_normal((n, m + 1)) @ chol.T

    def simulate(theta, rng):
        design, stimulus = files()
        theta = np.asarray(theta, float).reshape(-1, m + 1)
        rate = 1.0 / (1.0 + np.exp(-(theta @ design.T)))  # (n, 100)
        spikes = (rng.random(rate.shape) < rate).astype(float)
        return bernoulli_glm_summary(spikes, stimulus)

    def observe(n_obs, n_ref, tasks_dir):
        files()
        return _sbibm_observe("bernoulli_glm")(n_obs, n_ref, tasks_dir)

    return Task("bernoulli_glm", m + 1, "gaussian", {"mean": np.zeros(m + 1), "cov": cov},
                sample_prior, simulate, observe, notes="numpy, as sbibm (its design matrix)")


def bernoulli_glm_summary(spikes: np.ndarray, stimulus: np.ndarray) -> np.ndarray:
    """Spike count and the last 9 lags of the cross-correlation with the stimulus.

    ``torch.nn.functional.conv1d(y, stimulus, padding=8)[-9:]`` written with numpy.
    """
    padded = np.pad(spikes, ((0, 0), (8, 8)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(stimulus), axis=1)
    sta = windows @ stimulus
    return np.column_stack([spikes.sum(axis=1), sta[:, -9:]])


def _set_task(name: str, model_cls) -> Task:
    m = model_cls()

    def observe(n_obs, n_ref, tasks_dir):
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        sets = m.simulate(m.sample_prior(n_obs, rng), rng)
        ref = m.sample_posterior(sets, n_ref, rng)
        return _as_list(sets), ref, f"exact posterior (skcinn {model_cls.__name__})"

    def simulate(theta, rng):
        return _as_list(m.simulate(theta, rng))

    return Task(name, m.n_params, "gaussian",
                {"mean": np.zeros(m.n_params), "cov": m.prior_std**2 * np.eye(m.n_params)},
                m.sample_prior, simulate, observe, is_set=True,
                notes=f"skcinn.simulators.{model_cls.__name__}(), n_obs {m.n_obs}")


def _as_list(sets) -> list[np.ndarray]:
    return [np.asarray(s, float) for s in sets]


def _gaussian_mean() -> Task:
    from skcinn.simulators import GaussianMean

    return _set_task("gaussian_mean", GaussianMean)


def _linear_regression() -> Task:
    from skcinn.simulators import LinearRegression

    return _set_task("linear_regression", LinearRegression)


TASKS = {
    "two_moons": _two_moons,
    "slcp": _slcp,
    "gaussian_linear": _gaussian_linear,
    "gaussian_mixture": _gaussian_mixture,
    "bernoulli_glm": _bernoulli_glm,
    "gaussian_mean": _gaussian_mean,
    "linear_regression": _linear_regression,
}


def sufficient_statistics(sets: list[np.ndarray]) -> np.ndarray:
    """Hand-made summaries of i.i.d. sets for the peers: feature means, means of all
    pairwise products (upper triangle with the diagonal) and the set size n."""
    f = sets[0].shape[1]
    iu = np.triu_indices(f)
    out = np.empty((len(sets), f + len(iu[0]) + 1))
    for i, s in enumerate(sets):
        out[i, :f] = s.mean(axis=0)
        out[i, f:-1] = (s.T @ s / len(s))[iu]
        out[i, -1] = len(s)
    return out


def pad_sets(sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in sets])
    out = np.zeros((len(sets), lengths.max(), sets[0].shape[1]))
    for i, s in enumerate(sets):
        out[i, : len(s)] = s
    return out, lengths


# -------------------------------------------------------------------------- data files


def task_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def training_pairs(task: Task, budget: int, seed: int) -> tuple[np.ndarray, object]:
    """The (theta, x) every method of a run trains on (also used by the other scripts
    in benchmarks/, so that they measure on the same pairs)."""
    rng = np.random.default_rng([seed, budget, task_seed(task.name)])
    theta = task.sample_prior(budget, rng)
    return theta, task.simulate(theta, rng)


def amortization_sets(task: Task, seed: int, n: int = N_AMORTIZED_SETS):
    """The data sets whose n x 1,000 draws are timed in one call."""
    rng = np.random.default_rng([seed, 1, task_seed(task.name)])
    return task.simulate(task.sample_prior(n, rng), rng)


def prior_box(task: Task) -> list[tuple[float, float]]:
    """A uniform prior's box as ``parameter_bounds``."""
    box = task.prior_arrays()
    return [(float(lo), float(hi)) for lo, hi in zip(box["prior_low"], box["prior_high"],
                                                      strict=True)]


def write_task_data(task: Task, budget: int, seed: int, x_obs, path: Path, *,
                    n_draws: int = N_REFERENCE, n_amortized: int = N_AMORTIZED_SETS,
                    n_amortized_draws: int = N_AMORTIZED_DRAWS) -> dict:
    """Simulate the training pairs and the amortisation sets; write the npz for runners."""
    t0 = time.perf_counter()
    theta, x = training_pairs(task, budget, seed)
    simulate_s = time.perf_counter() - t0
    x_amort = amortization_sets(task, seed, n_amortized)
    arrays = {"task": np.array(task.name), "theta": np.asarray(theta, float),
              "prior_kind": np.array(task.prior_kind), "n_draws": np.array(n_draws),
              "n_amortized_draws": np.array(n_amortized_draws), **task.prior_arrays()}
    if task.is_set:
        arrays["sets"], arrays["set_lengths"] = pad_sets(x)
        arrays["obs_sets"], arrays["obs_set_lengths"] = pad_sets(x_obs)
        arrays["amortized_sets"], arrays["amortized_set_lengths"] = pad_sets(x_amort)
        arrays["x"] = sufficient_statistics(x)
        arrays["x_obs"] = sufficient_statistics(x_obs)
        arrays["x_amortized"] = sufficient_statistics(x_amort)
    else:
        arrays["x"] = np.asarray(x, float)
        arrays["x_obs"] = np.asarray(x_obs, float)
        arrays["x_amortized"] = np.asarray(x_amort, float)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return {"simulate_s": simulate_s, "x_dim": int(arrays["x"].shape[1])}


# ---------------------------------------------------------------------------- methods


@dataclass
class Method:
    name: str
    python: Path
    script: str
    options: dict
    env: dict = field(default_factory=dict)

    def available(self) -> tuple[bool, str]:
        if not Path(self.python).exists():
            return False, f"{self.python} not found (run benchmarks/peers/install.sh)"
        return True, ""


def methods(python: str | None = None) -> dict[str, Method]:
    """The methods and the interpreter each runs with."""
    own = Path(python or sys.executable)
    sbi = VENVS / "sbi" / "bin" / "python"
    bf = VENVS / "bayesflow" / "bin" / "python"
    return {
        "skcinn": Method("skcinn", own, "run_skcinn.py", {}),
        "skcinn_spline": Method("skcinn_spline", own, "run_skcinn.py", {"coupling": "spline"}),
        "skcinn_reject": Method("skcinn_reject", own, "run_skcinn.py", {"support": "reject"}),
        "skcinn_spline_reject": Method("skcinn_spline_reject", own, "run_skcinn.py",
                                       {"coupling": "spline", "support": "reject"}),
        "skcinn_spline_truncate": Method("skcinn_spline_truncate", own, "run_skcinn.py",
                                         {"coupling": "spline", "support": "truncate"}),
        "skcinn_spline6_truncate": Method("skcinn_spline6_truncate", own, "run_skcinn.py",
                                          {"coupling": "spline", "support": "truncate",
                                           "n_coupling_blocks": 6}),
        "skcinn_scale_mixture": Method("skcinn_scale_mixture", own, "run_skcinn.py",
                                       {"latent": "scale_mixture"}),
        "skcinn_scale_mixture_reject": Method("skcinn_scale_mixture_reject", own,
                                              "run_skcinn.py", {"latent": "scale_mixture",
                                                                "support": "reject"}),
        "skcinn_ensemble": Method("skcinn_ensemble", own, "run_skcinn.py",
                                  {"n_estimators": ENSEMBLE_SIZE}),
        "skcinn_spline_ensemble": Method("skcinn_spline_ensemble", own, "run_skcinn.py",
                                         {"coupling": "spline", "n_estimators": ENSEMBLE_SIZE}),
        "sbi_maf": Method("sbi_maf", sbi, "run_sbi.py", {"density_estimator": "maf"}),
        "sbi_nsf": Method("sbi_nsf", sbi, "run_sbi.py", {"density_estimator": "nsf"}),
        "bayesflow": Method("bayesflow", bf, "run_bayesflow.py", {},
                            env={"KERAS_BACKEND": "torch"}),
    }


def _thread_env(threads: int) -> dict:
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                                      "VECLIB_MAXIMUM_THREADS")}


def _partial(result_path: Path) -> tuple[dict, float] | None:
    """The runner's result while it times the amortised draws, and for how long so far."""
    try:
        result = json.loads(result_path.read_text())
        return result, time.time() - result_path.stat().st_mtime
    except (OSError, ValueError):
        return None


def run_method(method: Method, data_path: Path, out_dir: Path, *, seed: int, threads: int,
               timeout: float, amortized_timeout: float | None = None,
               options: dict | None = None) -> dict:
    """Run one method's runner as a subprocess; its result plus the child's rusage.

    Past ``timeout`` seconds the runner is killed; so it is when its amortised sampling
    (1,000 x 1,000 draws) has run for ``amortized_timeout`` seconds. Either way a fit and
    observation draws that were already written are kept (the amortised timing is then
    recorded as stopped, with its time so far).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / "result.json"
    result_path.unlink(missing_ok=True)
    opts = {**method.options, **(options or {})}
    cmd = [str(method.python), str(PEERS / method.script), "--data", str(data_path),
           "--out", str(out_dir), "--threads", str(threads), "--seed", str(seed),
           "--options", json.dumps(opts)]
    env = {**os.environ, **_thread_env(threads), **method.env, "PYTHONHASHSEED": "0"}
    if method.name != "skcinn":  # keep the project's packages out of the peers' venvs
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
    log_path = out_dir / "log.txt"
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=out_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        status, rusage, timed_out = None, None, False
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            partial = _partial(result_path) if result_path.exists() else None
            sampling = (partial is not None
                        and partial[0].get("sample_amortized_status") == "running")
            if time.perf_counter() - t0 > timeout or (
                    sampling and amortized_timeout and partial[1] > amortized_timeout):
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    partial = _partial(result_path) if result_path.exists() else None
    result = partial[0] if partial else {}
    if timed_out and result.get("sample_amortized_status") == "running":
        result["sample_amortized_status"] = "stopped"
        result["sample_amortized_stopped_after_s"] = partial[1]
    elif timed_out:
        result = {"status": "timeout", "error": f"stopped after {wall:.0f} s"}
    elif proc.returncode != 0 and result.get("status") != "error":
        result = {"status": "error", "error": f"exit code {proc.returncode}"}
    if result.get("status") != "ok":
        result["log_tail"] = log_path.read_text()[-3000:]
    result.update({
        "process_wall_s": wall,
        "process_cpu_s": rusage.ru_utime + rusage.ru_stime,
        "process_peak_rss_mib": rusage.ru_maxrss / 1024.0,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "options": opts,
    })
    return result


# ------------------------------------------------------------------------------- C2ST


def c2st(reference: np.ndarray, draws: np.ndarray, seed: int = 1, n_folds: int = 5) -> float:
    """Classifier two-sample test accuracy, set up as in sbibm (Lueckmann et al., 2021).

    Both samples are standardised by the reference's mean and sd; an MLP (ReLU, two
    hidden layers of ``10 * dim`` units, Adam, ``max_iter=10000``) is scored by
    ``n_folds``-fold shuffled cross-validated accuracy. 0.5: indistinguishable; 1:
    perfectly separable. Non-finite draws are dropped.
    """
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    reference = np.asarray(reference, float)
    draws = np.asarray(draws, float)
    draws = draws[np.all(np.isfinite(draws), axis=1)]
    if len(draws) < n_folds:
        return 1.0
    mean, sd = reference.mean(axis=0), reference.std(axis=0, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    data = np.concatenate([(reference - mean) / sd, (draws - mean) / sd])
    target = np.concatenate([np.zeros(len(reference)), np.ones(len(draws))])
    dim = reference.shape[1]
    clf = MLPClassifier(activation="relu", hidden_layer_sizes=(10 * dim, 10 * dim),
                        max_iter=10_000, solver="adam", random_state=seed)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(clf, data, target, cv=folds, scoring="accuracy")))


def _background_worker() -> None:
    os.nice(19)
    for var, value in _thread_env(1).items():
        os.environ[var] = value


def _c2st_from_files(reference_path: str, draws_path: str, i: int) -> tuple[float, float]:
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    reference = np.load(reference_path)["reference"][i]
    draws = np.load(draws_path)["draws"][i]
    with threadpool_limits(1):
        value = c2st(reference, draws)
    return value, time.perf_counter() - t0


def c2st_many(reference: np.ndarray, draws: np.ndarray, which, n_jobs: int = 1) -> list:
    """C2ST of observations ``which`` (indices); the others None."""
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    which = list(which)
    with threadpool_limits(1):
        values = Parallel(n_jobs=n_jobs)(delayed(c2st)(reference[i], draws[i]) for i in which)
    out = [None] * len(draws)
    for i, v in zip(which, values, strict=True):
        out[i] = v
    return out


# ------------------------------------------------------------------------------- runs


def _save_json(obj: dict, path: Path) -> None:
    """Write ``obj``; paths inside the repository are stored relative to its root."""
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(obj, indent=1, default=_jsonable)
    tmp.write_text(text.replace(json.dumps(str(ROOT) + os.sep)[1:-1], ""))
    os.replace(tmp, path)


def _at_root(path) -> Path:
    """A path read from a results file (relative to the repository root, or absolute)."""
    return ROOT / path


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj))


def cpu_description(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and widest vector extension torch can use (``avx512``,
    ``avx2`` or None), from ``/proc/cpuinfo``: timings of one day compare with another's
    only on the same kind of CPU (the same machine name has run AVX2-only and AVX-512
    hosts, with per-step times 2x apart)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else None
    return {"cpu_model": fields.get("model name"), "cpu_simd": simd}


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("skcinn", "torch", "numpy", "scikit-learn", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _claim_run_id(work_dir: Path) -> tuple[str, Path]:
    """A run id (the time, to the second) whose work folder this process creates: two
    runs started in the same second would otherwise share their folder and results file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        try:
            (work_dir / run_id).mkdir()
            return run_id, work_dir / run_id
        except FileExistsError:
            time.sleep(0.2)


def run_benchmark(tasks, budgets, seeds, method_names, *, out_dir: Path = RESULTS,
                  work_dir: Path = WORK, n_observations: int = N_OBSERVATIONS,
                  n_reference: int = N_REFERENCE, n_amortized: int = N_AMORTIZED_SETS,
                  n_amortized_draws: int = N_AMORTIZED_DRAWS,
                  c2st_observations: int | None = None, c2st_jobs: int = 1,
                  c2st_background: bool = False, amortized_budgets=None,
                  threads: int = 1, timeout: float = 3600.0, method_timeouts=None,
                  method_options=None,
                  amortized_timeout: float | None = None,
                  run_id: str | None = None, note: str = TIMING_NOTE, resume=None,
                  sbibm_tasks_dir: Path | None | str = "auto", report: bool = True,
                  log=print) -> Path:
    """Run the grid; return the path of the results JSON (written after every method).

    ``c2st_observations``: score only the first k observations now (None: all; 0: none;
    ``score`` fills in the rest later). ``c2st_background``: score in ``c2st_jobs``
    worker processes at nice 19 while the next methods train (they take only CPU time
    nobody else wants, so training timings are barely disturbed); the run waits for them
    at the end. ``amortized_budgets``: time the 1,000 x 1,000 draws only at these budgets
    (None: all; the networks' size, hence sampling cost, does not depend on the budget).
    ``timeout``: seconds per method run, ``method_timeouts`` {method: seconds} overrides
    it (a run that passes it is killed and recorded as "timeout" with its time).
    ``amortized_timeout``: seconds the 1,000 x 1,000 draws may take (then stopped,
    the rest of the run kept). ``resume``: a results JSON of an interrupted run: its
    meta and work directory are reused and finished (task, budget, seed, method) runs
    skipped (runs that ended in an error are redone).
    ``method_options``: {method: {option: value}}
    passed to its runner. ``sbibm_tasks_dir``: "auto" finds sbibm's files in a peer
    venv; None uses none (only tasks with exact posteriors then work).
    """
    previous = json.loads(Path(resume).read_text()) if resume else None
    work = None
    if previous:
        run_id = previous["meta"]["run_id"]
        out_dir, work = Path(resume).parent, _at_root(previous["meta"]["work_dir"])
    if previous is None and run_id is None:
        run_id, work = _claim_run_id(Path(work_dir))
    out_dir = Path(out_dir)
    work = work if work is not None else Path(work_dir) / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tasks_dir = find_sbibm_tasks_dir() if sbibm_tasks_dir == "auto" else (
        Path(sbibm_tasks_dir) if sbibm_tasks_dir else None)
    registry = methods()
    method_options = method_options or {}
    results_path = out_dir / f"sbibm_{run_id}.json"
    k_c2st = n_observations if c2st_observations is None else min(c2st_observations,
                                                                  n_observations)
    doc = {"meta": {
        "run_id": run_id,
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "tasks": list(tasks), "budgets": list(budgets), "seeds": list(seeds),
        "methods": list(method_names),
        "n_observations": n_observations, "n_reference_draws": n_reference,
        "n_amortized_sets": n_amortized, "n_amortized_draws": n_amortized_draws,
        "threads": threads, "timeout_s": timeout, "method_timeouts_s": method_timeouts or {},
        "amortized_timeout_s": amortized_timeout,
        "amortized_budgets": None if amortized_budgets is None else list(amortized_budgets),
        "c2st_background": c2st_background,
        "threads_note": "one torch intra-op thread (and OMP/MKL/OpenBLAS 1) in every "
                        "method subprocess: skcinn always trains on one thread, the 2 cores "
                        "are shared with other work, and equal threads keep the comparison "
                        "like for like",
        "c2st": "sbibm setup: z-score by reference, MLPClassifier(relu, (10*dim, 10*dim), "
                "adam, max_iter=10000, random_state=1), 5-fold shuffled KFold accuracy "
                "(own implementation, sklearn)",
        "timing_note": note,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    **cpu_description(), "loadavg_start": list(os.getloadavg())},
        "versions": _versions(),
        "sbibm_tasks_dir": str(tasks_dir) if tasks_dir else None,
        "work_dir": str(work),
    }, "tasks": {}, "runs": []}
    done = set()
    if previous:
        old_meta = previous["meta"]
        for key in ("tasks", "budgets", "seeds", "methods"):
            doc["meta"][key] = list(dict.fromkeys(old_meta[key] + doc["meta"][key]))
        doc["meta"]["started"] = old_meta["started"]
        doc["meta"]["machine"]["loadavg_start"] = old_meta["machine"]["loadavg_start"]
        doc["meta"]["resumed"] = old_meta.get("resumed", []) + [{
            "at": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}]
        doc["meta"]["earlier_settings"] = old_meta.get("earlier_settings", []) + [{
            k: old_meta.get(k) for k in ("command", "timeout_s", "method_timeouts_s",
                                         "amortized_timeout_s", "amortized_budgets")}]
        doc["tasks"] = previous["tasks"]
        doc["runs"] = [e for e in previous["runs"] if e.get("status") != "error"]
        done = {(e["task"], e["budget"], e["seed"], e["method"]) for e in doc["runs"]}
    _save_json(doc, results_path)
    pool, pending = None, []
    if c2st_background and k_c2st:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max(1, c2st_jobs), mp_context=mp.get_context("spawn"),
                                   initializer=_background_worker)

    def collect(block: bool) -> None:
        for item in list(pending):
            entry, futures = item
            if not block and not all(f.done() for f in futures.values()):
                continue
            for i, f in futures.items():
                value, seconds = f.result()
                entry["c2st"][i] = value
                entry["c2st_s"] = entry.get("c2st_s", 0.0) + seconds
            _summarise(entry)
            pending.remove(item)
            log(f"[c2st] {entry['task']} n={entry['budget']} s={entry['seed']} "
                f"{entry['method']}: {entry['c2st_mean']:.3f}")
            _save_json(doc, results_path)

    if pool is not None:  # C2ST values an interrupted run left out
        for entry in doc["runs"]:
            todo = [i for i in range(min(k_c2st, len(entry.get("c2st") or [])))
                    if entry["c2st"][i] is None]
            if entry.get("status") == "ok" and todo:
                ref = _at_root(doc["tasks"][entry["task"]]["reference_path"])
                futures = {i: pool.submit(_c2st_from_files, ref, _at_root(entry["draws_path"]),
                                          i)
                           for i in todo}
                pending.append((entry, futures))

    for task_name in tasks:
        try:
            task = TASKS[task_name]()
            x_obs, reference, source = task.observe(n_observations, n_reference, tasks_dir)
        except TaskUnavailable as exc:
            log(f"[skip] {task_name}: {exc}")
            doc["tasks"][task_name] = {"available": False, "reason": str(exc)}
            _save_json(doc, results_path)
            continue
        ref_path = work / f"{task_name}_reference.npz"
        np.savez(ref_path, reference=reference)
        doc["tasks"][task_name] = {"available": True, "n_params": task.n_params,
                                   "prior": task.prior_kind, "observations": source,
                                   "simulator": task.notes, "is_set": task.is_set,
                                   "reference_path": str(ref_path)}
        for budget in budgets:
            for seed in seeds:
                tag = f"{task_name}_n{budget}_s{seed}"
                data_path = work / tag / "data.npz"
                timed = amortized_budgets is None or budget in amortized_budgets
                info = write_task_data(task, budget, seed, x_obs, data_path,
                                       n_draws=n_reference, n_amortized=n_amortized,
                                       n_amortized_draws=n_amortized_draws if timed else 0)
                for name in method_names:
                    if (task_name, budget, seed, name) in done:
                        continue
                    method = registry[name]
                    entry = {"task": task_name, "budget": budget, "seed": seed, "method": name,
                             "x_dim": info["x_dim"], "simulate_s": info["simulate_s"]}
                    ok, why = method.available()
                    if not ok:
                        entry.update(status="unavailable", error=why)
                        log(f"[skip] {tag} {name}: {why}")
                        doc["runs"].append(entry)
                        _save_json(doc, results_path)
                        continue
                    log(f"[run ] {tag} {name} ...")
                    res = run_method(method, data_path, work / tag / name, seed=seed,
                                     threads=threads,
                                     timeout=(method_timeouts or {}).get(name, timeout),
                                     amortized_timeout=amortized_timeout,
                                     options=method_options.get(name))
                    entry.update(res)
                    if res.get("status") == "ok":
                        entry["draws_path"] = str(work / tag / name / "draws.npz")
                        draws = np.load(_at_root(entry["draws_path"]))["draws"]
                        if pool is not None:
                            entry["c2st"] = [None] * len(draws)
                            pending.append((entry, {
                                i: pool.submit(_c2st_from_files, str(ref_path),
                                               entry["draws_path"], i)
                                for i in range(k_c2st)}))
                        else:
                            t0 = time.perf_counter()
                            entry["c2st"] = (c2st_many(reference, draws, range(k_c2st),
                                                       c2st_jobs)
                                             if k_c2st else [None] * len(draws))
                            entry["c2st_s"] = time.perf_counter() - t0
                        _summarise(entry)
                    log(f"[done] {tag} {name}: {_line(entry)}")
                    doc["runs"].append(entry)
                    _save_json(doc, results_path)
                    collect(block=False)
    doc["meta"]["training_finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    if pool is not None:
        collect(block=True)
        pool.shutdown()
    doc["meta"]["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    doc["meta"]["machine"]["loadavg_end"] = list(os.getloadavg())
    _save_json(doc, results_path)
    if report:
        write_report(results_path)
    return results_path


def _summarise(entry: dict) -> None:
    scored = [v for v in entry.get("c2st", []) if v is not None]
    entry["c2st_mean"] = float(np.mean(scored)) if scored else None
    entry["c2st_n_scored"] = len(scored)


def _line(entry: dict) -> str:
    if entry.get("status") != "ok":
        return f"{entry.get('status')}: {entry.get('error')}"
    c = entry.get("c2st_mean")
    amort = entry.get("sample_amortized_wall_s")
    if entry.get("sample_amortized_status") == "stopped":
        amort = -entry["sample_amortized_stopped_after_s"]
    return (f"C2ST {c:.3f} " if c is not None else "C2ST - ") + (
        f"fit {entry['fit_wall_s']:.1f}s ({entry['epochs']} ep), "
        f"draws {entry['sample_obs_wall_s']:.2f}s / {_fmt(amort, '.2f')}s")


def score(results_path: Path, c2st_jobs: int = 1, c2st_observations: int | None = None,
          tasks=None, budgets=None, methods_=None, log=print) -> Path:
    """Fill in C2ST values not yet computed, from the draws kept in the work directory
    (of the named ``tasks``, ``budgets`` and ``methods_`` only, where given)."""
    results_path = Path(results_path)
    doc = json.loads(results_path.read_text())
    refs = {}
    for entry in doc["runs"]:
        if (entry.get("status") != "ok" or (tasks and entry["task"] not in tasks)
                or (budgets and entry["budget"] not in budgets)
                or (methods_ and entry["method"] not in methods_)):
            continue
        values = entry.get("c2st") or []
        k = len(values) if c2st_observations is None else min(c2st_observations, len(values))
        todo = [i for i in range(k) if values[i] is None]
        if not todo:
            continue
        task = entry["task"]
        if task not in refs:
            refs[task] = np.load(_at_root(doc["tasks"][task]["reference_path"]))["reference"]
        draws = np.load(_at_root(entry["draws_path"]))["draws"]
        t0 = time.perf_counter()
        new = c2st_many(refs[task], draws, todo, c2st_jobs)
        for i in todo:
            values[i] = new[i]
        entry["c2st"] = values
        entry["c2st_s"] = entry.get("c2st_s", 0.0) + time.perf_counter() - t0
        _summarise(entry)
        log(f"[c2st] {task} n={entry['budget']} s={entry['seed']} {entry['method']}: "
            f"{entry['c2st_mean']:.3f} ({entry['c2st_n_scored']} observations)")
        _save_json(doc, results_path)
    write_report(results_path)
    return results_path


# ----------------------------------------------------------------------------- report


def _groups(doc: dict) -> dict:
    groups: dict = {}
    for e in doc["runs"]:
        groups.setdefault((e["task"], e["budget"], e["method"]), []).append(e)
    return groups


def _fmt(v, spec=".1f"):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _mean_of(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get("status") == "ok" and r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def render_table(doc: dict) -> str:
    """Markdown table: per task x budget x method, C2ST mean ± sd over seeds (each seed:
    mean over observations), the sd over observations, and costs (means over seeds)."""
    meta = doc["meta"]
    lines = [
        f"C2ST against {meta['n_reference_draws']:,} reference draws for each of "
        f"{meta['n_observations']} observations (0.5 is best); seeds: {meta['seeds']}. "
        f"Fit and sampling: wall seconds, {meta['threads']} torch thread(s) per method. "
        f"{meta.get('timing_note', '')}",
        "",
        "| task | budget | method | C2ST (mean ± sd over seeds) | sd over obs. | obs. scored "
        f"| fit (s) | fit CPU (s) | epochs | {meta['n_observations']} × "
        f"{meta['n_reference_draws']:,} draws (s) | {meta['n_amortized_sets']:,} × "
        f"{meta['n_amortized_draws']:,} draws (s) | peak RSS (MiB) | outside prior |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, budget, method), runs in sorted(_groups(doc).items(),
                                               key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        ok = [r for r in runs if r.get("status") == "ok"]
        if not ok:
            status = ", ".join(sorted({r.get("status", "?") for r in runs}))
            wall = [r.get("process_wall_s") for r in runs if r.get("process_wall_s")]
            extra = f" after {np.mean(wall):.0f} s" if wall and status == "timeout" else ""
            lines.append(f"| {task} | {budget:,} | {method} | {status}{extra} | | | | | | | | | |")
            continue
        per_seed = [r["c2st_mean"] for r in ok if r.get("c2st_mean") is not None]
        if per_seed:
            c = f"{np.mean(per_seed):.3f}" + (
                f" ± {np.std(per_seed, ddof=1):.3f}" if len(per_seed) > 1 else "")
        else:
            c = "not scored"
        obs_vals = [[v for v in r.get("c2st", []) if v is not None] for r in ok]
        obs_sd = np.mean([np.std(v, ddof=1) for v in obs_vals if len(v) > 1]) if any(
            len(v) > 1 for v in obs_vals) else None
        n_scored = min(len(v) for v in obs_vals)

        outside = _mean_of(ok, "outside_prior_obs")
        amortized = _fmt(_mean_of(ok, "sample_amortized_wall_s"), ".2f")
        stopped = [r["sample_amortized_stopped_after_s"] for r in ok
                   if r.get("sample_amortized_status") == "stopped"]
        if stopped:
            amortized = f"stopped > {min(stopped):.0f}"
        lines.append(
            f"| {task} | {budget:,} | {method} | {c} | {_fmt(obs_sd, '.3f')} | {n_scored} "
            f"| {_fmt(_mean_of(ok, 'fit_wall_s'))} | {_fmt(_mean_of(ok, 'fit_cpu_s'))} "
            f"| {_fmt(_mean_of(ok, 'epochs'), '.0f')} "
            f"| {_fmt(_mean_of(ok, 'sample_obs_wall_s'), '.2f')} "
            f"| {amortized} "
            f"| {_fmt(_mean_of(ok, 'process_peak_rss_mib'), '.0f')} "
            f"| {'–' if outside is None else f'{100 * outside:.2f} %'} |")
    skipped = {k: v["reason"] for k, v in doc.get("tasks", {}).items() if not v["available"]}
    if skipped:
        lines += ["", "Tasks skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items())]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> Path | None:
    """C2ST against budget, one panel per task, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(doc)
    tasks = [t for t in doc["meta"]["tasks"] if any(k[0] == t for k in groups)]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    bases = dict.fromkeys(m.removesuffix(_suffix(m)) for m in doc["meta"]["methods"])
    colors = {m: f"C{i}" for i, m in enumerate(bases)}
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in doc["meta"]["methods"]:
            xs, ys, es = [], [], []
            for budget in doc["meta"]["budgets"]:
                vals = [r["c2st_mean"] for r in groups.get((task, budget, method), [])
                        if r.get("status") == "ok" and r.get("c2st_mean") is not None]
                if vals:
                    xs.append(budget)
                    ys.append(np.mean(vals))
                    es.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method,
                            color=colors[method.removesuffix(_suffix(method))],
                            ls=EARLIER.get(_suffix(method), "-"))
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(0.45, 1.02)
        ax.set_title(task)
        ax.set_xlabel("simulations")
    axes[0][0].set_ylabel("C2ST (0.5 best)")
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    if handles:  # none before any C2ST is scored
        fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=len(handles),
                   fontsize=8, frameon=False)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def merge(docs: list[dict]) -> dict:
    """One document from several runs: their runs side by side, meta of the first with
    tasks, budgets, seeds and methods united (in order of appearance)."""
    meta = dict(docs[0]["meta"])
    docs = [_label_earlier_defaults(d) for d in docs]
    for key in ("tasks", "budgets", "seeds", "methods"):
        meta[key] = list(dict.fromkeys(v for d in docs for v in d["meta"][key]))
    meta["budgets"] = sorted(meta["budgets"])
    meta["run_id"] = " + ".join(d["meta"]["run_id"] for d in docs)
    tasks = {k: v for d in docs for k, v in d.get("tasks", {}).items()}
    return {"meta": meta, "tasks": tasks, "runs": [r for d in docs for r in d["runs"]]}


def _label_earlier_defaults(doc: dict) -> dict:
    """``doc`` with the skcinn runs of earlier defaults renamed (see :data:`EARLIER`), so
    that they are not averaged with today's."""
    run_id = doc["meta"]["run_id"]

    def label(run: dict) -> str:
        method = run["method"]
        if not method.startswith("skcinn"):
            return method
        if run_id < ADAPTIVE_SINCE:
            return method + "_cosine60"
        info = run.get("method_info")
        if info is None:  # recorded before runs kept their method_info
            return method if run_id >= AVERAGE_SINCE else method + "_no_ema"
        if "ema_decay" not in info:
            return method + "_no_ema"
        max_iter = (run.get("options") or {}).get("max_iter", 200)
        if "anneal_fraction" not in info and (run.get("epochs") or 0) > ANNEALED_AFTER * max_iter:
            return method + "_no_anneal"
        if info.get("coupling") == "spline" and "learning_rate_init" not in info:
            return method + "_lr2e-3"
        return method

    runs = [{**r, "method": label(r)} for r in doc["runs"]]

    def labels(method: str) -> list[str]:  # those its runs got; itself if it has none
        return list(dict.fromkeys(r["method"] for r in runs
                                  if r["method"].removesuffix(_suffix(r["method"])) == method)
                    ) or [method]

    methods = [m for method in doc["meta"]["methods"] for m in labels(method)]
    return {**doc, "meta": {**doc["meta"], "methods": methods}, "runs": runs}


def _suffix(method: str) -> str:
    """The label of an earlier default at the end of ``method``, or ''."""
    return next((s for s in EARLIER if method.endswith(s)), "")


OURS_SHORT = {"skcinn": "skcinn", "skcinn_spline": "spline", "skcinn_reject": "reject",
              "skcinn_spline_reject": "spline reject",
              "skcinn_spline_truncate": "spline truncate",
              "skcinn_spline6_truncate_lr2e-3": "six blocks (2e-3)",
              "skcinn_ensemble": "ensemble",
              "skcinn_spline_ensemble_lr2e-3": "spline ensemble (2e-3)"}
"""skcinn's methods in the targets table, with their short column labels (the six-block
spline and the spline ensemble ran only at the spline's earlier learning rate, 2e-3)."""


def render_targets(doc: dict, budget: int = 10_000, sampling_budget: int = 1_000,
                   ours: tuple = tuple(OURS_SHORT),
                   peers: tuple = ("sbi_maf", "sbi_nsf", "bayesflow")) -> str:
    """The issue's three targets per task: C2ST at ``budget`` against the best peer
    (at most best - 0.03, or 0.52 where the best peer is within 0.05 of 0.5), fit time
    against sbi's default (MAF; CPU seconds, which shared cores disturb least), and
    1,000 x 1,000 draws against sbi's ``sample_batched`` at ``sampling_budget`` (a skcinn
    method drawn only at ``budget``: those draws, marked †)."""
    groups = _groups(doc)
    names = " / ".join(OURS_SHORT.get(m, m) for m in ours)
    lines = [
        f"| task | C2ST {names} at {budget:,} | best peer | target | met "
        f"| fit CPU s: {names} / sbi MAF | 1,000 × 1,000 draws s: {names} / sbi MAF "
        "| outside prior: skcinn |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in doc["meta"]["tasks"]:
        c2 = {m: _mean_of(groups.get((task, budget, m), []), "c2st_mean")
              for m in ours + peers}
        if all(v is None for v in c2.values()):
            continue
        scored = {m: v for m, v in c2.items() if m in peers and v is not None}
        best_peer = min(scored, key=scored.get) if scored else None
        target = None
        if best_peer is not None:
            b = scored[best_peer]
            target = 0.52 if b - 0.5 <= 0.05 else b - 0.03
        mine = [c2[m] for m in ours if c2[m] is not None]
        met = "–" if target is None or not mine else ("yes" if min(mine) <= target else "no")
        fit = [_mean_of(groups.get((task, budget, m), []), "fit_cpu_s")
               for m in (*ours, "sbi_maf")]
        draws = []
        for m in (*ours, "sbi_maf"):
            runs = groups.get((task, sampling_budget, m), [])
            timed = [r for r in runs if r.get("sample_amortized_wall_s") is not None]
            mark = ""
            if not timed and m in ours:  # drawn only at ``budget``: those, marked
                runs = groups.get((task, budget, m), [])
                mark = "†"
            stopped = [r["sample_amortized_stopped_after_s"] for r in runs
                       if r.get("sample_amortized_status") == "stopped"]
            mean = _mean_of(runs, "sample_amortized_wall_s")
            draws.append(f"> {min(stopped):.0f} (stopped)" if stopped
                         else _fmt(mean, ".2f") + (mark if mean is not None else ""))
        outside = _mean_of(groups.get((task, budget, ours[0]), []), "outside_prior_obs")
        peer = "–" if best_peer is None else f"{scored[best_peer]:.3f} ({best_peer})"
        lines.append(
            f"| {task} | {' / '.join(_fmt(c2[m], '.3f') for m in ours)} | {peer} "
            f"| {_fmt(target, '.3f')} | {met} | {' / '.join(_fmt(v) for v in fit)} "
            f"| {' / '.join(draws)} "
            f"| {'–' if outside is None else f'{100 * outside:.1f} %'} |")
    return "\n".join(lines) + "\n"


def write_report(results_path: Path) -> tuple[Path, Path | None]:
    """``<results>.md`` (table) and ``<results>.png`` (figure) next to the JSON."""
    results_path = Path(results_path)
    doc = json.loads(results_path.read_text())
    md = results_path.with_suffix(".md")
    md.write_text(f"# SBI benchmark, run {doc['meta']['run_id']}\n\n" + render_table(doc))
    png = plot(doc, results_path.with_suffix(".png"))
    return md, png


# -------------------------------------------------------------------------------- CLI


def _parse_options(items) -> dict:
    out = {}
    for item in items or []:
        name, _, payload = item.partition("=")
        out[name] = json.loads(payload)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="tasks and methods available here")
    p = sub.add_parser("run", help="run a grid")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=list(TASKS))
    p.add_argument("--budgets", nargs="+", type=int, default=list(DEFAULT_BUDGETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(methods()), choices=list(methods()))
    p.add_argument("--n-observations", type=int, default=N_OBSERVATIONS)
    p.add_argument("--c2st-observations", type=int, default=None,
                   help="score only the first k observations now (0: none); see `score`")
    p.add_argument("--c2st-jobs", type=int, default=1)
    p.add_argument("--c2st-background", action="store_true",
                   help="score in niced worker processes while the next methods train")
    p.add_argument("--amortized-budgets", nargs="+", type=int, default=None,
                   help="time the 1,000 x 1,000 draws only at these budgets (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per method run")
    p.add_argument("--method-timeout", action="append", metavar="METHOD=SECONDS",
                   help="per-method timeout, e.g. bayesflow=180")
    p.add_argument("--option", action="append", metavar="METHOD=JSON",
                   help='runner options, e.g. skcinn=\'{"max_iter": 100}\'')
    p.add_argument("--amortized-timeout", type=float, default=None,
                   help="seconds the 1,000 x 1,000 draws may take before they are stopped")
    p.add_argument("--resume", type=Path, default=None,
                   help="continue an interrupted run (its results JSON)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--work-dir", type=Path, default=WORK)
    p.add_argument("--note", default=TIMING_NOTE)
    s = sub.add_parser("score", help="compute the C2ST values left out")
    s.add_argument("results", type=Path)
    s.add_argument("--c2st-jobs", type=int, default=1)
    s.add_argument("--c2st-observations", type=int, default=None)
    s.add_argument("--tasks", nargs="+", default=None, help="score only these tasks")
    s.add_argument("--budgets", nargs="+", type=int, default=None,
                   help="score only these budgets")
    s.add_argument("--methods", nargs="+", default=None, help="score only these methods")
    r = sub.add_parser("report", help="re-render table and figure")
    r.add_argument("results", type=Path)
    c = sub.add_parser("summary", help="several runs in one table of the targets, the "
                                       "full table and one figure")
    c.add_argument("results", type=Path, nargs="+")
    c.add_argument("--out", type=Path, required=True, help="path without suffix")
    args = parser.parse_args(argv)

    if args.cmd == "list":
        tasks_dir = find_sbibm_tasks_dir()
        print(f"sbibm data files: {tasks_dir or 'not found'}")
        for name, make in TASKS.items():
            try:
                task = make()
                task.observe(1, 10, tasks_dir)
                print(f"  task {name}: ok ({task.notes})")
            except TaskUnavailable as exc:
                print(f"  task {name}: unavailable: {exc}")
        for name, m in methods().items():
            ok, why = m.available()
            print(f"  method {name}: {'ok' if ok else why}")
    elif args.cmd == "run":
        path = run_benchmark(args.tasks, args.budgets, args.seeds, args.methods,
                             out_dir=args.out_dir, work_dir=args.work_dir,
                             n_observations=args.n_observations,
                             c2st_observations=args.c2st_observations,
                             c2st_jobs=args.c2st_jobs, threads=args.threads,
                             c2st_background=args.c2st_background,
                             amortized_budgets=args.amortized_budgets,
                             timeout=args.timeout,
                             method_timeouts=_parse_options(args.method_timeout),
                             amortized_timeout=args.amortized_timeout, resume=args.resume,
                             method_options=_parse_options(args.option),
                             note=args.note)
        print(f"results: {path}\n\n" + render_table(json.loads(path.read_text())))
    elif args.cmd == "score":
        path = score(args.results, args.c2st_jobs, args.c2st_observations, args.tasks,
                     args.budgets, args.methods)
        print(render_table(json.loads(path.read_text())))
    elif args.cmd == "summary":
        doc = merge([json.loads(Path(p).read_text()) for p in args.results])
        text = (f"# SBI benchmark: {doc['meta']['run_id']}\n\n## Targets\n\n"
                + render_targets(doc) + "\n## All runs\n\n" + render_table(doc))
        args.out.with_suffix(".md").write_text(text)
        print(text)
        print(f"figure: {plot(doc, args.out.with_suffix('.png'))}")
    else:
        md, png = write_report(args.results)
        print(md.read_text())
        print(f"figure: {png}")


if __name__ == "__main__":
    main()
