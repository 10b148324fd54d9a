"""``PosteriorEnsemble``: equally weighted mixtures of independently trained posteriors.

Networks trained from different initialisations on the same simulations make partly
different errors; their mixture averages those out, and its variance is never below
its members' average variance, so it is wider where they disagree (Lakshminarayanan et
al., 2017; Hermans et al., 2022). At a fixed simulation budget it spends training time,
not simulations, on accuracy, and a draw from the mixture costs what a draw from one
member does.
"""

from __future__ import annotations

import time
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.validation import check_is_fitted

from . import _torch_utils as tu
from ._fitting import narrowed_support, parameter_names
from ._frames import draws_to_frame
from ._posterior_methods import PosteriorMethodsMixin, check_n_samples
from ._sklearn_compat import HasMethods, Interval, _fit_context
from .estimator import CINNPosteriorEstimator
from .simulation import as_prior, simulate

# fitted attributes that every member shares, copied onto the ensemble
_SHARED = ("n_params_", "parameter_names_", "n_features_in_", "feature_names_in_",
           "input_rank_", "input_shape_")


def _open_bounds(lower: np.ndarray, upper: np.ndarray) -> list[tuple]:
    """``(lower, upper)`` as ``parameter_bounds`` pairs, ``None`` for an open end."""
    return [(float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None)
            for lo, hi in zip(lower, upper, strict=True)]


class PosteriorEnsemble(PosteriorMethodsMixin, MetaEstimatorMixin, RegressorMixin,
                        BaseEstimator):
    """An equally weighted mixture of posterior estimators trained on the same pairs.

    ``n_estimators`` clones of ``estimator``, each with its own random state (weights,
    permutations, validation split, batches), are trained on the same simulations. The
    ensemble's posterior is their mixture: draws come from every member in equal
    shares, densities are the members' mean density. Members disagree where the
    simulations do not pin the posterior down, so the mixture is wider exactly there
    (measured on the SBI benchmark tasks in ``benchmarks/README.md``).

    Parameters
    ----------
    estimator : estimator or None, default=None
        The posterior estimator to clone (``CINNPosteriorEstimator()`` when None); it
        needs ``fit``, ``sample_posterior``, ``log_posterior`` and ``predict`` with
        ``return_std``.
    n_estimators : int, default=5
        Number of members.
    n_jobs : int or None, default=None
        Members trained in parallel through ``joblib.Parallel`` (processes: each member
        trains on one thread). ``None`` means 1 unless inside a
        :func:`joblib.parallel_config` context; ``-1`` means all processors.
    random_state : int, RandomState instance or None, default=None
        Fixes the simulations of ``fit(simulator, prior)`` and every member's random
        state, hence the whole ensemble.
    warm_start : bool, default=False
        Keep the fitted members on the next call to ``fit`` and train only those that
        ``n_estimators`` adds (on the data of that call). With an integer
        ``random_state`` and the same data, the result is the ensemble a fresh fit with
        the larger ``n_estimators`` gives.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members.
    n_params_ : int
        Number of parameters.
    parameter_names_ : ndarray of str
        Names of the parameters (as the members name them).
    n_features_in_ : int
        Features per observation (flat ``X``: columns).
    feature_names_in_ : ndarray of str
        Column names of a DataFrame ``X`` (only when given).
    fit_time_ : float
        Seconds spent by the last ``fit`` (simulating included).

    See Also
    --------
    CINNPosteriorEstimator : The member estimator.

    Notes
    -----
    With ``fit(simulator, prior)`` the ensemble simulates ``estimator.n_simulations``
    pairs once and trains every member on them, with the prior's support as
    ``parameter_bounds`` (narrowed by the estimator's own); each member holds out its
    own validation pairs, so together they learn from all of them. With
    ``online=True`` every member simulates its own pairs instead.

    Examples
    --------
    >>> import numpy as np
    >>> from skcinn import CINNPosteriorEstimator, PosteriorEnsemble
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(2000, 1))
    >>> X = theta + 0.5 * rng.normal(size=(2000, 3))
    >>> ens = PosteriorEnsemble(CINNPosteriorEstimator(max_iter=5), n_estimators=3,
    ...                         random_state=0).fit(X, theta)
    >>> ens.sample_posterior(X[:4], n_samples=100, random_state=0).shape
    (4, 100, 1)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "sample_posterior", "log_posterior", "predict"]),
                      None],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
    }

    def __init__(
        self, estimator=None, *, n_estimators: int = 5, n_jobs: int | None = None,
        random_state=None, warm_start: bool = False,
    ) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.warm_start = warm_start

    def _base(self):
        return CINNPosteriorEstimator() if self.estimator is None else self.estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Train ``n_estimators`` members on the same pairs.

        Parameters
        ----------
        X : array-like, list of array-like, or callable
            Data sets in any form the estimator accepts; or a batched simulator
            ``simulator(theta, rng) -> X``, with the prior as ``y``.
        y : array-like of shape (n, n_params) or (n,), or a prior
            The parameters behind each data set; or, with a simulator, the prior.

        Returns
        -------
        PosteriorEnsemble
            The fitted ensemble (``self``).
        """
        start = time.perf_counter()
        kept = list(getattr(self, "estimators_", [])) if self.warm_start else []
        if len(kept) > self.n_estimators:
            raise ValueError(
                f"n_estimators={self.n_estimators} must be at least the {len(kept)} members "
                "already fitted when warm_start=True; set warm_start=False to start anew."
            )
        if len(kept) == self.n_estimators:
            warnings.warn("Warm-start fitting without increasing n_estimators trains no new "
                          "member.", UserWarning, stacklevel=2)
            return self
        rng = check_random_state(self.random_state)
        base = clone(self._base())
        if callable(X) and not hasattr(X, "shape"):
            X, y, base = self._simulate(base, X, y, rng)
        # the first seeds belong to the kept members: a warm start adds what a fresh
        # fit with the larger n_estimators would have
        seeds = [tu.seed_from(rng) for _ in range(self.n_estimators)][len(kept):]
        members = []
        for seed in seeds:
            member = clone(base)
            member.set_params(**{key: seed for key in member.get_params(deep=True)
                                 if key == "random_state" or key.endswith("__random_state")})
            members.append(member)
        self._adopt(kept + Parallel(n_jobs=self.n_jobs)(
            delayed(member.fit)(X, y) for member in members
        ))
        self.fit_time_ = time.perf_counter() - start
        return self

    def _adopt(self, members: list) -> None:
        """Take fitted ``members`` as the ensemble, with the attributes they share."""
        self.estimators_ = list(members)
        for name in _SHARED:
            if hasattr(members[0], name):
                setattr(self, name, getattr(members[0], name))
            elif hasattr(self, name):
                delattr(self, name)

    def _simulate(self, base, simulator, prior, rng):
        """Pairs shared by all members, and the base estimator bounded by the prior."""
        params = base.get_params()
        if params.get("online", False):
            return simulator, prior, base  # each member simulates every epoch itself
        if "n_simulations" not in params:
            raise TypeError(
                f"fit(simulator, prior) simulates estimator.n_simulations pairs; "
                f"{type(base).__name__} has no n_simulations. Simulate pairs with "
                "skcinn.simulate and pass them as fit(X, theta)."
            )
        prior = as_prior(prior)
        X, theta = simulate(simulator, prior, params["n_simulations"],
                            random_state=tu.seed_from(rng), n_jobs=params.get("n_jobs"))
        names = parameter_names(prior.names, theta.shape[1])
        lower, upper = narrowed_support(*prior.support(theta.shape[1]),
                                        params.get("parameter_bounds"), names)
        if "parameter_bounds" in params:
            base.set_params(parameter_bounds=_open_bounds(lower, upper))
        y = pd.DataFrame(theta, columns=list(names)) if prior.names else theta
        return X, y, base

    def sample_posterior(
        self, X, n_samples: int = 1000, random_state=None, as_frame: bool = False
    ) -> np.ndarray | pd.DataFrame:
        """Draw from the mixture posterior of every data set in ``X``.

        Each member gives ``n_samples // n_estimators`` draws of every data set; the
        rest go to members chosen at random per data set; each data set's draws are
        then shuffled. Every draw thus comes from the mixture, and each member has its
        share, so the draws cost what ``n_samples`` draws from one member do.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in the form used for ``fit``; one data set as ``X[None]``.
        n_samples : int, default=1000
            Draws per data set.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws: the same seed gives the same draws.
        as_frame : bool, default=False
            Return a long DataFrame with columns ``dataset``, ``draw`` and one column per
            parameter (named by ``parameter_names_``).

        Returns
        -------
        ndarray of shape (n_datasets, n_samples, n_params) or DataFrame
            Posterior draws.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        rng = check_random_state(random_state)
        k = len(self.estimators_)
        share, rest = divmod(n_samples, k)
        per_member = share + (rest > 0)
        draws = np.stack([member.sample_posterior(X, per_member, tu.seed_from(rng))
                          for member in self.estimators_],
                         axis=1)  # (n_sets, k, per_member, n_params)
        n_sets = draws.shape[0]
        keep = np.zeros((n_sets, k, per_member), dtype=bool)
        keep[:, :, :share] = True
        if rest:  # the remaining draws from `rest` members chosen per data set
            chosen = np.argsort(rng.random_sample((n_sets, k)), axis=1)[:, :rest]
            keep[np.arange(n_sets)[:, None], chosen, share] = True
        out = draws[keep].reshape(n_sets, n_samples, draws.shape[-1])
        order = np.argsort(rng.random_sample((n_sets, n_samples)), axis=1)
        out = np.take_along_axis(out, order[..., None], axis=1)
        return draws_to_frame(out, self.parameter_names_) if as_frame else out

    def log_posterior(self, X, y) -> np.ndarray:
        """Log density of the mixture posterior at each pair (original space).

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in the form used for ``fit``.
        y : array-like of shape (n_datasets, n_params) or (n_datasets,)
            Parameter values to evaluate.

        Returns
        -------
        ndarray of shape (n_datasets,)
            ``log(mean_k q_k(y[i] | X[i]))`` over the members ``q_k``.
        """
        check_is_fitted(self)
        logq = np.stack([member.log_posterior(X, y) for member in self.estimators_])
        return logsumexp(logq, axis=0) - np.log(len(logq))

    def predict(self, X, return_std: bool = False):
        """Posterior means (and standard deviations) of the mixture.

        From each member's ``predict(X, return_std=True)``: the mixture's mean is the
        members' mean, its variance their mean variance plus the variance of their
        means.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in the form used for ``fit``.
        return_std : bool, default=False
            Also return posterior standard deviations.

        Returns
        -------
        mean : ndarray of shape (n_datasets, n_params), or (n_datasets,) for 1-D ``y``
            Posterior means.
        std : ndarray of the same shape
            Posterior standard deviations, only with ``return_std=True``.
        """
        check_is_fitted(self)
        means, stds = zip(*(member.predict(X, return_std=True) for member in self.estimators_),
                          strict=True)
        means, stds = np.stack(means), np.stack(stds)
        mean = means.mean(axis=0)
        if not return_std:
            return mean
        second = (stds**2 + means**2).mean(axis=0)
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base = get_tags(self._base())
        tags.input_tags = base.input_tags
        tags.target_tags = base.target_tags
        tags.regressor_tags = base.regressor_tags
        return tags
