"""The diffusion decision model: i.i.d. trials of (response time, choice)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from ._prior import IndependentPrior
from ._sets import draw_sizes, pack_sets

# Random numbers drawn per block of the Euler scheme (trials x steps): bounds the memory
# of one block to a few tens of MB while keeping the Python loop short.
BLOCK_SIZE = 2_000_000


def first_passage(
    start: np.ndarray, drift: np.ndarray, upper: np.ndarray,
    noise: Callable[[np.ndarray, int], np.ndarray], dt: float, max_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    r"""First exit of :math:`X_{k+1} = X_k + \mu\,dt + \eta_k` from :math:`(0, a)`.

    Simulates all trials at once, a block of steps at a time: the increments of a block
    are drawn together and cumulated, the first crossing in the block is found, and
    decided trials are dropped from the next block. A trial is decided at the first step
    :math:`k` with :math:`X_k \le 0` or :math:`X_k \ge a`.

    Parameters
    ----------
    start, drift, upper : ndarray of shape (m,)
        :math:`X_0`, :math:`\mu` and :math:`a` of each trial.
    noise : callable
        ``noise(trials, k) -> ndarray (len(trials), k)``: the increments :math:`\eta` of
        the trials with indices ``trials`` over the next ``k`` steps.
    dt : float
        Step in seconds.
    max_steps : int
        Trials undecided after this many steps stop there, with the nearer boundary.

    Returns
    -------
    time : ndarray of shape (m,)
        Decision time, ``steps * dt``.
    upper_hit : ndarray of bool, shape (m,)
        Whether the upper boundary :math:`a` was reached (else 0).
    """
    steps = np.full(len(start), max_steps)
    hit = np.zeros(len(start), dtype=bool)
    position = np.asarray(start, dtype=float).copy()
    active, done = np.arange(len(start)), 0
    while active.size and done < max_steps:
        k = int(np.clip(BLOCK_SIZE // active.size, 8, 4096))
        k = min(k, max_steps - done)
        paths = np.cumsum(noise(active, k) + (drift[active] * dt)[:, None], axis=1)
        paths += position[active, None]
        out = (paths <= 0.0) | (paths >= upper[active, None])
        decided = out.any(axis=1)
        first = out.argmax(axis=1)[decided]
        rows = active[decided]
        steps[rows] = done + first + 1
        hit[rows] = paths[decided, first] > 0.0
        position[active] = paths[:, -1]
        active, done = active[~decided], done + k
    hit[active] = position[active] >= upper[active] / 2
    return steps * dt, hit


class DiffusionDecisionModel(IndependentPrior):
    r"""Diffusion decision model (Ratcliff, 1978) of two-choice response times.

    On each trial the evidence :math:`X_t` starts at :math:`z a` and follows

    .. math::

        dX_t = v\,dt + dW_t, \qquad X_0 = z a,

    until it leaves :math:`(0, a)`: at :math:`a` the response is ``choice = 1`` (upper),
    at 0 ``choice = 0``; the response time is :math:`t_0` plus the exit time. The noise
    has unit standard deviation per second (the usual scaling convention). It is
    simulated by Euler--Maruyama with step ``dt``, vectorised over trials and data sets:
    :math:`X_{k+1} = X_k + v\,dt + \sqrt{dt}\,\xi_k`, exit at the first grid point
    outside :math:`(0, a)`. Checking only at grid points lets a path leave and come back
    between them, which widens the boundaries by about :math:`0.5826\sqrt{dt}` each
    (Broadie, Glasserman & Kou, 1997): 0.018 at ``dt = 0.001``.

    For :math:`z = 1/2`, :math:`P(\text{upper}) = 1/(1 + e^{-v a})` and the mean exit time
    is :math:`\frac{a}{2v}\tanh(v a / 2)`.

    **Observation format.** A data set is ``n_trials`` i.i.d. trials, rows
    ``(rt, choice)`` with ``rt`` in seconds and ``choice`` in {0, 1}; with
    ``n_conditions=2`` a third column ``condition`` in {0, 1} (each trial's condition is
    a fair coin) selects the drift ``v_0`` or ``v_1``, as in the two-condition design of
    the cINN paper's Lévy-flight application. Trials not decided by ``max_time`` are
    recorded at ``t0 + max_time`` with the nearer boundary (rare under the default prior).

    **Parameters and priors** (independent uniforms): ``v`` (or ``v_0, v_1``) on
    ``v_bounds``, ``a`` on ``a_bounds``, ``z`` on ``z_bounds`` (a proportion, within
    (0, 1)), ``t0`` on ``t0_bounds`` (seconds).

    Parameters
    ----------
    n_trials : int or tuple (low, high), default=(100, 300)
        Trials per data set: fixed, or uniform on ``low..high`` (inclusive).
    n_conditions : {1, 2}, default=1
        Number of conditions, each with its own drift.
    dt : float, default=0.001
        Euler step in seconds.
    max_time : float, default=10.0
        Longest decision time simulated, in seconds.
    v_bounds, a_bounds, z_bounds, t0_bounds : tuple (low, high)
        Prior bounds; defaults (-3, 3), (0.5, 2.5), (0.2, 0.8), (0.1, 0.5).

    Examples
    --------
    >>> import numpy as np
    >>> model = DiffusionDecisionModel(n_trials=50)
    >>> rng = np.random.default_rng(0)
    >>> model.simulate(model.sample_prior(4, rng), rng).shape
    (4, 50, 2)
    """

    def __init__(
        self,
        n_trials: int | tuple[int, int] = (100, 300),
        n_conditions: int = 1,
        dt: float = 0.001,
        max_time: float = 10.0,
        v_bounds: tuple[float, float] = (-3.0, 3.0),
        a_bounds: tuple[float, float] = (0.5, 2.5),
        z_bounds: tuple[float, float] = (0.2, 0.8),
        t0_bounds: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        if n_conditions not in (1, 2):
            raise ValueError(f"n_conditions must be 1 or 2; got {n_conditions!r}.")
        self.n_trials = n_trials
        self.n_conditions = n_conditions
        self.dt = dt
        self.max_time = max_time
        self.v_bounds = v_bounds
        self.a_bounds = a_bounds
        self.z_bounds = z_bounds
        self.t0_bounds = t0_bounds

    @property
    def _drift_names(self) -> list[str]:
        return ["v"] if self.n_conditions == 1 else ["v_0", "v_1"]

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        """Prior bounds of each parameter, keyed by name."""
        drifts = {name: self.v_bounds for name in self._drift_names}
        return {**drifts, "a": self.a_bounds, "z": self.z_bounds, "t0": self.t0_bounds}

    @property
    def parameter_names(self) -> list[str]:
        """Names of the parameters: the drift(s), ``a``, ``z``, ``t0``."""
        return list(self.bounds)

    @property
    def prior(self) -> dict:
        """Independent uniform priors (scipy.stats), keyed by parameter name."""
        return {k: stats.uniform(lo, hi - lo) for k, (lo, hi) in self.bounds.items()}


    def _noise(self, trial_params: np.ndarray, rng: np.random.Generator) -> Callable:
        """Gaussian increments with standard deviation ``sqrt(dt)``."""
        scale = np.sqrt(self.dt)
        return lambda trials, k: scale * rng.standard_normal((len(trials), k))

    def simulate(self, theta: np.ndarray, rng: np.random.Generator):
        """Trials: an array (n, n_trials, 2 or 3), or a list of (n_i, 2 or 3) arrays.

        Parameters
        ----------
        theta : ndarray of shape (n, n_params)
            Parameters in the order of :attr:`parameter_names`.
        rng : numpy.random.Generator
            The only source of randomness.

        Returns
        -------
        ndarray or list of ndarray
            Rows ``(rt, choice)``, plus ``condition`` when ``n_conditions=2``.
        """
        n_params = len(self.parameter_names)
        theta = np.asarray(theta, dtype=float).reshape(-1, n_params)
        sizes = draw_sizes(self.n_trials, len(theta), rng)
        trial = np.repeat(theta, sizes, axis=0)  # one row of parameters per trial
        nc = self.n_conditions
        condition = rng.integers(0, nc, size=len(trial)) if nc == 2 else np.zeros(len(trial))
        drift = trial[np.arange(len(trial)), condition.astype(int)]
        a, z, t0 = trial[:, nc], trial[:, nc + 1], trial[:, nc + 2]
        time, upper = first_passage(z * a, drift, a, self._noise(trial, rng), self.dt,
                                    int(round(self.max_time / self.dt)))
        columns = [t0 + time, upper.astype(float)] + ([condition] if nc == 2 else [])
        return pack_sets(np.column_stack(columns).astype(float), sizes)
