"""The leaky competing accumulator: i.i.d. trials of (response time, choice)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ._prior import IndependentPrior
from ._sets import draw_sizes, pack_sets


def race(inputs: np.ndarray, leak: np.ndarray, inhibition: np.ndarray,
         threshold: np.ndarray, rng: np.random.Generator, dt: float, noise_std: float,
         max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Euler--Maruyama race of two leaky, mutually inhibiting, rectified accumulators.

    Every trial steps until one accumulator reaches its threshold; once a quarter of the
    trials in the arrays are decided, they are dropped from the arrays of the next steps
    (decided trials still in them keep stepping, unrecorded).

    Parameters
    ----------
    inputs : ndarray of shape (m, 2)
        Inputs :math:`I_1, I_2` of each trial.
    leak, inhibition, threshold : ndarray of shape (m,)
        :math:`k`, :math:`\beta` and the threshold of each trial.
    rng : numpy.random.Generator
    dt : float
        Step in seconds.
    noise_std : float
        Standard deviation of the noise per unit time.
    max_steps : int
        Trials undecided after this many steps stop there, choosing the larger
        accumulator.

    Returns
    -------
    time : ndarray of shape (m,)
        Decision time, ``steps * dt``.
    choice : ndarray of int, shape (m,)
        0 if accumulator 1 won, 1 if accumulator 2 won.
    """
    m = len(inputs)
    steps, choice = np.full(m, max_steps), np.zeros(m, dtype=int)
    x, active, live = np.zeros((m, 2)), np.arange(m), np.ones(m, dtype=bool)
    params = [inputs, leak[:, None], inhibition[:, None], threshold]
    sd = noise_std * np.sqrt(dt)
    for step in range(1, max_steps + 1):
        drive, k, beta, bound = params
        x += (drive - k * x - beta * x[:, ::-1]) * dt + sd * rng.standard_normal(x.shape)
        np.maximum(x, 0.0, out=x)
        won = live & (x.max(axis=1) >= bound)
        if not won.any():
            continue
        steps[active[won]] = step
        choice[active[won]] = x[won].argmax(axis=1)
        live &= ~won
        if 4 * live.sum() < 3 * live.size:  # compact when a quarter has finished
            x, active, params = x[live], active[live], [p[live] for p in params]
            live = np.ones(active.size, dtype=bool)
            if not active.size:
                break
    choice[active[live]] = x[live].argmax(axis=1)
    return steps * dt, choice


class LeakyCompetingAccumulator(IndependentPrior):
    r"""Leaky competing accumulator model (Usher & McClelland, 2001), two alternatives.

    Two accumulators start at 0 and evolve, for :math:`i \ne j`, as

    .. math::

        dx_i = (I_i - k x_i - \beta x_j)\,dt + \sigma\,dW_i, \qquad
        x_i \leftarrow \max(x_i, 0),

    with leak :math:`k`, lateral inhibition :math:`\beta`, inputs :math:`I_1, I_2` and
    independent Brownian noise of standard deviation :math:`\sigma` per second (fixed,
    ``noise_std``: it sets the scale of the other parameters). The first accumulator to
    reach the threshold :math:`\theta` gives the choice (0 for accumulator 1, 1 for
    accumulator 2) and the response time :math:`t_0` plus the time it took. Simulated by
    Euler--Maruyama with step ``dt``, rectifying after each step, vectorised over trials
    and data sets.

    **Observation format.** A data set is ``n_trials`` i.i.d. trials, rows
    ``(rt, choice)``, ``rt`` in seconds, ``choice`` in {0, 1}. Trials not decided by
    ``max_time`` are recorded at ``t0 + max_time`` with the larger accumulator.

    **Parameters and priors** (independent uniforms, bounds configurable):
    ``I1, I2`` ~ U(1, 4), ``k`` ~ U(0, 2), ``beta`` ~ U(0, 2), ``threshold`` ~ U(0.5, 1.5),
    ``t0`` ~ U(0.1, 0.5) seconds. Inputs above zero and a leak of at most 2 keep the
    leaky equilibrium :math:`I/k` of the winner within reach of the threshold, so that
    decisions come within seconds.

    Parameters
    ----------
    n_trials : int or tuple (low, high), default=(100, 300)
        Trials per data set: fixed, or uniform on ``low..high`` (inclusive).
    noise_std : float, default=1.0
        :math:`\sigma`.
    dt : float, default=0.001
        Euler step in seconds.
    max_time : float, default=10.0
        Longest decision time simulated, in seconds.
    bounds : dict, optional
        Prior bounds replacing the defaults, keyed by parameter name.

    Examples
    --------
    >>> import numpy as np
    >>> model = LeakyCompetingAccumulator(n_trials=50)
    >>> rng = np.random.default_rng(0)
    >>> model.simulate(model.sample_prior(4, rng), rng).shape
    (4, 50, 2)
    """

    parameter_names = ("I1", "I2", "k", "beta", "threshold", "t0")
    default_bounds = {"I1": (1.0, 4.0), "I2": (1.0, 4.0), "k": (0.0, 2.0),
                      "beta": (0.0, 2.0), "threshold": (0.5, 1.5), "t0": (0.1, 0.5)}

    def __init__(
        self,
        n_trials: int | tuple[int, int] = (100, 300),
        noise_std: float = 1.0,
        dt: float = 0.001,
        max_time: float = 10.0,
        bounds: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        unknown = set(bounds or {}) - set(self.parameter_names)
        if unknown:
            raise ValueError(f"Unknown parameters in bounds: {sorted(unknown)}.")
        self.n_trials = n_trials
        self.noise_std = noise_std
        self.dt = dt
        self.max_time = max_time
        self.bounds = {**self.default_bounds, **(bounds or {})}

    @property
    def prior(self) -> dict:
        """Independent uniform priors (scipy.stats), keyed by parameter name."""
        return {k: stats.uniform(lo, hi - lo) for k, (lo, hi) in self.bounds.items()}


    def simulate(self, theta: np.ndarray, rng: np.random.Generator):
        """Trials: an array (n, n_trials, 2) or a list of (n_i, 2) arrays.

        Parameters
        ----------
        theta : ndarray of shape (n, 6)
            ``(I1, I2, k, beta, threshold, t0)`` per row.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray or list of ndarray
            Rows ``(rt, choice)``.
        """
        theta = np.asarray(theta, dtype=float).reshape(-1, 6)
        sizes = draw_sizes(self.n_trials, len(theta), rng)
        trial = np.repeat(theta, sizes, axis=0)
        time, choice = race(trial[:, :2], trial[:, 2], trial[:, 3], trial[:, 4], rng,
                            self.dt, self.noise_std, int(round(self.max_time / self.dt)))
        rows = np.column_stack([trial[:, 5] + time, choice.astype(float)])
        return pack_sets(rows, sizes)
