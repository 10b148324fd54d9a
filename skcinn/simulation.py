"""Priors and simulators: the protocols of skcinn and the simulation of training pairs.

A **prior** is any of

* a callable ``prior(n, rng) -> ndarray (n, n_params)``;
* an object with scipy's ``rvs(size=, random_state=)``, e.g. a frozen
  ``scipy.stats`` distribution, univariate or multivariate;
* a dict (keys name the parameters) or list of univariate ``scipy.stats`` distributions.

A **simulator** is a callable ``simulator(theta, rng) -> X`` for a batch of parameters,
returning an ndarray (n, n_features), an ndarray (n, n_obs, n_features), or a list of n
arrays (n_obs_i, n_features).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import DataSets, check_ragged, count_nonfinite, is_list_of_sets, pad


@dataclass
class Prior:
    """A prior in skcinn's normal form.

    Attributes
    ----------
    draw : callable
        ``draw(n, rng) -> ndarray (n, n_params)``.
    names : list of str or None
        Parameter names, where the prior gives them.
    lower, upper : ndarray of shape (n_params,) or None
        The support of each parameter (``-inf``/``inf`` where unbounded); ``None`` until
        the number of parameters is known.
    """

    draw: Callable[[int, np.random.Generator], np.ndarray]
    names: list[str] | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    description: str = field(default="")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws as a float64 array (n, n_params), checked."""
        theta = np.asarray(self.draw(n, rng), dtype=np.float64)
        if theta.ndim == 1 and len(theta) == n:
            theta = theta[:, None]
        expected = "(n, n_params)" if self.lower is None else f"(n, {len(self.lower)})"
        if theta.ndim != 2 or len(theta) != n or (
            self.lower is not None and theta.shape[1] != len(self.lower)
        ):
            raise ValueError(
                f"The prior returned an array of shape {theta.shape} for n={n}; expected "
                f"{expected}. A callable prior must have the signature prior(n, rng)."
            )
        return theta

    def support(self, n_params: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds, unbounded where the prior says nothing."""
        if self.lower is None:
            return np.full(n_params, -np.inf), np.full(n_params, np.inf)
        return self.lower, self.upper


def _bounds(dist) -> tuple[float, float]:
    support = getattr(dist, "support", None)
    try:
        a, b = support()
    except Exception:  # multivariate or custom: no usable support
        return -np.inf, np.inf
    return float(a), float(b)


def _rvs(dist, n: int, rng) -> np.ndarray:
    return np.asarray(dist.rvs(size=n, random_state=rng), dtype=np.float64).reshape(n, -1)


def as_prior(prior) -> Prior:
    """Normalise any accepted prior (see the module docstring) into a :class:`Prior`."""
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, Mapping) or (
        isinstance(prior, Sequence) and not isinstance(prior, str) and len(prior) > 0
        and all(hasattr(d, "rvs") for d in prior)
    ):
        names = [str(k) for k in prior] if isinstance(prior, Mapping) else None
        dists = list(prior.values()) if isinstance(prior, Mapping) else list(prior)
        bounds = np.array([_bounds(d) for d in dists], dtype=np.float64).reshape(-1, 2)

        def draw(n, rng):
            return np.column_stack([_rvs(d, n, rng)[:, 0] for d in dists])

        return Prior(draw, names, bounds[:, 0], bounds[:, 1], f"{len(dists)} independent")
    if hasattr(prior, "rvs"):
        lower, upper = _bounds(prior)
        dim = np.size(prior.rvs(size=1, random_state=np.random.default_rng(0)))
        return Prior(
            lambda n, rng: _rvs(prior, n, rng),
            None,
            np.full(dim, lower),
            np.full(dim, upper),
            type(prior).__name__,
        )
    if callable(prior):
        return Prior(prior, description=getattr(prior, "__name__", "callable"))
    raise TypeError(
        "prior must be a callable prior(n, rng), an object with rvs(size=, random_state=) "
        f"(a scipy.stats distribution), or a dict/list of them; got {type(prior).__name__}."
    )


def as_datasets(X, n: int | None = None, source: str = "X") -> DataSets:
    """Turn simulator output or user input of any accepted form into :class:`DataSets`."""
    if is_list_of_sets(X):
        data = pad(check_ragged(X))
    else:
        try:
            values = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{source} must be an array (n, n_features) or (n, n_obs, n_features) or a "
                f"list of (n_obs_i, n_features) arrays; could not convert it: {exc}"
            ) from None
        if values.ndim not in (2, 3):
            raise ValueError(
                f"{source} has shape {values.shape}; expected (n, n_features), "
                "(n, n_obs, n_features) or a list of (n_obs_i, n_features) arrays."
            )
        data = DataSets(values)
    if n is not None and len(data) != n:
        raise ValueError(f"{source} returned {len(data)} data sets for {n} parameter vectors.")
    return data


def simulate_datasets(
    simulator: Callable, prior: Prior, n: int, rng: np.random.Generator
) -> tuple[DataSets, np.ndarray, np.ndarray]:
    """Draw ``n`` pairs; drop and count those whose simulation is not finite.

    Returns
    -------
    data : DataSets
        The finite simulations.
    theta : ndarray of shape (n_kept, n_params)
    failed : ndarray of shape (n_failed, n_params)
        Parameters whose simulation returned NaN or inf.
    """
    if not callable(simulator):
        raise TypeError(f"simulator must be callable simulator(theta, rng); got {simulator!r}.")
    theta = prior.sample(n, rng)
    data = as_datasets(simulator(theta, rng), n, source="The simulator")
    bad = count_nonfinite(data.values, data.mask)
    if len(bad) == 0:
        return data, theta, theta[:0]
    if len(bad) > n // 2:
        raise ValueError(
            f"{len(bad)} of {n} simulations returned NaN or inf (first for parameters "
            f"{theta[bad[0]].tolist()}); check the simulator."
        )
    warnings.warn(
        f"{len(bad)} of {n} simulations returned NaN or inf and were dropped "
        f"(first for parameters {theta[bad[0]].tolist()}).",
        RuntimeWarning,
        stacklevel=3,
    )
    keep = np.setdiff1d(np.arange(n), bad)
    return data.take(keep), theta[keep], theta[bad]


def simulate(
    simulator: Callable, prior, n: int, *, random_state: int | None = None
) -> tuple[np.ndarray | list, np.ndarray]:
    """Simulate a bank of ``n`` training pairs ``(X, theta)``.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta, rng) -> X`` for a batch of parameters.
    prior : callable, scipy.stats distribution, or dict/list of them
        See the module docstring.
    n : int
        Number of pairs.
    random_state : int or None
        Seed of the draws.

    Returns
    -------
    X : ndarray or list of ndarray
        The simulator's output, as it returned it.
    theta : ndarray of shape (n, n_params)
    """
    rng = np.random.default_rng(random_state)
    theta = as_prior(prior).sample(n, rng)
    return simulator(theta, rng), theta
