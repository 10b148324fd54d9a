r"""Model misspecification: do the observed data look like the model's simulations?

An amortized posterior is trained on simulations only; on data the simulator could not
have produced, its answers are extrapolations and cannot be trusted, however well
calibrated it is on simulations. Following Schmitt et al. (2023), the check compares the
*learned summaries* :math:`s(x)` (:meth:`~skcinn.CINNPosteriorEstimator.summarize`) of
the observed data sets with those of data sets simulated from the prior predictive
distribution, by the maximum mean discrepancy (MMD; Gretton et al., 2012)

.. math::

    \operatorname{MMD}^2(P, Q) = \mathbb{E}\,k(a, a') + \mathbb{E}\,k(b, b')
    - 2\,\mathbb{E}\,k(a, b), \qquad a, a' \sim P,\ b, b' \sim Q,

which is zero if and only if :math:`P = Q` for a characteristic kernel :math:`k`, here a
mixture of Gaussian kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .diagnostics import _generator
from .metrics import final_step
from .simulation import as_prior

__all__ = ["MisspecificationResult", "median_bandwidths", "misspecification_test", "mmd",
           "summarize"]

BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def summarize(estimator, X) -> np.ndarray:
    """Learned summaries of data sets, from an estimator or a Pipeline ending in one.

    For a :class:`~sklearn.pipeline.Pipeline`, ``X`` goes through ``pipe[:-1].transform``
    first (as in :func:`skcinn.metrics.sample_posterior`).

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator, or a Pipeline ending in one
        The estimator whose summary network embeds the data sets.
    X : array-like or list of array-like
        Data sets, in the form the estimator (or the pipeline) was fitted on.

    Returns
    -------
    ndarray of shape (n_datasets, n_summary)
        One summary vector per data set.
    """
    final, X = final_step(estimator, X, "summarize")
    summaries = np.asarray(final.summarize(X), dtype=np.float64)
    return summaries.reshape(len(summaries), -1)


def _points(x: ArrayLike, name: str) -> np.ndarray:
    """A float array (n, d) with at least one row."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{name} must hold at least one point; got shape {x.shape}.")
    return x[:, None] if x.ndim == 1 else x.reshape(len(x), -1)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:math:`\\|a_i - b_j\\|^2`, shape (len(a), len(b))."""
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(sq, 0.0)


def median_bandwidths(
    points: ArrayLike, factors: ArrayLike = BANDWIDTH_FACTORS
) -> np.ndarray:
    r"""Kernel bandwidths by the median heuristic: :math:`h_m = f_m \cdot \tilde{d}`.

    :math:`\tilde{d}` is the median Euclidean distance between distinct points (1 if it
    is zero, as when all points coincide); :math:`f_m` are the ``factors``
    (default 1/4, 1/2, 1, 2, 4).

    Parameters
    ----------
    points : array-like of shape (n, d)
        The points whose distances set the scale.
    factors : array-like of float, default=(0.25, 0.5, 1, 2, 4)
        The multiples :math:`f_m` of the median distance.

    Returns
    -------
    ndarray of shape (n_factors,)
        The bandwidths :math:`h_m`.
    """
    points = _points(points, "points")
    rows, cols = np.triu_indices(len(points), k=1)
    distances = np.sqrt(_squared_distances(points, points)[rows, cols])
    median = float(np.median(distances)) if distances.size else 0.0
    return (median if median > 0 else 1.0) * np.asarray(factors, dtype=np.float64)


def _kernel_matrix(points: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    r""":math:`k(x, y) = \frac{1}{M}\sum_m \exp(-\|x - y\|^2 / (2 h_m^2))` for all pairs."""
    sq = _squared_distances(points, points)
    kernel = np.zeros_like(sq)
    for h in bandwidths:
        kernel += np.exp(-sq / (2.0 * h**2))
    return kernel / len(bandwidths)


def _within(total: np.ndarray, diagonal: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Mean kernel over distinct pairs of a sample; the biased mean for a single point."""
    distinct = (total - diagonal) / np.maximum(size * (size - 1), 1)
    return np.where(size > 1, distinct, total / np.maximum(size, 1) ** 2)


def _split_mmd(kernel: np.ndarray, first: np.ndarray) -> np.ndarray:
    r"""Unbiased MMD² between the points flagged in each row of ``first`` and the rest.

    ``kernel`` (N, N) is the kernel matrix of all points, ``first`` (B, N) boolean. With
    :math:`v` the indicator of a row and :math:`w = 1 - v`, the kernel sums are the
    quadratic forms :math:`v^T K v`, :math:`v^T K w` and
    :math:`w^T K w = 1^T K 1 - v^T K v - 2 v^T K w`; returns shape (B,).
    """
    v = first.astype(np.float64)
    w = 1.0 - v
    kv = v @ kernel
    vv, vw = (kv * v).sum(axis=1), (kv * w).sum(axis=1)
    ww = kernel.sum() - vv - 2.0 * vw
    diagonal = np.diag(kernel)
    m, n = v.sum(axis=1), w.sum(axis=1)
    return (_within(vv, v @ diagonal, m) + _within(ww, w @ diagonal, n)
            - 2.0 * vw / (m * n))


def mmd(a: ArrayLike, b: ArrayLike, bandwidths: ArrayLike | None = None) -> float:
    r"""Unbiased estimate of the squared maximum mean discrepancy between two samples.

    .. math::

        \widehat{\operatorname{MMD}}^2 = \frac{1}{m(m-1)}\sum_{i \ne j} k(a_i, a_j)
        + \frac{1}{n(n-1)}\sum_{i \ne j} k(b_i, b_j)
        - \frac{2}{mn}\sum_{i, j} k(a_i, b_j),

    with the mixture of Gaussian kernels
    :math:`k(x, y) = \frac{1}{M}\sum_{m=1}^M \exp(-\|x - y\|^2 / (2 h_m^2))`. The
    estimate is unbiased, so it can be slightly negative when the distributions agree.
    For a sample of a single point its within-sample mean is undefined; the biased
    :math:`k(x, x) = 1` takes its place, so the value is biased upwards (by the same
    amount for every sample of that size: tests comparing such values stay valid).

    Parameters
    ----------
    a : array-like of shape (m, d) or (m,)
        The first sample.
    b : array-like of shape (n, d) or (n,)
        The second sample.
    bandwidths : array-like of float, optional
        :math:`h_1, \dots, h_M`; default :func:`median_bandwidths` of the pooled samples.

    Returns
    -------
    float
        :math:`\widehat{\operatorname{MMD}}^2`.
    """
    a, b = _points(a, "a"), _points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1]} dimensions and b has {b.shape[1]}.")
    pooled = np.concatenate([a, b])
    bandwidths = _check_bandwidths(pooled, bandwidths)
    first = (np.arange(len(pooled)) < len(a))[None, :]
    return float(_split_mmd(_kernel_matrix(pooled, bandwidths), first)[0])


def _check_bandwidths(pooled: np.ndarray, bandwidths: ArrayLike | None) -> np.ndarray:
    if bandwidths is None:
        return median_bandwidths(pooled)
    bandwidths = np.atleast_1d(np.asarray(bandwidths, dtype=np.float64))
    if bandwidths.size == 0 or np.any(~(bandwidths > 0)):
        raise ValueError(f"bandwidths must be positive; got {bandwidths.tolist()}.")
    return bandwidths


@dataclass(frozen=True)
class MisspecificationResult:
    """Outcome of :func:`misspecification_test`.

    Attributes
    ----------
    mmd2 : float
        Unbiased MMD² between the observed and the reference summaries.
    p_value : float
        Permutation p-value :math:`(1 + \\#\\{T_b \\ge T\\}) / (1 + B)`.
    misspecified : bool
        ``p_value < alpha``.
    alpha : float
        Level of the test.
    null_mmd2 : ndarray of shape (n_null,)
        The MMD² :math:`T_b` of the random splits (the null distribution).
    bandwidths : ndarray
        The kernel bandwidths used.
    n_observed, n_reference : int
        Observed and simulated data sets.
    """

    mmd2: float
    p_value: float
    misspecified: bool
    alpha: float
    null_mmd2: np.ndarray
    bandwidths: np.ndarray
    n_observed: int
    n_reference: int

    def to_frame(self) -> pd.DataFrame:
        """The result as a one-row DataFrame.

        Returns
        -------
        DataFrame
            Columns ``mmd2``, ``p_value``, ``misspecified``, ``alpha``, ``n_observed``,
            ``n_reference``.
        """
        keys = ["mmd2", "p_value", "misspecified", "alpha", "n_observed", "n_reference"]
        return pd.DataFrame({key: [getattr(self, key)] for key in keys})


def _random_splits(n_first: int, n_points: int, n_splits: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Row 0 flags the first ``n_first`` points; the other rows random sets of that size."""
    first = np.zeros((n_splits + 1, n_points), dtype=bool)
    first[0, :n_first] = True
    chosen = np.argsort(rng.random((n_splits, n_points)), axis=1)[:, :n_first]
    first[np.arange(1, n_splits + 1)[:, None], chosen] = True
    return first


def misspecification_test(
    estimator, X_obs, simulator, prior, n_reference: int = 1000, n_null: int = 200,
    random_state=None, *, alpha: float = 0.05, bandwidths: ArrayLike | None = None,
) -> MisspecificationResult:
    r"""Test whether observed data sets could come from the model, on learned summaries.

    ``n_reference`` parameter vectors are drawn from the prior and simulated; the
    statistic is :math:`T = \widehat{\operatorname{MMD}}^2` (:func:`mmd`) between the
    summaries of the :math:`m` = ``len(X_obs)`` observed data sets and those of the
    :math:`n` reference ones. Its null distribution comes from ``n_null`` random splits
    of the pooled :math:`m + n` summaries into a subset of size :math:`m` and the rest
    (a permutation test): if the observed data sets come from the prior predictive
    distribution, all :math:`m + n` summaries are exchangeable, so
    :math:`p = (1 + \#\{T_b \ge T\}) / (1 + B)` is an exact p-value, for any :math:`m`.
    With :math:`m \ll n` the subsets are, but for a few observed points, subsets of the
    reference summaries. The bandwidths, by default the :func:`median_bandwidths` of the
    pooled summaries, are the same for every split.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator, or a Pipeline ending in one
        The estimator whose summary network embeds the data sets.
    X_obs : array-like or list of array-like
        The observed data sets (one data set as ``X[None]``), in the form of the
        simulator's output.
    simulator : callable
        ``simulator(theta, rng) -> X`` for a batch of parameters.
    prior : callable, scipy.stats distribution, or dict/list of them
        Any prior accepted by :func:`skcinn.simulation.as_prior`.
    n_reference : int, default=1000
        Simulated data sets. Memory grows as :math:`(m + n)^2`.
    n_null : int, default=200
        Random splits :math:`B`; the smallest attainable p-value is :math:`1/(B + 1)`.
    random_state : int, Generator, RandomState or None
        Seed of the prior draws, the simulations and the splits.
    alpha : float, default=0.05
        Level of the test.
    bandwidths : array-like of float, optional
        Kernel bandwidths; see :func:`mmd`.

    Returns
    -------
    MisspecificationResult
        ``result.to_frame()`` gives it as a one-row DataFrame.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}.")
    if int(n_reference) < 1 or int(n_null) < 1:
        raise ValueError(f"n_reference and n_null must be positive; got {n_reference} "
                         f"and {n_null}.")
    rng = _generator(random_state)
    observed = summarize(estimator, X_obs)
    theta = as_prior(prior).sample(int(n_reference), rng)
    reference = summarize(estimator, simulator(theta, rng))
    pooled = np.concatenate([observed, reference])
    bandwidths = _check_bandwidths(pooled, bandwidths)
    splits = _random_splits(len(observed), len(pooled), int(n_null), rng)
    values = _split_mmd(_kernel_matrix(pooled, bandwidths), splits)
    p_value = (1 + np.sum(values[1:] >= values[0])) / (1 + int(n_null))
    return MisspecificationResult(
        mmd2=float(values[0]), p_value=float(p_value), misspecified=bool(p_value < alpha),
        alpha=float(alpha), null_mmd2=values[1:], bandwidths=bandwidths,
        n_observed=len(observed), n_reference=len(reference),
    )
