r"""Figures of calibration, recovery, posteriors and training (needs matplotlib).

matplotlib is an optional dependency: ``pip install skcinn[plot]``. Every function
returns the :class:`matplotlib.figure.Figure` it drew, created with
:mod:`matplotlib.pyplot` (so ``plt.show()`` shows it) and never shown by skcinn. The
calibration plots take arrays as :mod:`skcinn.diagnostics` does: ``draws`` of shape
(n_datasets, n_samples, n_params) and ``theta`` of shape (n_datasets, n_params);
``parameter_names`` default to the columns of a DataFrame ``theta``, else
``theta_0, ...``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .diagnostics import (
    LEVELS,
    _check,
    _generator,
    _names,
    coverage,
    ecdf_bands,
    ecdf_difference,
    recovery,
    sbc_ranks,
)

__all__ = ["plot_coverage", "plot_losses", "plot_pairs", "plot_recovery", "plot_sbc_ecdf",
           "plot_sbc_histograms"]

Names = Sequence[str] | None
_BAND = {"color": "grey", "alpha": 0.3, "linewidth": 0}


def _pyplot():
    """``matplotlib.pyplot``, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skcinn.plotting needs matplotlib, an optional dependency: "
            "pip install skcinn[plot]"
        ) from exc
    return plt


def _prepare(draws: ArrayLike, theta: ArrayLike, parameter_names: Names):
    """Checked ``draws``, ``theta`` and the parameter names."""
    if parameter_names is None:
        parameter_names = getattr(theta, "columns", None)
    draws, theta = _check(draws, theta)
    return draws, theta, _names(parameter_names, draws.shape[2])


def _axes(ax=None, figsize: tuple[float, float] = (5.0, 3.6)):
    """The figure and axes to draw on: ``ax``'s, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _panels(n_panels: int, size: tuple[float, float] = (3.2, 2.8)):
    """A figure with one axes per panel, up to four per row (spare axes removed)."""
    ncols = min(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = _pyplot().subplots(nrows, ncols, squeeze=False, layout="constrained",
                                   figsize=(size[0] * ncols, size[1] * nrows))
    axes = list(axes.ravel())
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, axes[:n_panels]


def plot_sbc_ecdf(
    draws: ArrayLike, theta: ArrayLike, parameter_names: Names = None, *,
    n_points: int | None = None, confidence: float = 0.95, random_state=None, ax=None,
):
    r"""ECDF of the SBC ranks minus the uniform CDF, with its simultaneous band.

    One line per parameter: :func:`~skcinn.diagnostics.ecdf_difference` of the
    :func:`~skcinn.diagnostics.sbc_ranks`; the grey region is the simultaneous
    ``confidence`` band of :func:`~skcinn.diagnostics.ecdf_bands`. A calibrated
    posterior stays inside. A line below zero for :math:`z < 1/2` and above it beyond
    means the truth sits too often in the middle of the draws (a posterior too wide);
    the mirror image, too often in the tails (too narrow); a hump above zero over the
    whole range, draws that overestimate the truth; a valley, draws that underestimate it.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    parameter_names : sequence of str, optional
        Labels of the parameters; default the columns of a DataFrame ``theta``, else
        ``theta_0, ...``.
    n_points : int, optional
        Grid size :math:`K`; see :func:`~skcinn.diagnostics.ecdf_bands`.
    confidence : float, default=0.95
        Simultaneous coverage of the band.
    random_state : int, Generator, RandomState or None
        Seed of the tie-breaking of ranks and of the band.
    ax : matplotlib Axes, optional
        Draw there instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.
    """
    draws, theta, names = _prepare(draws, theta, parameter_names)
    rng = _generator(random_state)
    ranks = sbc_ranks(draws, theta, rng)
    difference = ecdf_difference(ranks, draws.shape[1], n_points, names)
    z, lower, upper = ecdf_bands(len(ranks), n_points, confidence, random_state=rng)
    fig, ax = _axes(ax)
    ax.fill_between(z, lower, upper, label=f"{confidence:.0%} simultaneous band", **_BAND)
    for name in names:
        ax.plot(difference.index, difference[name], label=name)
    ax.set(xlabel="fractional rank $z$", ylabel="ECDF$(z) - z$", xlim=(0, 1),
           title="Simulation-based calibration")
    ax.legend(fontsize="small")
    return fig


def plot_sbc_histograms(
    draws: ArrayLike, theta: ArrayLike, parameter_names: Names = None, *,
    n_bins: int | None = None, random_state=None,
):
    r"""Histograms of the SBC ranks, one panel per parameter.

    The ranks :math:`r \in \{0, \dots, L\}` (:func:`~skcinn.diagnostics.sbc_ranks`)
    are jittered into fractional ranks :math:`u = (r + V) / (L + 1)`,
    :math:`V \sim U(0, 1)`, exactly uniform for a calibrated posterior whatever
    :math:`L` and the number of bins :math:`B`; each bin count is then
    Binomial(:math:`N, 1/B`). The grey region is that count's central 99 % interval
    (per bin, not simultaneous: about one bin in a hundred leaves it by chance).

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    parameter_names : sequence of str, optional
        Labels of the parameters; default the columns of a DataFrame ``theta``, else
        ``theta_0, ...``.
    n_bins : int, optional
        :math:`B`; default :math:`\min(20, \max(2, \lfloor N/10 \rfloor))`.
    random_state : int, Generator, RandomState or None
        Seed of the tie-breaking and the jitter.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.
    """
    draws, theta, names = _prepare(draws, theta, parameter_names)
    (n, n_samples, _), rng = draws.shape, _generator(random_state)
    ranks = sbc_ranks(draws, theta, rng)
    u = (ranks + rng.random(ranks.shape)) / (n_samples + 1)
    n_bins = min(20, max(2, n // 10)) if n_bins is None else int(n_bins)
    low, high = stats.binom.interval(0.99, n, 1.0 / n_bins)
    fig, axes = _panels(len(names))
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        ax.hist(u[:, j], bins=np.linspace(0, 1, n_bins + 1), color="C0", alpha=0.7)
        ax.fill_between([0, 1], low, high, label="99 % interval, uniform", zorder=3,
                        **_BAND)
        ax.set(title=name, xlabel="fractional rank", ylabel="count", xlim=(0, 1))
    axes[0].legend(fontsize="small")
    return fig


def plot_recovery(draws: ArrayLike, theta: ArrayLike, parameter_names: Names = None):
    r"""Posterior means against the true parameters, one panel per parameter.

    Error bars are :math:`\pm` one posterior standard deviation; the dashed line is the
    identity; each title gives the :math:`R^2` of :func:`~skcinn.diagnostics.recovery`.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    parameter_names : sequence of str, optional
        Labels of the parameters; default the columns of a DataFrame ``theta``, else
        ``theta_0, ...``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.
    """
    draws, theta, names = _prepare(draws, theta, parameter_names)
    r2 = recovery(draws, theta, names)["r2"]
    mean, sd = draws.mean(axis=1), draws.std(axis=1, ddof=1)
    fig, axes = _panels(len(names))
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        ax.errorbar(theta[:, j], mean[:, j], yerr=sd[:, j], fmt="o", markersize=3,
                    alpha=0.5, elinewidth=0.8)
        ends = [min(theta[:, j].min(), mean[:, j].min()), max(theta[:, j].max(),
                                                             mean[:, j].max())]
        ax.plot(ends, ends, "k--", linewidth=1)
        ax.set(title=f"{name}: $R^2$ = {r2[name]:.3f}", xlabel="true value",
               ylabel="posterior mean")
    return fig


def plot_coverage(
    draws: ArrayLike, theta: ArrayLike, parameter_names: Names = None, *,
    levels: ArrayLike = LEVELS, ax=None,
):
    r"""Coverage of central credible intervals against their level.

    One line per parameter (:func:`~skcinn.diagnostics.coverage`) and the diagonal of
    perfect calibration; the grey region is the pointwise 95 % interval of the coverage
    of a calibrated posterior, :math:`\text{Binomial}(N, a) / N` at level :math:`a`.
    Below the diagonal: intervals too narrow (overconfident); above: too wide.

    Parameters
    ----------
    draws : array-like of shape (n_datasets, n_samples, n_params)
        Posterior draws for each data set.
    theta : array-like of shape (n_datasets, n_params)
        The parameters that generated the data sets.
    parameter_names : sequence of str, optional
        Labels of the parameters; default the columns of a DataFrame ``theta``, else
        ``theta_0, ...``.
    levels : array-like of float in (0, 1), default=0.05, 0.10, ..., 0.95
        Credible levels of the intervals.
    ax : matplotlib Axes, optional
        Draw there instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.
    """
    draws, theta, names = _prepare(draws, theta, parameter_names)
    table = coverage(draws, theta, levels, names)
    level, n = table.index.to_numpy(), len(theta)
    fig, ax = _axes(ax, figsize=(4.2, 4.0))
    ax.fill_between(level, stats.binom.ppf(0.025, n, level) / n,
                    stats.binom.ppf(0.975, n, level) / n, label="95 % interval", **_BAND)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    for name in names:
        ax.plot(level, table[name], marker="o", markersize=3, label=name)
    ax.set(xlabel="credible level", ylabel="coverage", xlim=(0, 1), ylim=(0, 1),
           title="Coverage of central intervals")
    ax.legend(fontsize="small")
    return fig


def _pair_panel(ax, draws: np.ndarray, i: int, j: int, truth, bins: int) -> None:
    """Histogram of parameter ``i`` on the diagonal, else ``j`` (x) against ``i`` (y)."""
    if i == j:
        ax.hist(draws[:, i], bins=bins, color="C0", alpha=0.8)
        if truth is not None:
            ax.axvline(truth[i], color="C3", linewidth=1.5)
        return
    ax.scatter(draws[:, j], draws[:, i], s=3, alpha=0.3, color="C0", linewidths=0)
    if truth is not None:
        ax.plot(truth[j], truth[i], marker="*", markersize=12, color="C3")


def plot_pairs(
    draws: ArrayLike, theta_true: ArrayLike | None = None, parameter_names: Names = None,
    *, bins: int = 30,
):
    """Pair plot of the posterior draws of one data set.

    A :math:`p \\times p` grid: histograms of each parameter on the diagonal, scatter
    plots of every pair off it; the true parameters, when given, as red lines and stars.

    Parameters
    ----------
    draws : array-like of shape (n_samples, n_params), (1, n_samples, n_params) or (n_samples,)
        Posterior draws of one data set.
    theta_true : array-like of shape (n_params,), optional
        The true parameters, marked in every panel.
    parameter_names : sequence of str, optional
        Labels of the parameters; default ``theta_0, ...``.
    bins : int, default=30
        Bins of the histograms on the diagonal.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.
    """
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[0] if draws.ndim == 3 and len(draws) == 1 else draws
    draws = draws[:, None] if draws.ndim == 1 else draws
    if draws.ndim != 2:
        raise ValueError(f"draws must be (n_samples, n_params) for one data set; got "
                         f"shape {draws.shape}.")
    p = draws.shape[1]
    names = _names(parameter_names, p)
    truth = None if theta_true is None else np.asarray(theta_true, np.float64).reshape(-1)
    if truth is not None and len(truth) != p:
        raise ValueError(f"theta_true has {len(truth)} values for {p} parameters.")
    fig, axes = _pyplot().subplots(p, p, squeeze=False, layout="constrained",
                                   figsize=(2.4 * p + 0.6, 2.4 * p + 0.6))
    for i in range(p):
        for j in range(p):
            _pair_panel(axes[i, j], draws, i, j, truth, bins)
        axes[-1, i].set_xlabel(names[i])
        axes[i, 0].set_ylabel(names[i])
    return fig


def plot_losses(estimator, ax=None):
    """Training loss and validation loss per epoch of a fitted estimator.

    The training loss is ``loss_curve_``, the mean negative log posterior density of the
    training batches (parameters standardised); the validation loss is minus
    ``validation_scores_``, on the same scale, drawn when early stopping recorded it.

    Parameters
    ----------
    estimator : fitted CINNPosteriorEstimator, or a Pipeline ending in one
        The estimator whose training history is drawn.
    ax : matplotlib Axes, optional
        Draw there instead of in a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.
    """
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    if not hasattr(final, "loss_curve_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"{type(final).__name__} is not fitted: no loss_curve_.")
    fig, ax = _axes(ax)
    loss = np.asarray(final.loss_curve_, dtype=np.float64)
    ax.plot(np.arange(1, len(loss) + 1), loss, marker=".", label="training")
    validation = -np.asarray(getattr(final, "validation_scores_", []), dtype=np.float64)
    if validation.size:
        ax.plot(np.arange(1, len(validation) + 1), validation, marker=".",
                label="validation")
    ax.set(xlabel="epoch", ylabel="negative log density", title="Training")
    ax.legend(fontsize="small")
    return fig
