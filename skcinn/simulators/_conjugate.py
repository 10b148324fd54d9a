"""Exact posteriors of linear-Gaussian models, shared by the analytic example models."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..data import DataSets
from ._sets import draw_sizes


def gaussian_posterior(
    precision_data: np.ndarray, shift_data: np.ndarray, prior_std: float, noise_std: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""Posterior of :math:`\theta \sim N(0, \tau^2 I)` with Gaussian evidence.

    For a likelihood :math:`\prod_i N(y_i; a_i^T \theta, \sigma^2)`,
    :math:`\Sigma = (I/\tau^2 + A^T A/\sigma^2)^{-1}` and
    :math:`\mu = \Sigma A^T y / \sigma^2`.

    Parameters
    ----------
    precision_data : ndarray of shape (n, p, p)
        :math:`A^T A` of each data set.
    shift_data : ndarray of shape (n, p)
        :math:`A^T y` of each data set.
    prior_std, noise_std : float
        :math:`\tau` and :math:`\sigma`.

    Returns
    -------
    mean : ndarray of shape (n, p)
    cov : ndarray of shape (n, p, p)
    """
    p = precision_data.shape[-1]
    precision = np.eye(p) / prior_std**2 + precision_data / noise_std**2
    cov = np.linalg.inv(precision)
    mean = np.einsum("nij,nj->ni", cov, shift_data / noise_std**2)
    return mean, cov


def sample_gaussian(
    mean: np.ndarray, cov: np.ndarray, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Draws (n, n_samples, p) from N(mean_i, cov_i) for each data set i."""
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal((len(mean), n_samples, mean.shape[-1]))
    return mean[:, None, :] + np.einsum("nij,nsj->nsi", chol, z)


def masked(data: DataSets) -> tuple[np.ndarray, np.ndarray]:
    """Padded values with padding zeroed, and the float mask (n, n_obs, 1)."""
    mask = np.ones(data.values.shape[:2]) if data.mask is None else data.mask.astype(float)
    return data.values * mask[..., None], mask[..., None]


class ConjugateGaussianModel:
    r"""Shared parts of the models with prior :math:`\theta \sim N(0, \tau^2 I_p)`.

    Subclasses define ``parameter_names``, ``simulate(theta, rng)`` and
    ``posterior(X) -> (mean, cov)``.

    Parameters
    ----------
    n_params : int, default=2
        Number of parameters :math:`p`.
    prior_std : float, default=1.0
        :math:`\tau`.
    noise_std : float, default=1.0
        Standard deviation :math:`\sigma` of the observation noise.
    n_obs : int or tuple (low, high), default=(5, 50)
        Observations per data set: fixed, or uniform on ``low..high`` (inclusive).
    """

    prefix = "theta"

    def __init__(self, n_params: int = 2, prior_std: float = 1.0, noise_std: float = 1.0,
                 n_obs: int | tuple[int, int] = (5, 50)) -> None:
        self.n_params = n_params
        self.prior_std = prior_std
        self.noise_std = noise_std
        self.n_obs = n_obs

    @property
    def parameter_names(self) -> list[str]:
        """Names of the parameters."""
        return [f"{self.prefix}_{i}" for i in range(self.n_params)]

    @property
    def prior(self) -> dict:
        """Independent normal priors (scipy.stats), keyed by parameter name."""
        return {name: stats.norm(0.0, self.prior_std) for name in self.parameter_names}

    def sample_prior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` parameter vectors from the prior.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, n_params)
            Parameter vectors drawn from the prior, one per row.
        """
        return rng.normal(0.0, self.prior_std, size=(n, self.n_params))

    def sizes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw the number of observations of each of ``n`` data sets.

        Parameters
        ----------
        n : int
            Number of data sets.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of int of shape (n,)
            Observations per data set (all ``n_obs`` when fixed).
        """
        return draw_sizes(self.n_obs, n, rng)

    def sample_posterior(self, X, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Draw from the exact posterior of every data set.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, as returned by ``simulate``.
        n_samples : int
            Draws per data set.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, n_samples, p)
            Exact posterior draws.
        """
        return sample_gaussian(*self.posterior(X), n_samples, rng)

    def posterior(self, X) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError
