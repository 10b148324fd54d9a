"""What a posterior derives from its draws and densities, for the estimator and for
ensembles of estimators alike: summaries, calibration checks and the score."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _torch_utils as tu
from ._frames import summarize_draws


def check_n_samples(n_samples) -> int:
    """``n_samples`` as an int; a ValueError unless it is a positive integer."""
    if not isinstance(n_samples, Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    return int(n_samples)


class PosteriorMethodsMixin:
    """``posterior_summary``, ``check_calibration`` and ``score`` from ``sample_posterior``,
    ``log_posterior`` and ``parameter_names_``."""

    def posterior_summary(
        self, X, quantiles=(0.05, 0.5, 0.95), n_samples: int = 1000, random_state=None
    ) -> pd.DataFrame:
        """Posterior mean, standard deviation and quantiles of every data set.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in the form used for ``fit``.
        quantiles : sequence of float, default=(0.05, 0.5, 0.95)
            Quantile levels in [0, 1]; columns are named ``q0.05``, ``q0.5``, ...
        n_samples : int, default=1000
            Draws per data set behind the summary.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws.

        Returns
        -------
        DataFrame
            Indexed by (``dataset``, ``parameter``); columns ``mean``, ``std`` and one per
            quantile.
        """
        quantiles = np.atleast_1d(np.asarray(quantiles, dtype=float))
        if np.any((quantiles < 0) | (quantiles > 1)):
            raise ValueError(f"quantiles must lie in [0, 1]; got {quantiles.tolist()}.")
        draws = self.sample_posterior(X, n_samples, random_state)
        return summarize_draws(draws, self.parameter_names_, quantiles.tolist())

    def check_calibration(
        self, X, y, *, n_datasets: int = 200, n_samples: int = 500, random_state=None
    ) -> pd.DataFrame:
        """Simulation-based calibration, coverage and recovery in one table.

        Parameters
        ----------
        X : array-like, list of array-like, or callable
            Held-out data sets; or, as in ``fit``, a batched simulator (then ``y`` is the
            prior and ``n_datasets`` pairs are simulated).
        y : array-like of shape (n_datasets, n_params), or a prior
            The parameters behind ``X`` (drawn from the prior), or the prior.
        n_datasets : int, default=200
            Simulated data sets when ``X`` is a simulator.
        n_samples : int, default=500
            Posterior draws per data set.
        random_state : int, RandomState instance or None, default=None
            Seed of the simulations and draws.

        Returns
        -------
        DataFrame
            One row per parameter: SBC p-values and verdict, calibration errors,
            coverage errors, R², NRMSE, mean z-score and contraction (see
            :func:`skcinn.diagnostics.calibration_report`).
        """
        from .diagnostics import calibration_report

        check_is_fitted(self)
        if callable(X) and not hasattr(X, "shape"):
            pairs = {"simulator": X, "prior": y}
        else:
            pairs = {"X": X, "theta": y}
        seed = tu.seed_from(check_random_state(random_state))
        report = calibration_report(
            self, **pairs, n_datasets=n_datasets, n_samples=n_samples, random_state=seed
        )
        report.index = list(self.parameter_names_)
        return report

    def score(self, X, y, sample_weight=None) -> float:
        """Mean log posterior density of the true parameters (higher is better).

        Parameters
        ----------
        X : array-like or list of array-like
            Held-out data sets.
        y : array-like of shape (n_datasets, n_params) or (n_datasets,)
            The parameters that generated them.
        sample_weight : array-like of shape (n_datasets,), default=None
            Weights of the data sets.

        Returns
        -------
        float
            The (weighted) mean of :meth:`log_posterior`.
        """
        return float(np.average(self.log_posterior(X, y), weights=sample_weight))
