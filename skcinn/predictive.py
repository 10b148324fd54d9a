r"""Posterior predictive checks: can the fitted model reproduce features of the data?

For an observed data set :math:`x` and a test statistic :math:`T`, draw
:math:`\theta^{(l)} \sim q(\theta \mid x)`, simulate replicated data
:math:`x^{(l)} \sim p(x \mid \theta^{(l)})`, and compare :math:`T(x)` with the
predictive distribution of :math:`T(x^{(l)})` (Gelman, Meng and Stern, 1996). An
observed statistic far in a tail of its predictive distribution points to a feature of
the data that the model (or the amortized posterior) does not capture.

Posterior predictive p-values are not uniform even for a correct model: they are
concentrated around 1/2, most for statistics the posterior pins down (such as the
sample mean when the parameter is the mean). Extreme values are the signal, not a
departure from uniformity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from .diagnostics import _generator
from .metrics import sample_posterior

__all__ = ["posterior_predictive"]

_PER_CALL = 10_000  # parameter vectors per simulator call


def _datasets(X) -> list:
    """The individual data sets of a batch: items of a list, rows of an array or frame."""
    if hasattr(X, "iloc"):
        return list(X.to_numpy())
    if isinstance(X, (list, tuple)):
        return list(X)
    return list(np.asarray(X))


def _check_statistics(statistics) -> dict[str, Callable]:
    if not isinstance(statistics, Mapping) or len(statistics) == 0:
        raise TypeError("statistics must be a non-empty dict mapping names to functions "
                        "of one data set returning a float.")
    for name, fn in statistics.items():
        if not callable(fn):
            raise TypeError(f"statistics[{name!r}] is not callable.")
    return {str(name): fn for name, fn in statistics.items()}


def _evaluate(statistics: dict[str, Callable], datasets: list) -> np.ndarray:
    """Every statistic of every data set, shape (n_statistics, n_datasets)."""
    out = np.empty((len(statistics), len(datasets)))
    for k, (name, fn) in enumerate(statistics.items()):
        for j, data in enumerate(datasets):
            value = np.asarray(fn(data), dtype=np.float64)
            if value.size != 1:
                raise ValueError(f"Statistic {name!r} returned shape {value.shape}; "
                                 "expected a single float.")
            out[k, j] = value.item()
    return out


def _replicate(draws: np.ndarray, simulator: Callable, statistics: dict[str, Callable],
               rng: np.random.Generator) -> np.ndarray:
    """Statistics of data simulated from every draw, (n_statistics, n_datasets, n_samples).

    Simulates about ``_PER_CALL`` parameter vectors per call, whole data sets at a time.
    """
    n_sets, n_samples, n_params = draws.shape
    per_call = max(1, _PER_CALL // n_samples)
    parts = []
    for start in range(0, n_sets, per_call):
        theta = draws[start : start + per_call].reshape(-1, n_params)
        simulated = _datasets(simulator(theta, rng))
        if len(simulated) != len(theta):
            raise ValueError(f"The simulator returned {len(simulated)} data sets for "
                             f"{len(theta)} parameter vectors.")
        parts.append(_evaluate(statistics, simulated))
    return np.concatenate(parts, axis=1).reshape(len(statistics), n_sets, n_samples)


def _predictive_table(observed: np.ndarray, replicated: np.ndarray,
                      names: list[str]) -> pd.DataFrame:
    """One row per (data set, statistic) from (n_stats, n_sets) and (n_stats, n_sets, L)."""
    upper = (replicated >= observed[..., None]).mean(axis=-1)
    lower = (replicated <= observed[..., None]).mean(axis=-1)
    columns = {
        "observed": observed,
        "mean": replicated.mean(axis=-1),
        "sd": replicated.std(axis=-1, ddof=1),
        "p_value": upper,
        "p_value_two_sided": np.minimum(1.0, 2.0 * np.minimum(upper, lower)),
    }
    index = pd.MultiIndex.from_product([range(observed.shape[1]), names],
                                       names=["dataset", "statistic"])
    return pd.DataFrame({key: value.T.ravel() for key, value in columns.items()}, index=index)


def posterior_predictive(
    estimator, X_obs, simulator: Callable, statistics: Mapping[str, Callable],
    n_samples: int = 100, random_state=None,
) -> pd.DataFrame:
    r"""Posterior predictive check of user statistics, for every observed data set.

    For data set :math:`i` and statistic :math:`T`, with :math:`L` = ``n_samples``
    replicated data sets :math:`x_i^{(l)}` simulated from posterior draws
    :math:`\theta_i^{(l)}`:

    * ``observed``: :math:`T(x_i)`;
    * ``mean``, ``sd``: mean and standard deviation (``ddof=1``) of the
      :math:`T(x_i^{(l)})`;
    * ``p_value``: :math:`\frac{1}{L}\#\{l : T(x_i^{(l)}) \ge T(x_i)\}`, small when the
      observed statistic is larger than the model predicts, close to 1 when smaller;
    * ``p_value_two_sided``: :math:`\min(1, 2\min(p^+, p^-))` with :math:`p^+` the
      ``p_value`` and :math:`p^- = \frac{1}{L}\#\{l : T(x_i^{(l)}) \le T(x_i)\}`, small
      in either tail.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator, or a Pipeline ending in one
        Anything :func:`skcinn.metrics.sample_posterior` accepts.
    X_obs : array-like or list of array-like
        Observed data sets (one data set as ``X[None]``): an array whose first axis runs
        over data sets, a list of data sets, or a DataFrame with one data set per row.
    simulator : callable ``simulator(theta, rng) -> X``
        Simulates the replicated data sets; for a fair comparison with the same design
        (such as the number of observations) as the observed ones.
    statistics : dict of str to callable
        ``statistic(data_set) -> float``, called on one data set (one item of
        ``X_obs`` or of the simulator's output).
    n_samples : int, default=100
        Posterior draws, hence replicated data sets, per observed data set; at least 2.
    random_state : int, Generator, RandomState or None
        Seed of the posterior draws and the simulations.

    Returns
    -------
    DataFrame
        Indexed by (``dataset``, ``statistic``); columns ``observed``, ``mean``, ``sd``,
        ``p_value``, ``p_value_two_sided``.
    """
    statistics = _check_statistics(statistics)
    if int(n_samples) < 2:
        raise ValueError(f"n_samples must be at least 2; got {n_samples}.")
    rng = _generator(random_state)
    observed = _evaluate(statistics, _datasets(X_obs))
    draws = sample_posterior(estimator, X_obs, int(n_samples), int(rng.integers(2**31 - 1)))
    if len(draws) != observed.shape[1]:
        raise ValueError(f"X_obs splits into {observed.shape[1]} data sets but the estimator "
                         f"sees {len(draws)}; pass an array or a list of data sets.")
    replicated = _replicate(draws, simulator, statistics, rng)
    return _predictive_table(observed, replicated, list(statistics))
