"""Inferring the mean of a Gaussian from an i.i.d. data set of varying size."""

from __future__ import annotations

import numpy as np

from ..simulation import as_datasets
from ._conjugate import ConjugateGaussianModel, gaussian_posterior, masked
from ._sets import split_sets


class GaussianMean(ConjugateGaussianModel):
    r"""Gaussian mean model with a conjugate prior and an exact posterior.

    :math:`\theta \sim N(0, \tau^2 I_p)`; a data set is :math:`n` i.i.d. draws
    :math:`x_j \sim N(\theta, \sigma^2 I_p)`, with :math:`n` drawn uniformly from
    ``n_obs`` for each data set.

    Parameters
    ----------
    n_params : int, default=2
        Dimension :math:`p` of the mean.
    prior_std : float, default=1.0
        :math:`\tau`.
    noise_std : float, default=1.0
        :math:`\sigma`.
    n_obs : int or tuple (low, high), default=(5, 50)
        Observations per data set: fixed, or uniform on ``low..high`` (inclusive).

    Examples
    --------
    >>> import numpy as np
    >>> model = GaussianMean()
    >>> rng = np.random.default_rng(0)
    >>> theta = model.sample_prior(3, rng)
    >>> X = model.simulate(theta, rng)
    >>> mean, cov = model.posterior(X)
    >>> mean.shape, cov.shape
    ((3, 2), (3, 2, 2))
    """

    prefix = "mu"

    def simulate(self, theta: np.ndarray, rng: np.random.Generator):
        """Simulate one data set per mean vector.

        Parameters
        ----------
        theta : ndarray of shape (n, p)
            Means, one per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, n_obs, p) or list of ndarray of shape (n_i, p)
            The data sets; a list when their sizes vary.
        """
        theta = np.asarray(theta, dtype=float).reshape(len(theta), self.n_params)
        sizes = self.sizes(len(theta), rng)
        noise = rng.normal(0.0, self.noise_std, size=(len(theta), sizes.max(), self.n_params))
        return split_sets(theta[:, None, :] + noise, sizes)

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
        values, mask = masked(as_datasets(X))
        n = mask.sum(axis=(1, 2))
        precision = n[:, None, None] * np.eye(self.n_params)
        return gaussian_posterior(precision, values.sum(axis=1), self.prior_std, self.noise_std)
