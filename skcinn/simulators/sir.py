"""A stochastic SIR epidemic, observed through noisy daily counts of new infections."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._prior import IndependentPrior
from ._sets import draw_sizes, split_sets


class SIR(IndependentPrior):
    r"""Stochastic SIR epidemic as a chain binomial (Reed--Frost type), in days.

    With population :math:`N`, :math:`S_0 = N - I_0`, :math:`R_0 = 0`, each day

    .. math::

        C_t \sim \mathrm{Bin}\!\left(S_t, 1 - e^{-\beta I_t / N}\right), \quad
        D_t \sim \mathrm{Bin}\!\left(I_t, 1 - e^{-\gamma}\right),

        S_{t+1} = S_t - C_t, \quad I_{t+1} = I_t + C_t - D_t, \quad R_{t+1} = R_t + D_t,

    so :math:`S_t + I_t + R_t = N` at every step: :math:`\beta` is the contact rate and
    :math:`\gamma` the recovery rate, per day. The observation of day :math:`t` is the
    reported number of new infections, :math:`y_t \sim \mathrm{Poisson}(C_t)`, or, with
    ``dispersion`` :math:`r`, negative binomial with mean :math:`C_t` and variance
    :math:`C_t + C_t^2 / r`.

    **Parameters and priors.** The natural prior :math:`\beta \sim U(0.01, 1)`,
    :math:`\gamma \mid \beta \sim U(0, \beta)` (so :math:`R_0 = \beta/\gamma > 1`) is not
    a product of independent laws. It is reparametrised as ``beta`` ~ U(0.01, 1) and
    ``rho`` :math:`= \gamma / \beta` ~ U(0, 1), independent, with
    :math:`\gamma = \rho\beta` and :math:`R_0 = 1/\rho`: the same joint law of
    :math:`(\beta, \gamma)`, with bounded independent marginals.

    **Observation format.** A data set is the series :math:`y_1, \dots, y_T`, an array
    (T, 1); :math:`T` is fixed or drawn uniformly per data set from ``n_days``.

    Parameters
    ----------
    n_days : int or tuple (low, high), default=500
        Length :math:`T` of each series: fixed, or uniform on ``low..high`` (inclusive).
    population : int, default=1000
        :math:`N`.
    initial_infected : int, default=10
        :math:`I_0`.
    dispersion : float or None, default=None
        Negative-binomial :math:`r` of the reporting noise; None for Poisson.
    beta_bounds, rho_bounds : tuple (low, high)
        Prior bounds; defaults (0.01, 1) and (0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> model = SIR(n_days=100)
    >>> rng = np.random.default_rng(0)
    >>> model.simulate(model.sample_prior(3, rng), rng).shape
    (3, 100, 1)
    """

    parameter_names = ("beta", "rho")

    def __init__(
        self,
        n_days: int | tuple[int, int] = 500,
        population: int = 1000,
        initial_infected: int = 10,
        dispersion: float | None = None,
        beta_bounds: tuple[float, float] = (0.01, 1.0),
        rho_bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.n_days = n_days
        self.population = population
        self.initial_infected = initial_infected
        self.dispersion = dispersion
        self.bounds = {"beta": beta_bounds, "rho": rho_bounds}

    @property
    def prior(self) -> dict:
        """Independent uniform priors (scipy.stats) of ``beta`` and ``rho = gamma/beta``."""
        return {k: stats.uniform(lo, hi - lo) for k, (lo, hi) in self.bounds.items()}


    @staticmethod
    def rates(theta: np.ndarray) -> np.ndarray:
        """Infection and recovery rates of each parameter vector.

        Parameters
        ----------
        theta : ndarray of shape (n, 2)
            ``(beta, rho)`` per row.

        Returns
        -------
        ndarray of shape (n, 2)
            ``(beta, gamma)`` per row.
        """
        theta = np.asarray(theta, dtype=float).reshape(-1, 2)
        return np.column_stack([theta[:, 0], theta[:, 0] * theta[:, 1]])

    def _report(self, cases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy reports of the new infections ``cases``."""
        if self.dispersion is None:
            return rng.poisson(cases).astype(float)
        r = float(self.dispersion)
        return rng.negative_binomial(r, r / (r + cases)).astype(float)

    def simulate(self, theta: np.ndarray, rng: np.random.Generator,
                 return_states: bool = False):
        """Reported daily new infections: an array (n, T, 1), or a list of (T_i, 1).

        Parameters
        ----------
        theta : ndarray of shape (n, 2)
            ``(beta, rho)`` per row.
        rng : numpy.random.Generator
            The only source of randomness.
        return_states : bool, default=False
            Also return the latent compartments.

        Returns
        -------
        X : ndarray or list of ndarray
            The reports :math:`y_1, \\dots, y_T` of each data set.
        states : ndarray or list of ndarray
            Only with ``return_states``: :math:`(S_t, I_t, R_t)` for
            :math:`t = 0, \\dots, T`, an array (n, T + 1, 3) or a list of (T_i + 1, 3).
        """
        beta, gamma = self.rates(theta).T
        n = len(beta)
        days = draw_sizes(self.n_days, n, rng)
        states = np.zeros((n, days.max(initial=0) + 1, 3), dtype=np.int64)
        states[:, 0] = self.population - self.initial_infected, self.initial_infected, 0
        cases = np.zeros((n, days.max(initial=0)))
        recovery = 1.0 - np.exp(-gamma)
        for t in range(cases.shape[1]):  # vectorised over data sets
            s, i, r = states[:, t].T
            new = rng.binomial(s, 1.0 - np.exp(-beta * i / self.population))
            recovered = rng.binomial(i, recovery)
            states[:, t + 1] = np.column_stack([s - new, i + new - recovered, r + recovered])
            cases[:, t] = new
        X = split_sets(self._report(cases, rng)[..., None], days)
        if not return_states:
            return X
        return X, split_sets(states.astype(float), days + 1)
