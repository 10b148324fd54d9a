"""The toy Bayesian linear regression of the paper: known noise, conjugate prior."""

from __future__ import annotations

import numpy as np

from ..simulation import as_datasets
from ._conjugate import ConjugateGaussianModel, gaussian_posterior, masked
from ._sets import split_sets


class LinearRegression(ConjugateGaussianModel):
    r"""Bayesian linear regression with known noise and an exact posterior.

    Weights :math:`\theta \sim N(0, \tau^2 I_p)`; a data set is :math:`n` pairs
    :math:`(x_i, y_i)` with :math:`x_i \sim N(0, I_p)` and
    :math:`y_i = x_i^T \theta + \varepsilon_i`, :math:`\varepsilon_i \sim N(0, \sigma^2)`.
    Each observation is the row :math:`(x_{i1}, \dots, x_{ip}, y_i)`; :math:`n` is drawn
    uniformly from ``n_obs`` for each data set.

    Parameters
    ----------
    n_params : int, default=2
        Number of weights :math:`p`.
    prior_std : float, default=1.0
        :math:`\tau`.
    noise_std : float, default=1.0
        :math:`\sigma`.
    n_obs : int or tuple (low, high), default=(5, 50)
        Observations per data set: fixed, or uniform on ``low..high`` (inclusive).
    """

    prefix = "w"

    def simulate(self, theta: np.ndarray, rng: np.random.Generator):
        """Simulate one data set of rows (x, y) per weight vector.

        Parameters
        ----------
        theta : ndarray of shape (n, p)
            Weights, one vector per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, n_obs, p + 1) or list of ndarray of shape (n_i, p + 1)
            The data sets; a list when their sizes vary.
        """
        theta = np.asarray(theta, dtype=float).reshape(len(theta), self.n_params)
        sizes = self.sizes(len(theta), rng)
        x = rng.normal(size=(len(theta), sizes.max(), self.n_params))
        y = np.einsum("nop,np->no", x, theta) + rng.normal(0.0, self.noise_std, x.shape[:2])
        return split_sets(np.concatenate([x, y[..., None]], axis=-1), sizes)

    def posterior(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Exact posterior of each data set.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, as returned by ``simulate``.

        Returns
        -------
        mean : ndarray of shape (n, p)
            Posterior means.
        cov : ndarray of shape (n, p, p)
            Posterior covariances.
        """
        values, _ = masked(as_datasets(X))
        x, y = values[..., :-1], values[..., -1]
        precision = np.einsum("noi,noj->nij", x, x)
        return gaussian_posterior(precision, np.einsum("noi,no->ni", x, y),
                                  self.prior_std, self.noise_std)
