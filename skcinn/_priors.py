"""Priors in skcinn's normal form.

A **prior** is any of

* a callable ``prior(n, rng) -> ndarray (n, n_params)``;
* an object with scipy's ``rvs(size=, random_state=)``, e.g. a frozen
  ``scipy.stats`` distribution, univariate or multivariate;
* a dict (keys name the parameters) or list of univariate ``scipy.stats`` distributions.

:func:`as_prior` turns any of them into a :class:`Prior`. Both are re-exported by
:mod:`skcinn.simulation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


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
    description : str
        A short description of what the prior was made from.
    """

    draw: Callable[[int, np.random.Generator], np.ndarray]
    names: list[str] | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    description: str = field(default="")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` parameter vectors, checked.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy.random.Generator
            Source of randomness, passed to ``draw``.

        Returns
        -------
        ndarray of shape (n, n_params)
            The draws as float64.
        """
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
        """Lower and upper bounds, unbounded where the prior says nothing.

        Parameters
        ----------
        n_params : int
            Number of parameters, for a prior that does not state its support.

        Returns
        -------
        lower : ndarray of shape (n_params,)
            The lower bounds, ``-inf`` where unbounded.
        upper : ndarray of shape (n_params,)
            The upper bounds, ``inf`` where unbounded.
        """
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
    """Normalise any accepted prior (see the module docstring) into a :class:`Prior`.

    Parameters
    ----------
    prior : callable, scipy.stats distribution, dict or list of them, or Prior
        A callable ``prior(n, rng)``, an object with ``rvs(size=, random_state=)``, or a
        dict (keys name the parameters) or list of univariate ``scipy.stats``
        distributions.

    Returns
    -------
    Prior
        The prior with its parameter names and support, where it gives them.
    """
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
