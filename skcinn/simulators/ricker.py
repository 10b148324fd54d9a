"""The Ricker model of population dynamics, observed through Poisson counts."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._sets import draw_sizes, split_sets


class Ricker:
    r"""Stochastic Ricker population model (Wood, 2010), as in the cINN paper.

    .. math::

        N_{t+1} = r N_t \exp(-N_t + \varepsilon_t), \quad
        \varepsilon_t \sim N(0, \sigma^2), \quad
        y_t \sim \mathrm{Poisson}(\phi N_t), \quad N_0 = 1,

    observed as the counts :math:`y_1, \dots, y_T` with :math:`T` drawn uniformly from
    ``n_steps`` for each data set. Parameters ``(r, sigma, phi)`` have uniform priors.

    Parameters
    ----------
    n_steps : int or tuple (low, high), default=(100, 500)
        Length of each series: fixed, or uniform on ``low..high`` (inclusive).
    r, sigma, phi : tuple (low, high)
        Bounds of the uniform priors (the paper's: (1, 90), (0.05, 0.7), (0, 15)).
    """

    parameter_names = ("r", "sigma", "phi")

    def __init__(
        self,
        n_steps: int | tuple[int, int] = (100, 500),
        r: tuple[float, float] = (1.0, 90.0),
        sigma: tuple[float, float] = (0.05, 0.7),
        phi: tuple[float, float] = (0.0, 15.0),
    ) -> None:
        self.n_steps = n_steps
        self.bounds = {"r": r, "sigma": sigma, "phi": phi}

    @property
    def prior(self) -> dict:
        """Independent uniform priors (scipy.stats), keyed by parameter name."""
        return {k: stats.uniform(lo, hi - lo) for k, (lo, hi) in self.bounds.items()}

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
        ndarray of shape (n, 3)
            Parameter vectors drawn from the prior, one per row.
        """
        return np.column_stack([rng.uniform(lo, hi, n) for lo, hi in self.bounds.values()])

    def simulate(self, theta: np.ndarray, rng: np.random.Generator):
        """Simulate one count series per parameter vector.

        Parameters
        ----------
        theta : ndarray of shape (n, 3)
            Parameter vectors, one per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, T, 1) or list of ndarray of shape (T_i, 1)
            The series; a list when their lengths vary.
        """
        theta = np.asarray(theta, dtype=float).reshape(-1, 3)
        n = len(theta)
        lengths = draw_sizes(self.n_steps, n, rng)
        r, sigma, phi = theta.T
        population = np.ones(n)
        counts = np.empty((n, lengths.max()))
        for t in range(lengths.max()):  # vectorised over data sets
            noise = sigma * rng.standard_normal(n)
            population = r * population * np.exp(-population + noise)
            counts[:, t] = rng.poisson(phi * population)
        return split_sets(counts[..., None], lengths)
