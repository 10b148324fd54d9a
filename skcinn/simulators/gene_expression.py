"""The telegraph model of bursty gene expression, observed as mRNA counts across cells."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._prior import IndependentPrior
from ._sets import draw_sizes, pack_sets


class TelegraphModel(IndependentPrior):
    r"""Telegraph (two-state) model of transcriptional bursting, at stationarity.

    A gene switches off -> on at rate :math:`k_{on}` and on -> off at rate
    :math:`k_{off}`; while on, it makes mRNA at rate :math:`k_{syn}`; each mRNA is degraded
    at rate 1 (all rates in units of the degradation rate). Each cell is an independent
    copy of this process observed at stationarity.

    **Simulation** (exact, not approximate). The stationary mRNA count of the telegraph
    model is a Beta--Poisson mixture (Peccoud & Ycart, 1995; Kim & Marioni, 2013):

    .. math::

        p \sim \mathrm{Beta}(k_{on}, k_{off}), \qquad
        m \mid p \sim \mathrm{Poisson}(k_{syn}\, p),

    so each cell costs one Beta and one Poisson draw. Its mean is
    :math:`k_{syn} k_{on} / (k_{on} + k_{off})` and its Fano factor
    :math:`1 + k_{syn} k_{off} / ((k_{on} + k_{off})(k_{on} + k_{off} + 1))`. In the bursty
    limit (:math:`k_{off} \to \infty` with burst size :math:`k_{syn}/k_{off}` fixed) it
    tends to the negative binomial with :math:`k_{on}` bursts per unit time.

    **Parameters and priors** (independent log-uniforms, bounds configurable):
    ``k_on`` and ``k_off`` on (0.1, 10), ``k_syn`` on (1, 200).

    **Observation format.** A data set is the counts of ``n_cells`` cells, an array
    (n_cells, 1) of floats; ``n_cells`` is fixed or drawn uniformly per data set.

    Parameters
    ----------
    n_cells : int or tuple (low, high), default=(100, 500)
        Cells per data set: fixed, or uniform on ``low..high`` (inclusive).
    bounds : dict, optional
        Prior bounds replacing the defaults, keyed by parameter name.

    Examples
    --------
    >>> import numpy as np
    >>> model = TelegraphModel(n_cells=200)
    >>> rng = np.random.default_rng(0)
    >>> model.simulate(model.sample_prior(3, rng), rng).shape
    (3, 200, 1)
    """

    parameter_names = ("k_on", "k_off", "k_syn")
    default_bounds = {"k_on": (0.1, 10.0), "k_off": (0.1, 10.0), "k_syn": (1.0, 200.0)}

    def __init__(
        self,
        n_cells: int | tuple[int, int] = (100, 500),
        bounds: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        unknown = set(bounds or {}) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"Unknown parameters in bounds: {sorted(unknown)}.")
        self.n_cells = n_cells
        self.bounds = {**self.default_bounds, **(bounds or {})}

    @property
    def prior(self) -> dict:
        """Independent log-uniform priors (scipy.stats), keyed by parameter name."""
        return {k: stats.loguniform(lo, hi) for k, (lo, hi) in self.bounds.items()}


    @staticmethod
    def moments(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact stationary mean and Fano factor of the counts.

        Parameters
        ----------
        theta : ndarray of shape (n, 3)
            ``(k_on, k_off, k_syn)`` per row.

        Returns
        -------
        mean : ndarray of shape (n,)
            Stationary mean count.
        fano : ndarray of shape (n,)
            Stationary Fano factor (variance over mean).
        """
        k_on, k_off, k_syn = np.asarray(theta, dtype=float).reshape(-1, 3).T
        total = k_on + k_off
        return k_syn * k_on / total, 1.0 + k_syn * k_off / (total * (total + 1.0))

    def simulate(self, theta: np.ndarray, rng: np.random.Generator):
        """mRNA counts: an array (n, n_cells, 1), or a list of (n_i, 1) arrays.

        Parameters
        ----------
        theta : ndarray of shape (n, 3)
            ``(k_on, k_off, k_syn)`` per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray or list of ndarray
            Counts per cell, as floats.
        """
        theta = np.asarray(theta, dtype=float).reshape(-1, 3)
        sizes = draw_sizes(self.n_cells, len(theta), rng)
        k_on, k_off, k_syn = np.repeat(theta, sizes, axis=0).T  # one row per cell
        active_fraction = rng.beta(k_on, k_off)
        counts = rng.poisson(k_syn * active_fraction)
        return pack_sets(counts[:, None].astype(float), sizes)
