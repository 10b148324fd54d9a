"""Benchmark tasks of simulation-based inference (as in sbibm, Lueckmann et al., 2021)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._conjugate import ConjugateGaussianModel, gaussian_posterior
from ._prior import IndependentPrior


class _UniformBox(IndependentPrior):
    """Independent ``U(low, high)`` priors on ``theta_0, theta_1, ...``."""

    n_params = 2
    low, high = -1.0, 1.0

    @property
    def parameter_names(self) -> list[str]:
        """``theta_0, theta_1, ...``."""
        return [f"theta_{i}" for i in range(self.n_params)]

    @property
    def prior(self) -> dict:
        """Independent uniform priors (scipy.stats), keyed by parameter name."""
        return {k: stats.uniform(self.low, self.high - self.low) for k in self.parameter_names}


    def _theta(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta, dtype=float).reshape(-1, self.n_params)


class TwoMoons(_UniformBox):
    r"""Two moons (Greenberg, Nonnenmacher & Macke, 2019; sbibm's ``two_moons``).

    :math:`\theta \sim U(-1, 1)^2`. With :math:`a \sim U(-\pi/2, \pi/2)` and
    :math:`r \sim N(0.1, 0.01^2)`,

    .. math::

        x = \begin{pmatrix} r\cos a + 0.25 \\ r \sin a \end{pmatrix} +
            \begin{pmatrix} -|\theta_1 + \theta_2| / \sqrt{2} \\
                            (-\theta_1 + \theta_2) / \sqrt{2} \end{pmatrix},

    a half ring of radius about 0.1 shifted by a function of :math:`\theta`; the absolute
    value makes the posterior bimodal, with crescent-shaped modes.

    **Observation format.** :math:`x \in \mathbb{R}^2`: ``simulate`` returns an array
    (n, 2). Parameters ``theta_0, theta_1``.

    Examples
    --------
    >>> import numpy as np
    >>> model = TwoMoons()
    >>> rng = np.random.default_rng(0)
    >>> model.simulate(model.sample_prior(5, rng), rng).shape
    (5, 2)
    """

    n_params = 2
    low, high = -1.0, 1.0

    def simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulate one observation per parameter vector.

        Parameters
        ----------
        theta : ndarray of shape (n, 2)
            Parameter vectors, one per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, 2)
            The observations.
        """
        theta = self._theta(theta)
        n = len(theta)
        angle = rng.uniform(-np.pi / 2, np.pi / 2, n)
        radius = rng.normal(0.1, 0.01, n)
        ring = np.column_stack([radius * np.cos(angle) + 0.25, radius * np.sin(angle)])
        shift = np.column_stack([-np.abs(theta[:, 0] + theta[:, 1]),
                                 theta[:, 1] - theta[:, 0]]) / np.sqrt(2.0)
        return ring + shift


class SLCP(_UniformBox):
    r"""Simple likelihood, complex posterior (Papamakarios et al., 2019; sbibm's ``slcp``).

    :math:`\theta \sim U(-3, 3)^5`; :math:`x` is four independent draws
    :math:`x_j \sim N(m_\theta, S_\theta)`, :math:`j = 1, \dots, 4`, with

    .. math::

        m_\theta = \begin{pmatrix} \theta_1 \\ \theta_2 \end{pmatrix}, \quad
        S_\theta = \begin{pmatrix} s_1^2 & \rho s_1 s_2 \\ \rho s_1 s_2 & s_2^2
                   \end{pmatrix}, \quad
        s_1 = \theta_3^2,\ s_2 = \theta_4^2,\ \rho = \tanh\theta_5.

    The signs of :math:`\theta_3, \theta_4` are not identified, so the posterior has four
    symmetric modes.

    **Observation format.** :math:`x \in \mathbb{R}^8`: ``simulate`` returns an array
    (n, 8), the draws concatenated, :math:`(x_{1,1}, x_{1,2}, x_{2,1}, \dots, x_{4,2})`
    (``X.reshape(n, 4, 2)`` recovers them). Parameters ``theta_0, ..., theta_4``.

    Examples
    --------
    >>> import numpy as np
    >>> model = SLCP()
    >>> rng = np.random.default_rng(0)
    >>> model.simulate(model.sample_prior(5, rng), rng).shape
    (5, 8)
    """

    n_params = 5
    low, high = -3.0, 3.0
    n_draws = 4

    @staticmethod
    def moments(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance shared by the four Gaussian draws.

        Parameters
        ----------
        theta : ndarray of shape (n, 5)
            Parameter vectors, one per row.

        Returns
        -------
        mean : ndarray of shape (n, 2)
            The mean of every draw.
        cov : ndarray of shape (n, 2, 2)
            The covariance of every draw.
        """
        theta = np.asarray(theta, dtype=float).reshape(-1, 5)
        s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, np.tanh(theta[:, 4])
        cov = np.empty((len(theta), 2, 2))
        cov[:, 0, 0], cov[:, 1, 1] = s1**2, s2**2
        cov[:, 0, 1] = cov[:, 1, 0] = rho * s1 * s2
        return theta[:, :2], cov

    def simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulate one observation (four 2-D points) per parameter vector.

        Parameters
        ----------
        theta : ndarray of shape (n, 5)
            Parameter vectors, one per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, 8)
            The observations.
        """
        theta = self._theta(theta)
        s1, s2, rho = theta[:, 2:3] ** 2, theta[:, 3:4] ** 2, np.tanh(theta[:, 4:5])
        z = rng.standard_normal((len(theta), self.n_draws, 2))
        # The Cholesky factor of S written out: valid also where s1 or s2 is 0.
        first = s1 * z[..., 0]
        second = s2 * (rho * z[..., 0] + np.sqrt(1.0 - rho**2) * z[..., 1])
        draws = theta[:, None, :2] + np.stack([first, second], axis=-1)
        return draws.reshape(len(theta), 2 * self.n_draws)


class GaussianLinear(ConjugateGaussianModel):
    r"""Gaussian linear task (sbibm's ``gaussian_linear``) with its exact posterior.

    :math:`\theta \sim N(0, 0.1 I_{10})` and :math:`x \sim N(\theta, 0.1 I_{10})`
    (variances 0.1). The posterior is :math:`N(x/2, 0.05 I_{10})`; in general it is
    :math:`N(\mu, \Sigma)` with :math:`\Sigma = (I/\tau^2 + I/\sigma^2)^{-1}` and
    :math:`\mu = \Sigma x / \sigma^2`.

    **Observation format.** :math:`x \in \mathbb{R}^p`: ``simulate`` returns an array
    (n, p). Parameters ``theta_0, ..., theta_{p-1}``.

    Parameters
    ----------
    n_params : int, default=10
        Dimension :math:`p`.
    prior_var, noise_var : float, default=0.1
        Prior variance :math:`\tau^2` and noise variance :math:`\sigma^2`.

    Examples
    --------
    >>> import numpy as np
    >>> model = GaussianLinear()
    >>> rng = np.random.default_rng(0)
    >>> X = model.simulate(model.sample_prior(5, rng), rng)
    >>> mean, cov = model.posterior(X)
    >>> X.shape, mean.shape, cov.shape
    ((5, 10), (5, 10), (5, 10, 10))
    """

    def __init__(self, n_params: int = 10, prior_var: float = 0.1,
                 noise_var: float = 0.1) -> None:
        super().__init__(n_params, float(np.sqrt(prior_var)), float(np.sqrt(noise_var)), 1)
        self.prior_var = prior_var
        self.noise_var = noise_var

    def simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulate one observation per parameter vector.

        Parameters
        ----------
        theta : ndarray of shape (n, p)
            Parameter vectors, one per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray of shape (n, p)
            The observations.
        """
        theta = np.asarray(theta, dtype=float).reshape(-1, self.n_params)
        return theta + rng.normal(0.0, self.noise_std, size=theta.shape)

    def posterior(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Exact posterior of each observation.

        Parameters
        ----------
        X : array-like of shape (n, p)
            Observations, as returned by ``simulate``.

        Returns
        -------
        mean : ndarray of shape (n, p)
            Posterior means.
        cov : ndarray of shape (n, p, p)
            Posterior covariances.
        """
        X = np.asarray(X, dtype=float).reshape(-1, self.n_params)
        precision = np.broadcast_to(np.eye(self.n_params), (len(X), self.n_params, self.n_params))
        return gaussian_posterior(precision, X, self.prior_std, self.noise_std)
