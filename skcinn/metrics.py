"""scikit-learn scorers for amortized posteriors, built on :mod:`skcinn.diagnostics`.

A scorer is a callable ``scorer(estimator, X, y) -> float``, higher is better, usable as
``scoring=`` in :func:`~sklearn.model_selection.cross_validate`,
:class:`~sklearn.model_selection.GridSearchCV` and friends; ``y`` holds the parameters
that generated the held-out data sets ``X``. ``estimator`` is a fitted
:class:`~skcinn.CINNPosteriorEstimator` or a :class:`~sklearn.pipeline.Pipeline` ending
in one. The sampling scorers draw 200 posterior samples per data set under the fixed
seed 0, so scoring the same estimator on the same fold always gives the same number.

>>> from sklearn.model_selection import cross_validate  # doctest: +SKIP
>>> from skcinn.metrics import SCORERS  # doctest: +SKIP
>>> cross_validate(est, X, theta, cv=3, scoring=SCORERS)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.pipeline import Pipeline

from . import diagnostics

__all__ = [
    "SCORERS", "log_posterior_density", "make_posterior_scorer", "neg_calibration_error",
    "final_step", "neg_posterior_nrmse", "posterior_contraction", "sample_posterior",
]


def sample_posterior(estimator, X, n_samples: int = 1000, random_state=None) -> np.ndarray:
    """Posterior draws from an estimator or from a Pipeline ending in one.

    For a :class:`~sklearn.pipeline.Pipeline`, ``X`` goes through ``pipe[:-1].transform``
    first; then the last step's ``sample_posterior`` draws.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator or Pipeline
        The estimator, or a Pipeline whose last step is one.
    X : array-like or list of array-like
        Data sets, in the form the estimator (or the pipeline) was fitted on.
    n_samples : int, default=1000
        Draws per data set.
    random_state : int, RandomState instance or None
        Seed of the draws.

    Returns
    -------
    ndarray of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    """
    estimator, X = final_step(estimator, X, "sample_posterior")
    return estimator.sample_posterior(X, n_samples=n_samples, random_state=random_state)


def final_step(estimator, X, method: str):
    """The estimator that does the inference, and ``X`` transformed for it.

    For a :class:`~sklearn.pipeline.Pipeline` (nested ones too), ``X`` goes through
    ``pipe[:-1].transform`` and the last step is returned; any other estimator is
    returned with ``X`` unchanged.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator or Pipeline
        The estimator, or a Pipeline whose last step is one.
    X : array-like or list of array-like
        Data sets, in the form the estimator (or the pipeline) was fitted on.
    method : str
        The method the caller needs, such as ``"sample_posterior"`` or ``"summarize"``.

    Returns
    -------
    final : estimator
        The last step, which has ``method``.
    X : array-like or list of array-like
        The data sets, transformed by the steps before the last.

    Raises
    ------
    TypeError
        If the final estimator has no ``method``.
    """
    while isinstance(estimator, Pipeline):
        if len(estimator) > 1:
            X = estimator[:-1].transform(X)
        estimator = estimator[-1]
    if not hasattr(estimator, method):
        raise TypeError(
            f"{type(estimator).__name__} has no {method}; pass a fitted "
            "CINNPosteriorEstimator or a Pipeline whose last step is one."
        )
    return estimator, X


class _PosteriorScorer:
    """``scorer(estimator, X, y)``: a statistic of posterior draws against ``y``."""

    def __init__(self, statistic: Callable, sign: float, n_samples: int, random_state,
                 name: str) -> None:
        self.statistic = statistic
        self.sign = sign
        self.n_samples = n_samples
        self.random_state = random_state
        self.name = name

    def __call__(self, estimator, X, y) -> float:
        theta = np.asarray(y, dtype=np.float64)
        theta = theta[:, None] if theta.ndim == 1 else theta
        draws = sample_posterior(estimator, X, self.n_samples, self.random_state)
        return float(self.sign * self.statistic(draws, theta))

    def __repr__(self) -> str:
        return (f"make_posterior_scorer({self.name}, greater_is_better={self.sign > 0}, "
                f"n_samples={self.n_samples}, random_state={self.random_state!r})")


def make_posterior_scorer(
    statistic: Callable[[np.ndarray, np.ndarray], float], *, greater_is_better: bool = True,
    n_samples: int = 200, random_state=0,
) -> Callable:
    """A scorer from a statistic of posterior draws and true parameters.

    Parameters
    ----------
    statistic : callable ``statistic(draws, theta) -> float``
        ``draws`` (n_datasets, n_samples, n_params), ``theta`` (n_datasets, n_params).
    greater_is_better : bool, default=True
        Otherwise the scorer returns the negated statistic.
    n_samples : int, default=200
        Posterior draws per data set.
    random_state : int, default=0
        Seed of the draws; fixed, so the scorer is deterministic.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``, for ``scoring=`` in scikit-learn.
    """
    name = getattr(statistic, "__name__", repr(statistic))
    return _PosteriorScorer(statistic, 1.0 if greater_is_better else -1.0, n_samples,
                            random_state, name)


def _mean_calibration_error(draws: np.ndarray, theta: np.ndarray) -> float:
    return diagnostics.calibration_error(draws, theta)["calibration_error"].mean()


def _mean_nrmse(draws: np.ndarray, theta: np.ndarray) -> float:
    return diagnostics.recovery(draws, theta)["nrmse"].mean()


def _mean_contraction(draws: np.ndarray, theta: np.ndarray) -> float:
    prior_variance = theta.var(axis=0, ddof=1)
    return diagnostics.contraction(draws, prior_variance)["contraction"].mean()


neg_calibration_error = make_posterior_scorer(_mean_calibration_error,
                                              greater_is_better=False)
neg_calibration_error.__doc__ = """Minus the calibration error, averaged over parameters.

The calibration error is the median over the levels 0.05, 0.10, ..., 0.95 of
``|coverage - level|`` of central credible intervals
(:func:`skcinn.diagnostics.calibration_error`).

Parameters
----------
estimator : fitted CINNPosteriorEstimator or Pipeline
    The estimator, or a Pipeline whose last step is one.
X : array-like or list of array-like
    Held-out data sets.
y : array-like of shape (n_datasets, n_params) or (n_datasets,)
    The parameters that generated them.

Returns
-------
float
    Minus the mean calibration error: 0 at best.
"""

neg_posterior_nrmse = make_posterior_scorer(_mean_nrmse, greater_is_better=False)
neg_posterior_nrmse.__doc__ = """Minus the NRMSE of the posterior means, averaged over parameters.

The RMSE of the posterior means is divided by the range of the true parameters in the
fold (:func:`skcinn.diagnostics.recovery`).

Parameters
----------
estimator : fitted CINNPosteriorEstimator or Pipeline
    The estimator, or a Pipeline whose last step is one.
X : array-like or list of array-like
    Held-out data sets.
y : array-like of shape (n_datasets, n_params) or (n_datasets,)
    The parameters that generated them.

Returns
-------
float
    Minus the mean NRMSE: 0 at best.
"""

posterior_contraction = make_posterior_scorer(_mean_contraction)
posterior_contraction.__doc__ = """Posterior contraction, averaged over parameters.

Contraction is 1 - mean posterior variance / prior variance
(:func:`skcinn.diagnostics.contraction`). The prior variance is estimated as the variance
(ddof=1) of ``y`` in the scored fold, which is right when the held-out parameters were
drawn from the prior; with few data sets in a fold, that estimate is noisy.

Parameters
----------
estimator : fitted CINNPosteriorEstimator or Pipeline
    The estimator, or a Pipeline whose last step is one.
X : array-like or list of array-like
    Held-out data sets.
y : array-like of shape (n_datasets, n_params) or (n_datasets,)
    The parameters that generated them.

Returns
-------
float
    The mean contraction: 1 at best, 0 when nothing is learned beyond the prior.
"""


def log_posterior_density(estimator, X, y) -> float:
    """Mean log posterior density of the true parameters: ``estimator.score(X, y)``.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator or Pipeline
        The estimator, or a Pipeline whose last step is one.
    X : array-like or list of array-like
        Held-out data sets.
    y : array-like of shape (n_datasets, n_params) or (n_datasets,)
        The parameters that generated them.

    Returns
    -------
    float
        The mean log posterior density; higher is better.
    """
    return float(estimator.score(X, y))


#: The scorers above by name, for ``scoring=SCORERS`` in scikit-learn's model selection.
SCORERS: dict[str, Callable] = {
    "neg_calibration_error": neg_calibration_error,
    "neg_posterior_nrmse": neg_posterior_nrmse,
    "posterior_contraction": posterior_contraction,
    "log_posterior_density": log_posterior_density,
}
