r"""Calibration and recovery diagnostics of posterior draws.

The functions work on arrays: ``draws`` of shape (n_datasets, n_samples, n_params),
approximate posterior draws for each data set, and ``theta`` of shape (n_datasets,
n_params), the parameters that generated the data sets (drawn from the prior). Tables
have one row per parameter, indexed by ``parameter_names`` (default ``theta_0, ...``).

For an exact posterior the truth is just another posterior draw: its rank among the
draws is uniform (simulation-based calibration, SBC; Talts et al., 2018) and central
credible intervals cover it at their nominal level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from .simulation import as_prior

__all__ = [
    "calibration_error", "calibration_report", "contraction", "coverage", "ecdf_bands",
    "ecdf_difference", "recovery", "sbc", "sbc_ranks", "simulate_and_sample", "z_scores",
]

LEVELS = np.linspace(0.05, 0.95, 19)
Names = Sequence[str] | None


def _generator(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int, a Generator or a RandomState."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def _check(draws: ArrayLike, theta: ArrayLike | None = None):
    """Float arrays ``draws`` (n, L, p) and ``theta`` (n, p) with matching shapes."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3:
        raise ValueError(f"draws must be (n_datasets, n_samples, n_params); got {draws.shape}.")
    if theta is None:
        return draws, None
    theta = np.asarray(theta, dtype=np.float64)
    theta = theta[:, None] if theta.ndim == 1 else theta
    if theta.shape != (draws.shape[0], draws.shape[2]):
        raise ValueError(f"theta of shape {theta.shape} does not match draws of shape "
                         f"{draws.shape}; expected (n_datasets, n_params).")
    return draws, theta


def _names(parameter_names: Names, n_params: int) -> list[str]:
    if parameter_names is None:
        return [f"theta_{i}" for i in range(n_params)]
    names = [str(name) for name in parameter_names]
    if len(names) != n_params:
        raise ValueError(f"{len(names)} parameter_names for {n_params} parameters.")
    return names


def _table(columns: dict, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns, index=pd.Index(names, name="parameter"))


def _ecdf_grid(n_datasets: int, n_points: int | None) -> np.ndarray:
    """The grid :math:`z_i = i / K`, :math:`i = 1, \\dots, K - 1`."""
    k = min(n_datasets, 100) if n_points is None else int(n_points)
    if k < 2:
        raise ValueError(f"n_points must be at least 2; got {k}.")
    return np.arange(1, k) / k


def sbc_ranks(draws: ArrayLike, theta: ArrayLike, random_state=None) -> np.ndarray:
    r"""Rank of each true parameter among its posterior draws, shape (n_datasets, n_params).

    :math:`r_{ij} = \#\{l : \theta^{(l)}_{ij} < \theta_{ij}\} + U_{ij}`, with
    :math:`U_{ij}` uniform on :math:`\{0, \dots, t_{ij}\}` and :math:`t_{ij}` the number
    of draws equal to the truth (ties broken at random with ``random_state``). For a
    calibrated posterior with :math:`L` draws, :math:`r` is uniform on
    :math:`\{0, \dots, L\}`.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    random_state : int, Generator, RandomState or None
        Seed of the tie-breaking.

    Returns
    -------
    ndarray of int of shape (n_datasets, n_params)
        The ranks, between 0 and ``n_samples``.
    """
    draws, theta = _check(draws, theta)
    less = (draws < theta[:, None, :]).sum(axis=1)
    ties = (draws == theta[:, None, :]).sum(axis=1)
    return less + _generator(random_state).integers(0, ties + 1)


def _ecdf_counts(u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """:math:`\\#\\{j : u_{sj} \\le z_i\\}` for every row ``s`` of ``u``, shape (n_rows, K-1)."""
    n_rows, width = len(u), len(z) + 1
    bins = np.searchsorted(z, u) + width * np.arange(n_rows)[:, None]
    counts = np.bincount(bins.ravel(), minlength=n_rows * width).reshape(n_rows, width)
    return counts.cumsum(axis=1)[:, :-1]


def ecdf_bands(
    n_datasets: int, n_points: int | None = None, confidence: float = 0.95,
    n_sim: int = 1000, random_state=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Simultaneous confidence bands for the ECDF of ``n_datasets`` uniform values.

    As in Säilynoja, Bürkner and Vehtari (2022): :math:`N` times the ECDF at
    :math:`z_i` is Binomial(:math:`N, z_i`); the bands are the per-point binomial
    intervals with tails :math:`\gamma/2`, with :math:`\gamma` chosen so that the whole
    ECDF stays inside all of them with probability ``confidence``. For each of
    ``n_sim`` simulated uniform samples with counts :math:`c_i`,
    :math:`s = \min_i \min(F_B(c_i), 1 - F_B(c_i - 1))`, and :math:`\gamma/2` is the
    :math:`(1 - \text{confidence})` quantile of :math:`s`.

    Parameters
    ----------
    n_datasets : int
        Sample size :math:`N` (number of ranks).
    n_points : int, optional
        :math:`K`: grid :math:`z_i = i/K`, :math:`i = 1..K-1`; default
        :math:`\min(N, 100)`.
    confidence : float, default=0.95
        Simultaneous coverage.
    n_sim : int, default=1000
        Simulated uniform samples behind :math:`\gamma`.
    random_state : int, Generator, RandomState or None
        Seed of the simulated samples.

    Returns
    -------
    z : ndarray of shape (K - 1,)
        The grid.
    lower : ndarray of shape (K - 1,)
        The lower bound of the ECDF *difference* :math:`F(z) - z`, to overlay on
        :func:`ecdf_difference`.
    upper : ndarray of shape (K - 1,)
        The upper bound of the ECDF difference.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
    z = _ecdf_grid(n_datasets, n_points)
    counts = _ecdf_counts(_generator(random_state).random((n_sim, n_datasets)), z)
    tails = np.minimum(stats.binom.cdf(counts, n_datasets, z),
                       stats.binom.sf(counts - 1, n_datasets, z))
    half_gamma = np.quantile(tails.min(axis=1), 1 - confidence)
    lower = stats.binom.ppf(half_gamma, n_datasets, z) / n_datasets
    upper = stats.binom.ppf(1 - half_gamma, n_datasets, z) / n_datasets
    return z, lower - z, upper - z


def ecdf_difference(
    ranks: ArrayLike, n_samples: int, n_points: int | None = None,
    parameter_names: Names = None,
) -> pd.DataFrame:
    r"""ECDF of the fractional ranks minus the uniform CDF, per parameter.

    For ranks :math:`r_j \in \{0, \dots, L\}` (:func:`sbc_ranks` with
    :math:`L` = ``n_samples``),
    :math:`F(z) = \frac{1}{N}\sum_j \operatorname{clip}(z(L+1) - r_j, 0, 1)`, the ECDF of
    the jittered ranks :math:`(r_j + V_j)/(L+1)`, :math:`V_j \sim U(0, 1)`, averaged over
    the jitter: exact on the rank lattice :math:`z = k/(L+1)`, linear in between.

    Parameters
    ----------
    ranks : array-like of shape (n_datasets, n_params) or (n_datasets,)
        Ranks from :func:`sbc_ranks`.
    n_samples : int
        :math:`L`, the number of posterior draws behind the ranks.
    n_points : int, optional
        :math:`K`, as for :func:`ecdf_bands`; default :math:`\min(N, 100)`.
    parameter_names : sequence of str, optional
        Row labels of the table; default ``theta_0, ...``.

    Returns
    -------
    DataFrame
        :math:`F(z) - z` on the grid of :func:`ecdf_bands` (same ``n_points``),
        indexed by ``z``, one column per parameter.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    ranks = ranks[:, None] if ranks.ndim == 1 else ranks
    z = _ecdf_grid(len(ranks), n_points)
    ecdf = np.clip(z[:, None, None] * (n_samples + 1) - ranks, 0, 1).mean(axis=1)
    names = _names(parameter_names, ranks.shape[1])
    return pd.DataFrame(ecdf - z[:, None], index=pd.Index(z, name="z"), columns=names)


def sbc(
    draws: ArrayLike, theta: ArrayLike, *, alpha: float = 0.01, n_bins: int | None = None,
    n_points: int | None = None, n_sim: int = 1000, parameter_names: Names = None,
    random_state=None,
) -> pd.DataFrame:
    r"""Simulation-based calibration: tests of the uniformity of the ranks.

    The ranks :math:`r` (:func:`sbc_ranks`) are jittered into fractional ranks
    :math:`u = (r + V)/(L + 1)`, :math:`V \sim U(0, 1)`, exactly uniform on (0, 1) when
    :math:`r` is uniform on :math:`\{0, \dots, L\}`; the tests are exact for any
    :math:`L`, without binning artefacts of the discrete ranks.

    * ``chi2_pvalue``: :math:`\chi^2 = \sum_b (O_b - N/B)^2 / (N/B)` on :math:`B`
      equal bins of :math:`u`, :math:`B - 1` degrees of freedom;
    * ``ks_pvalue``: Kolmogorov-Smirnov test of :math:`u` against U(0, 1);
    * ``ecdf_outside_band``: fraction of the grid where the ECDF of :math:`u` leaves the
      simultaneous :func:`ecdf_bands` at confidence :math:`1 - \alpha`;
    * ``rejected``: a p-value below :math:`\alpha`, or the ECDF outside its band.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    alpha : float, default=0.01
        Level of every test.
    n_bins : int, optional
        :math:`B`; default :math:`\min(20, \max(2, \lfloor N/10 \rfloor))`.
    n_points : int, optional
        Grid size :math:`K` of the ECDF test; see :func:`ecdf_bands`.
    n_sim : int, default=1000
        Simulated samples behind the ECDF band; see :func:`ecdf_bands`.
    parameter_names : sequence of str, optional
        Row labels of the table; default ``theta_0, ...``.
    random_state : int, Generator, RandomState or None
        Seed of the tie-breaking, the jitter and the bands.

    Returns
    -------
    DataFrame
        Columns ``chi2_pvalue``, ``ks_pvalue``, ``ecdf_outside_band``, ``rejected``.
    """
    draws, theta = _check(draws, theta)
    (n, n_samples, n_params), rng = draws.shape, _generator(random_state)
    ranks = sbc_ranks(draws, theta, rng)
    u = (ranks + rng.random(ranks.shape)) / (n_samples + 1)
    n_bins = min(20, max(2, n // 10)) if n_bins is None else int(n_bins)
    binned = np.minimum((u * n_bins).astype(int), n_bins - 1)
    observed = np.stack([np.bincount(b, minlength=n_bins) for b in binned.T], axis=1)
    chi2 = np.atleast_1d(stats.chisquare(observed, axis=0).pvalue)
    ks = np.array([stats.kstest(u[:, j], "uniform").pvalue for j in range(n_params)])
    z, lower, upper = ecdf_bands(n, n_points, 1 - alpha, n_sim, rng)
    diff = _ecdf_counts(u.T, z) / n - z
    outside = ((diff < lower) | (diff > upper)).mean(axis=1)
    columns = {"chi2_pvalue": chi2, "ks_pvalue": ks, "ecdf_outside_band": outside,
               "rejected": (chi2 < alpha) | (ks < alpha) | (outside > 0)}
    return _table(columns, _names(parameter_names, n_params))


def coverage(
    draws: ArrayLike, theta: ArrayLike, levels: ArrayLike = LEVELS,
    parameter_names: Names = None,
) -> pd.DataFrame:
    r"""Empirical coverage of central credible intervals.

    The interval at level :math:`a` runs from the :math:`(1-a)/2` to the
    :math:`(1+a)/2` quantile of a data set's draws; its coverage :math:`c(a)` is the
    fraction of data sets whose truth lies inside. Calibrated: :math:`c(a) \approx a`.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    levels : array-like of float in (0, 1), default=0.05, 0.10, ..., 0.95
        Credible levels :math:`a`.
    parameter_names : sequence of str, optional
        Column labels of the table; default ``theta_0, ...``.

    Returns
    -------
    DataFrame
        One row per level (index ``level``), one column per parameter.
    """
    draws, theta = _check(draws, theta)
    levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"levels must lie in (0, 1); got {levels.tolist()}.")
    bounds = np.quantile(draws, np.concatenate([(1 - levels) / 2, (1 + levels) / 2]), axis=1)
    lower, upper = bounds[: len(levels)], bounds[len(levels) :]
    covered = ((lower <= theta) & (theta <= upper)).mean(axis=1)
    names = _names(parameter_names, theta.shape[1])
    return pd.DataFrame(covered, index=pd.Index(levels, name="level"), columns=names)


def calibration_error(
    draws: ArrayLike, theta: ArrayLike, levels: ArrayLike = LEVELS,
    parameter_names: Names = None,
) -> pd.DataFrame:
    r"""How far the :func:`coverage` :math:`c(a)` of central intervals is from :math:`a`.

    Columns, one row per parameter (arguments as for :func:`coverage`):

    * ``calibration_error``: :math:`\operatorname{median}_a |c(a) - a|` (BayesFlow's);
    * ``max_calibration_error``: :math:`\max_a |c(a) - a|`;
    * ``signed_calibration_error``: :math:`\operatorname{mean}_a (c(a) - a)`, negative
      for a posterior that is too narrow (overconfident), positive for one too wide.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    levels : array-like of float in (0, 1), default=0.05, 0.10, ..., 0.95
        Credible levels :math:`a`.
    parameter_names : sequence of str, optional
        Row labels of the table; default ``theta_0, ...``.

    Returns
    -------
    DataFrame
        The three columns above, one row per parameter.
    """
    table = coverage(draws, theta, levels, parameter_names)
    error = table.to_numpy() - table.index.to_numpy()[:, None]
    columns = {"calibration_error": np.median(np.abs(error), axis=0),
               "max_calibration_error": np.abs(error).max(axis=0),
               "signed_calibration_error": error.mean(axis=0)}
    return _table(columns, list(table.columns))


def z_scores(draws: ArrayLike, theta: ArrayLike) -> np.ndarray:
    r"""Posterior z-scores :math:`(\bar\theta_{ij} - \theta_{ij}) / s_{ij}`.

    :math:`\bar\theta_{ij}`, :math:`s_{ij}`: mean and standard deviation (``ddof=1``)
    of the draws. Calibrated: mean about 0, standard deviation about 1.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.

    Returns
    -------
    ndarray of shape (n_datasets, n_params)
        The z-score of every parameter of every data set.
    """
    draws, theta = _check(draws, theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (draws.mean(axis=1) - theta) / draws.std(axis=1, ddof=1)


def recovery(draws: ArrayLike, theta: ArrayLike, parameter_names: Names = None) -> pd.DataFrame:
    r"""How well the posterior means :math:`\bar\theta_j` recover the truth :math:`\theta_j`.

    Columns, one row per parameter:

    * ``r2``: :math:`1 - \sum_j (\bar\theta_j - \theta_j)^2 /
      \sum_j (\theta_j - \operatorname{mean}\theta)^2`;
    * ``rmse``: :math:`\sqrt{\operatorname{mean}_j (\bar\theta_j - \theta_j)^2}`;
    * ``nrmse``: ``rmse`` :math:`/ (\max_j \theta_j - \min_j \theta_j)`;
    * ``z_mean``, ``z_std``: mean and standard deviation of the :func:`z_scores`.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    parameter_names : sequence of str, optional
        Row labels of the table; default ``theta_0, ...``.

    Returns
    -------
    DataFrame
        The columns above, one row per parameter.
    """
    draws, theta = _check(draws, theta)
    residual = draws.mean(axis=1) - theta
    rmse = np.sqrt(np.mean(residual**2, axis=0))
    z = z_scores(draws, theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = ((theta - theta.mean(axis=0)) ** 2).sum(axis=0)
        columns = {"r2": 1 - (residual**2).sum(axis=0) / spread, "rmse": rmse,
                   "nrmse": rmse / np.ptp(theta, axis=0), "z_mean": z.mean(axis=0),
                   "z_std": z.std(axis=0)}
    return _table(columns, _names(parameter_names, theta.shape[1]))


def contraction(
    draws: ArrayLike, prior_variance: ArrayLike, parameter_names: Names = None
) -> pd.DataFrame:
    r"""Posterior contraction, one minus posterior variance over prior variance.

    :math:`1 - \operatorname{mean}_j \operatorname{Var}[\theta \mid x_j] /
    \operatorname{Var}[\theta]`. 1: the data pin the parameter down; 0: nothing learned
    beyond the prior; negative: posteriors wider than the prior. Posterior variances use
    ``ddof=1``.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    prior_variance : float or array-like of shape (n_params,)
        :math:`\operatorname{Var}[\theta]` of each parameter under the prior.
    parameter_names : sequence of str, optional
        Row labels of the table; default ``theta_0, ...``.

    Returns
    -------
    DataFrame
        One column ``contraction``, one row per parameter.
    """
    draws, _ = _check(draws)
    prior_variance = np.broadcast_to(np.asarray(prior_variance, dtype=np.float64),
                                     (draws.shape[2],))
    ratio = draws.var(axis=1, ddof=1).mean(axis=0) / prior_variance
    return _table({"contraction": 1 - ratio}, _names(parameter_names, draws.shape[2]))


def simulate_and_sample(
    estimator, simulator, prior, n_datasets: int = 200, n_samples: int = 500,
    random_state=None,
) -> tuple[np.ndarray | list, np.ndarray, np.ndarray]:
    """Draw parameters from the prior, simulate data sets and sample their posteriors.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator, or a Pipeline ending in one
        The amortized posterior to check.
    simulator : callable
        ``simulator(theta, rng) -> X`` for a batch of parameters.
    prior : callable, scipy.stats distribution, or dict/list of them
        Any prior accepted by :func:`skcinn.simulation.as_prior`.
    n_datasets : int, default=200
        Parameter vectors drawn, hence data sets simulated.
    n_samples : int, default=500
        Posterior draws per data set.
    random_state : int, Generator, RandomState or None
        Seed of the prior draws, the simulations and the posterior draws.

    Returns
    -------
    X : ndarray or list of ndarray
        The simulator's output.
    theta : ndarray of shape (n_datasets, n_params)
        The parameters drawn from the prior.
    draws : ndarray of shape (n_datasets, n_samples, n_params)
        Posterior draws for each simulated data set.
    """
    from .metrics import sample_posterior

    rng = _generator(random_state)
    theta = as_prior(prior).sample(n_datasets, rng)
    X = simulator(theta, rng)
    return X, theta, sample_posterior(estimator, X, n_samples, int(rng.integers(2**31 - 1)))


def calibration_report(
    estimator, X=None, theta=None, *, simulator=None, prior=None, n_datasets: int = 200,
    n_samples: int = 500, random_state=None,
) -> pd.DataFrame:
    """Calibration and recovery of a fitted estimator, one row per parameter.

    Pass either held-out pairs ``(X, theta)`` or a ``simulator`` and a ``prior`` (then
    ``n_datasets`` pairs are simulated). The prior variance behind ``contraction`` is
    the variance of ``theta`` (the prior draws when simulating): given pairs must come
    from the prior.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator, or a Pipeline ending in one
        The amortized posterior to check.
    X : array-like or list of array-like, optional
        Held-out data sets.
    theta : array-like of shape (n_datasets, n_params), optional
        The parameters behind ``X``, drawn from the prior.
    simulator : callable, optional
        ``simulator(theta, rng) -> X`` for a batch of parameters.
    prior : callable, scipy.stats distribution, or dict/list of them, optional
        Any prior accepted by :func:`skcinn.simulation.as_prior`.
    n_datasets : int, default=200
        Data sets simulated when ``simulator`` and ``prior`` are given.
    n_samples : int, default=500
        Posterior draws per data set.
    random_state : int, Generator, RandomState or None
        Seed of the simulations, the draws and the tests.

    Returns
    -------
    DataFrame
        Columns ``chi2_pvalue``, ``ks_pvalue``, ``ecdf_outside_band``, ``sbc_rejected``
        (:func:`sbc`); ``calibration_error``, ``max_calibration_error``,
        ``signed_calibration_error`` (:func:`calibration_error`); ``coverage_error_50``,
        ``coverage_error_90`` (coverage minus level); ``r2``, ``nrmse``, ``z_mean``
        (:func:`recovery`); ``contraction``.
    """
    from .metrics import sample_posterior

    given = [value is not None for value in (X, theta, simulator, prior)]
    if given not in ([True, True, False, False], [False, False, True, True]):
        raise ValueError("Pass either X and theta, or simulator and prior.")
    rng = _generator(random_state)
    if X is None:
        _, theta, draws = simulate_and_sample(estimator, simulator, prior, n_datasets,
                                              n_samples, rng)
    else:
        draws = sample_posterior(estimator, X, n_samples, int(rng.integers(2**31 - 1)))
    draws, values = _check(draws, theta)
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    names = getattr(final, "parameter_names_", getattr(theta, "columns", None))
    names = _names(names, values.shape[1])
    cover = coverage(draws, values, [0.5, 0.9], names)
    parts = [
        sbc(draws, values, parameter_names=names, random_state=rng).rename(
            columns={"rejected": "sbc_rejected"}),
        calibration_error(draws, values, parameter_names=names),
        _table({"coverage_error_50": cover.iloc[0] - 0.5,
                "coverage_error_90": cover.iloc[1] - 0.9}, names),
        recovery(draws, values, names)[["r2", "nrmse", "z_mean"]],
        contraction(draws, values.var(axis=0, ddof=1), names),
    ]
    return pd.concat(parts, axis=1)
