"""``CINNPosteriorEstimator``: amortized posterior estimation as a scikit-learn estimator."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _torch_utils as tu
from ._fitting import TrainingMixin, _unchanged_on_error
from ._frames import draws_to_frame
from ._posterior_methods import PosteriorMethodsMixin, check_n_samples
from ._sklearn_compat import Interval, StrOptions, _fit_context
from ._validation import InputValidationMixin
from .data import DataSets
from .networks.latent import LATENTS
from .networks.posterior import build_posterior_network
from .networks.summary import SUMMARY_NETWORKS
from .training import SCHEDULES, inside_box
from .transforms import (
    ParameterTransform,
)

# Draws per forward pass when sampling. On the CPU, chunks whose activations stay in
# cache are twice as fast as large ones (benchmarks/README.md); a GPU wants large ones.
_DRAWS_PER_CHUNK = {"cpu": 2**12, "cuda": 2**20}

# support="reject": give up on a data set once this many draws left fewer than this
# fraction inside the support; a round draws at most this many times n_samples.
MIN_TRIES_BEFORE_GIVING_UP = 10_000
MIN_ACCEPTANCE = 1e-3
MAX_ROUND_FACTOR = 8
# support="reject": base draws behind each data set's acceptance rate in log_posterior
ACCEPTANCE_DRAWS = 1024


class CINNPosteriorEstimator(
    PosteriorMethodsMixin, RegressorMixin, TrainingMixin, InputValidationMixin, BaseEstimator
):
    r"""Amortized Bayesian posterior estimation with a conditional invertible network.

    A summary network embeds each data set into a fixed-size vector :math:`\tilde{x}`; a
    chain of conditional coupling blocks maps parameters :math:`\theta` to a standard
    normal latent :math:`z` given :math:`\tilde{x}`. Both are trained jointly by maximum
    likelihood on simulated pairs (Radev et al., 2020). Afterwards, posterior draws for
    any number of data sets come from one batched pass of the inverse network.

    Parameters
    ----------
    n_coupling_blocks : int, default=4
        Number of coupling blocks in the invertible network.
    coupling : {"affine", "spline"}, default="affine"
        The paper's affine coupling, or rational-quadratic spline coupling. With a single
        parameter there is nothing to split and an affine chain would make every
        posterior Gaussian, so one-parameter models use spline blocks conditioned on the
        summary (see ``coupling_``).
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden widths of every coupling sub-network.
    spline_bins : int, default=8
        Bins of each spline (``coupling="spline"`` or one parameter).
    latent : {"normal", "student_t", "scale_mixture"}, default="normal"
        Where the invertible network maps the parameters: a standard normal; a
        multivariate Student-t whose degrees of freedom are learned with the networks
        (from 100; ``latent_df_`` after fitting); or a mixture of two centred normals
        whose scales and weights are learned (starting at N(0, I) with 5 % of the
        weight on N(0, 0.3² I); after fitting ``network_.flow.latent.scales()`` and
        ``.weights()``). The Student-t's heavier tails suit posteriors with
        heavy tails or several modes, the scale mixture posteriors with a sharp peak on
        a wide base; both stay close to a normal where the posterior is Gaussian
        (benchmarks/README.md).
    summary_network : str, torch.nn.Module or None, default="auto"
        How data sets are embedded. ``"auto"`` chooses by the form of ``X``: none for
        flat features (n, n_features), ``"deepset"`` for sets (n, n_obs, n_features) and
        lists of them, ``"cnn"`` for grids (n, channels, height, width). By name: sets
        ``"deepset"``, ``"set_transformer"``; time series ``"gru"``, ``"lstm"``,
        ``"bigru"``, ``"bilstm"`` (bidirectional), ``"tcn"`` (temporal convolutions);
        grids ``"cnn"``. Or any module mapping a batch of data sets to (batch, k),
        called as ``module(x, mask)`` if its ``forward`` takes two arguments, else
        ``module(x)``; it is copied and trained jointly, and ``k`` is found by itself.
    summary_dim : int, default=16
        Size of the learned summary.
    summary_hidden_sizes : tuple of int, default=(64, 64)
        Hidden widths of the summary network.
    n_simulations : int, default=10_000
        Pairs drawn by ``fit(simulator, prior)`` (per epoch when ``online=True``).
    online : bool, default=False
        With ``fit(simulator, prior)``, simulate fresh training pairs every epoch.
    max_iter : int, default=200
        Maximum number of epochs (the length of the schedule with
        ``learning_rate="cosine"``; with ``"adaptive"`` the rate is annealed over its
        last fifth).
    batch_size : int, default=128
        Pairs per optimisation step.
    learning_rate : {"adaptive", "cosine", "constant"}, default="adaptive"
        Schedule of the Adam learning rate, as in scikit-learn's ``MLPRegressor``.
        ``"adaptive"`` keeps ``learning_rate_init`` while the validation log density
        (the training loss without ``early_stopping``) improves, divides the rate by 5
        each time it has not improved by ``tol`` for ``n_iter_no_change`` epochs (and at
        least 175 optimisation steps, which small data sets' short epochs need), and
        stops at the fourth such plateau, or at the first after a division that brought
        no better score: easy models stop early, hard ones train on.
        Over the last fifth of ``max_iter`` epochs its rate also falls linearly towards
        zero, so a fit that runs to ``max_iter`` (a compute budget) ends annealed.
        ``"cosine"`` decays the rate to zero over ``max_iter`` epochs; ``"constant"``
        keeps it. These two stop after ``n_iter_no_change`` epochs without
        improvement, so give them a larger one (e.g. 20).
    learning_rate_init : float or "auto", default="auto"
        Initial Adam learning rate. ``"auto"``: 2e-3 with ``coupling="affine"``, 6e-3
        with ``coupling="spline"``, whose bins train better with larger steps (a
        one-parameter flow, a spline either way, follows ``coupling``; SBI benchmark at
        10,000 simulations: C2ST on SLCP 0.860 -> 0.822, on two moons 0.556 -> 0.540;
        affine coupling at 6e-3 gains on those tasks but loses on the 10-parameter
        Gaussian linear one, 0.518 -> 0.523; ``benchmarks/README.md``).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the pairs; their mean log density drives
        the schedule and stopping (see ``learning_rate``), and the weights of its best
        epoch are restored.
    validation_fraction : float, default=0.1
        Fraction held out for early stopping.
    n_iter_no_change : int, default=5
        Epochs without an improvement of more than ``tol`` before the adaptive
        schedule lowers the rate, or training stops (see ``learning_rate``).
    ema_decay : float, default=0.99
        Decay of an exponential moving average of the weights, updated after every
        optimisation step (Polyak averaging). The average is what the validation score
        judges and what training keeps; it smooths out the noise of the steps, so the
        schedule does not mistake noise for a plateau. ``0`` turns it off.
        ``partial_fit`` trains without it.
    tol : float, default=1e-4
        Minimal improvement of the (validation) log density that counts.
    random_state : int, RandomState instance or None, default=None
        Fixes initialisation, permutations, simulation, shuffling and ``predict``.
    verbose : int, default=0
        Print one line per epoch when positive.
    warm_start : bool, default=False
        Continue training the fitted networks on the next call to ``fit``. The
        parameters that shape them (``n_coupling_blocks``, ``coupling``,
        ``hidden_layer_sizes``, ``spline_bins``, the summary network's) must be those
        they were built with; a change raises ``ValueError``.
    device : {"auto", "cpu", "cuda"}, default="auto"
        ``"auto"`` takes CUDA when available.
    group_column : str or None, default=None
        For ``X`` given as a long DataFrame (one row per observation): the column naming
        the data set of each row. Data sets are ordered by their sorted key; ``y`` rows
        follow that order. The other columns are the features.
    n_jobs : int or None, default=None
        Workers simulating with ``fit(simulator, prior)``, through ``joblib.Parallel``
        on chunks of parameter vectors. ``None`` means 1 unless inside a
        :func:`joblib.parallel_config` context; ``-1`` means all processors. Any joblib
        backend works (``with joblib.parallel_config("dask"):`` simulates on a Dask
        cluster); the simulations depend on ``random_state`` only, not on ``n_jobs`` or
        the backend (see :mod:`skcinn.simulation`).
    max_time : float or None, default=None
        Wall-clock budget of training in seconds: the epoch that passes it is the last.
        Training ends at whichever comes first: ``max_iter`` epochs, early stopping, or
        ``max_time`` (``stop_reason_`` says which); ``n_simulations`` fixes the data
        (per epoch when ``online=True``).
    checkpoint_path : str, path-like or None, default=None
        After every epoch, the estimator, its best weights so far and the optimiser
        state are written to this file (atomically: write, then rename), so a killed
        process loses at most one epoch. A later ``fit`` with ``warm_start=True`` and the
        same path resumes an unfinished training where it stopped, also in a new
        process. The file is read without executing code.
    parameter_bounds : sequence of (low, high), dict or None, default=None
        Bounds of each parameter's support, ``None`` for an open end: one pair per
        parameter, or ``{name: (low, high)}`` for named parameters. They narrow the
        prior's support with ``fit(simulator, prior)`` and give one to training pairs
        ``fit(X, y)``, which carry none. Bounded parameters are mapped to an
        unconstrained space (probit or log) before the network sees them, so every draw
        lies inside the bounds and densities vanish outside; training parameters must
        lie strictly inside.
    support : {"transform", "reject", "truncate"}, default="transform"
        How draws are kept inside the parameters' support (the prior's, narrowed by
        ``parameter_bounds``). ``"transform"`` maps bounded parameters to an
        unconstrained space (see ``parameter_bounds``): exact densities, no draw ever
        rejected. ``"reject"`` trains the flow on the parameters as they are (only
        standardised), discards draws that fall outside and draws again, as sbi does;
        ``log_posterior`` is then renormalised by each data set's acceptance rate,
        estimated from 1,024 quasi-random draws. The map of a box bends posteriors that
        have the same shape everywhere (two moons: held-out log density 0.99 with the
        map, 2.37 without, at 1,000 pairs); rejection keeps them as they are, at the cost
        of the rejected draws. Sampling raises a RuntimeError for a data set whose
        acceptance stays below 0.1 %. ``"truncate"`` samples and scores as ``"reject"``
        does but trains the density rejection draws from, the flow truncated to the
        support and renormalised, instead of the flow alone, which must end its density
        where the bounds cut a posterior (the mass inside is estimated from 4 flow draws
        per training pair, 32 per validation pair). More accurate where posteriors reach
        the bounds (10,000 pairs, spline coupling, C2ST: Gaussian mixture 0.533 against
        0.546, two moons 0.527 against 0.543), at about twice the time per epoch.
    compile : bool, default=False
        Run the training steps' forward and backward passes through ``torch.compile``,
        as kernels generated for this network. On a CPU that halves the time per step
        of coupling flows on fixed-size features (two moons, 10,000 pairs: a spline
        step 9.7 -> 2.9 ms, an affine one 3.4 -> 1.9 ms; a spline fit 85 -> 49 s,
        with ``support="truncate"`` 206 -> 109 s) but gains little for sets and
        series. Compiling costs up to a minute or two on a machine's first fit of a
        network (the fits above then take 91 and 175 s) and 10-30 s once torch's
        on-disk cache holds its kernels, so it pays for long and repeated fits (a grid
        search compiles once per network shape). It needs a C++ compiler (on a GPU, triton);
        where compiling fails, a ``CompileWarning`` (a ``UserWarning``) says why and
        training goes on uncompiled. Validation and sampling are not compiled; weights
        trained compiled differ from uncompiled ones in their last bits.

    Attributes
    ----------
    n_params_ : int
        Number of parameters.
    latent_df_ : float or None
        The Student-t latent's learned degrees of freedom (``latent="student_t"``);
        None for the other latents.
    parameter_names_ : ndarray of str
        Names from a DataFrame ``y`` or a dict prior; ``theta_0, ...`` otherwise.
    support_ : str
        The ``support`` handling fixed by the first fit (continued fits keep it).
    n_features_in_ : int
        Features per observation (flat ``X``: columns).
    feature_names_in_ : ndarray of str
        Column names of a DataFrame ``X``.
    input_rank_ : int
        2 for flat features, 3 for sets and series, 4 for grids.
    input_shape_ : tuple or None
        (channels, height, width) of grids; None otherwise.
    summary_network_ : str or None
        The summary network used (its class name for a user module).
    coupling_ : str
        The coupling used.
    device_ : torch.device
        Where the networks live.
    network_ : torch.nn.Module
        The trained summary and invertible networks.
    loss_curve_ : list of float
        Mean training loss per epoch.
    history_ : DataFrame
        One row per epoch: ``loss``, ``validation_score`` (only with early stopping),
        ``learning_rate``, ``seconds`` (all epochs of warm-started fits).
    stop_reason_ : str
        Why the last training ended: ``"max_iter"``, ``"converged"`` (early stopping),
        ``"max_time"`` or ``"interrupted"`` (KeyboardInterrupt; best weights kept).
    validation_scores_ : list of float
        Mean validation log density per epoch (standardised space); empty without
        early stopping.
    best_validation_score_ : float or None
        The best validation score of the last fit; None without early stopping.
    n_iter_ : int
        Epochs run.
    n_simulations_ : int
        Training pairs per epoch (validation pairs and failed simulations excluded);
        with ``online=True`` every epoch draws this many fresh pairs.
    fit_time_ : float
        Seconds spent in the training loop of the last ``fit``.
    n_failed_simulations_ : int
        Simulations dropped because they raised an exception or returned NaN or inf
        (summed over all epochs when online).
    failed_parameters_ : ndarray of shape (n_failed, n_params)
        The parameters of those simulations, in draw order, to reproduce and fix the
        failures; empty when none failed. Set by ``fit(simulator, prior)``.

    See Also
    --------
    skcinn.simulate : Simulate a bank of training pairs for model selection.

    Examples
    --------
    >>> import numpy as np
    >>> from skcinn import CINNPosteriorEstimator
    >>> rng = np.random.default_rng(0)
    >>> theta = rng.normal(size=(2000, 1))
    >>> X = theta + 0.5 * rng.normal(size=(2000, 3))
    >>> est = CINNPosteriorEstimator(max_iter=5, random_state=0).fit(X, theta)
    >>> est.sample_posterior(X[:4], n_samples=100, random_state=0).shape
    (4, 100, 1)
    """

    _parameter_constraints: dict = {
        "n_coupling_blocks": [Interval(Integral, 1, None, closed="left")],
        "coupling": [StrOptions({"affine", "spline"})],
        "hidden_layer_sizes": [tuple, list],
        "spline_bins": [Interval(Integral, 2, None, closed="left")],
        "latent": [StrOptions(set(LATENTS))],
        "summary_network": [StrOptions({"auto", *SUMMARY_NETWORKS}), None, nn.Module],
        "summary_dim": [Interval(Integral, 1, None, closed="left")],
        "summary_hidden_sizes": [tuple, list],
        "n_simulations": [Interval(Integral, 2, None, closed="left")],
        "online": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "ema_decay": [Interval(Real, 0, 1, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "group_column": [str, None],
        "n_jobs": [Integral, None],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "checkpoint_path": [str, os.PathLike, None],
        "parameter_bounds": [dict, "array-like", None],
        "support": [StrOptions({"transform", "reject", "truncate"})],
        "compile": ["boolean"],
    }

    def __init__(
        self,
        *,
        n_coupling_blocks: int = 4,
        coupling: str = "affine",
        hidden_layer_sizes: tuple[int, ...] = (64, 64),
        spline_bins: int = 8,
        latent: str = "normal",
        summary_network: str | None = "auto",
        summary_dim: int = 16,
        summary_hidden_sizes: tuple[int, ...] = (64, 64),
        n_simulations: int = 10_000,
        online: bool = False,
        max_iter: int = 200,
        batch_size: int = 128,
        learning_rate: str = "adaptive",
        learning_rate_init: float | str = "auto",
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        ema_decay: float = 0.99,
        tol: float = 1e-4,
        random_state=None,
        verbose: int = 0,
        warm_start: bool = False,
        device: str = "auto",
        group_column: str | None = None,
        n_jobs: int | None = None,
        max_time: float | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        parameter_bounds=None,
        support: str = "transform",
        compile: bool = False,
    ) -> None:
        self.n_coupling_blocks = n_coupling_blocks
        self.coupling = coupling
        self.hidden_layer_sizes = hidden_layer_sizes
        self.spline_bins = spline_bins
        self.latent = latent
        self.summary_network = summary_network
        self.summary_dim = summary_dim
        self.summary_hidden_sizes = summary_hidden_sizes
        self.n_simulations = n_simulations
        self.online = online
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.ema_decay = ema_decay
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.device = device
        self.group_column = group_column
        self.n_jobs = n_jobs
        self.max_time = max_time
        self.checkpoint_path = checkpoint_path
        self.parameter_bounds = parameter_bounds
        self.support = support
        self.compile = compile

    # ---------------------------------------------------------------------- training

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the networks on simulated pairs.

        Parameters
        ----------
        X : array-like, list of array-like, or callable
            Data sets: ndarray (n, n_features), ndarray (n, n_obs, n_features) or a list
            of n arrays (n_obs_i, n_features). Or a batched simulator
            ``simulator(theta, rng) -> X``: then ``y`` is the prior and ``n_simulations``
            pairs are drawn (every epoch when ``online=True``).
        y : array-like of shape (n, n_params) or (n,), or a prior
            The parameters that generated each data set; or, with a simulator, the prior
            (callable ``prior(n, rng)``, scipy.stats distribution, dict or list of them).

        Returns
        -------
        CINNPosteriorEstimator
            The fitted estimator (``self``).
        """
        with _unchanged_on_error(self):
            rng = check_random_state(self.random_state)
            resume = self._resume_state()
            reset = not (self.warm_start and hasattr(self, "network_"))
            if callable(X) and not hasattr(X, "shape"):
                data, theta, lower, upper, names, refresh = self._simulate(X, y, rng, reset)
                theta_1d = False
            else:
                data, theta, theta_1d, names = self._validate_pairs(X, y, reset=reset)
                lower, upper = np.full(theta.shape[1], -np.inf), np.full(theta.shape[1], np.inf)
                refresh, self.n_failed_simulations_ = None, 0
                self.failed_parameters_ = np.empty((0, theta.shape[1]))
            if len(theta) < 2:
                raise ValueError(
                    f"n_samples={len(theta)}: training needs at least 2 (X, y) pairs."
                )
            if reset:
                self._initialise(data, theta, lower, upper, names, rng)
                self._theta_1d = theta_1d
            else:
                self._check_rank(data.rank)
                self._check_architecture()
                self._check_support(theta)
            self._fit_data(data, theta, rng, refresh, continuing=not reset, resume=resume)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """Train one epoch on ``(X, y)``, continuing from the current weights.

        For simulation banks that do not fit in memory: pass them chunk by chunk. The
        first call builds the networks and fixes the standardisation from its chunk;
        later calls must have the same form of ``X`` and number of parameters. The
        learning rate stays at ``learning_rate_init`` (no schedule, no early stopping),
        as in scikit-learn's ``MLPRegressor.partial_fit``.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in any form ``fit`` accepts (not a simulator).
        y : array-like of shape (n, n_params) or (n,)
            The parameters behind each data set.

        Returns
        -------
        CINNPosteriorEstimator
            The estimator (``self``), trained one more epoch.
        """
        with _unchanged_on_error(self):
            first = not hasattr(self, "network_")
            data, theta, theta_1d, names = self._validate_pairs(X, y, reset=first)
            rng = check_random_state(self.random_state)
            if first:
                unbounded = np.full(theta.shape[1], np.inf)
                self._initialise(data, theta, -unbounded, unbounded, names, rng)
                self._theta_1d, self.n_failed_simulations_ = theta_1d, 0
            else:
                self._check_rank(data.rank)
                self._check_architecture()
                self._check_support(theta)
            self._fit_data(data, theta, rng, None, continuing=not first, partial=True)
        return self

    # --------------------------------------------------------------------- inference

    @contextlib.contextmanager
    def _inference(self) -> Iterator[int]:
        """No-grad evaluation on the fitted device with its thread setting; yields the
        caller's thread count, over which draws are split (:func:`tu.run_chunks`)."""
        with tu.torch_threads(self.device_) as threads, torch.inference_mode():
            self.network_.eval()
            yield threads

    @property
    def _rejects(self) -> bool:
        """Whether draws outside the support are rejected (``support_`` "reject" or
        "truncate")."""
        return getattr(self, "support_", "transform") in ("reject", "truncate")

    def _conditions(self, data: DataSets) -> torch.Tensor:
        """The summary (condition) of every data set, computed once, in chunks."""
        tensors = self._tensors(data)
        out = []
        for start in range(0, len(data), 4096):
            chunk = [t[start : start + 4096].to(self.device_) for t in tensors]
            out.append(self.network_.condition(*chunk))
        return torch.cat(out)

    def _draw(self, data: DataSets, n_samples: int, latent, round_size=None) -> np.ndarray:
        """Posterior draws (n_datasets, n_samples, n_params) in the original space.

        ``latent(n_sets, n_draws, round)`` returns standard normal draws (n_sets,
        n_draws, n_params); round 0 asks for ``n_samples`` per data set. With
        rejection (``support_`` "reject" or "truncate"), later rounds redraw for the
        data sets still short of ``n_samples`` draws inside the support: ``round_size``
        draws each (``None``: as many as each data set's acceptance so far suggests).
        """
        with self._inference() as threads:
            cond = self._conditions(data)
            draws = self._flow_draws(cond, n_samples, lambda n: latent(n, n_samples, 0),
                                     threads)
            if not self._rejects:
                return draws
            return self._reject_outside(cond, draws, latent, round_size, threads)

    def _flow_draws(self, cond: torch.Tensor, n_samples: int, latent,
                    threads: int) -> np.ndarray:
        """Draws for conditions ``cond``; ``latent(n_sets)`` gives their base draws.

        Chunks of data sets are drawn on ``threads`` threads; their base draws are
        taken here, in order, so the draws do not depend on the number of threads.
        """
        out = np.empty((len(cond), n_samples, self.n_params_))
        chunk = _DRAWS_PER_CHUNK.get(self.device_.type, 2**16)
        per_chunk = max(1, chunk // n_samples)

        def jobs():
            for start in range(0, len(cond), per_chunk):
                c = cond[start : start + per_chunk]
                yield start, c, latent(len(c))

        def fill(start: int, c: torch.Tensor, z: torch.Tensor) -> None:
            for s in range(0, n_samples, chunk):
                u = self.network_.draw(z[:, s : s + chunk].to(self.device_), c)
                theta = self._theta_transform.inverse(u.to("cpu", torch.float64))
                out[start : start + len(c), s : s + chunk] = theta.numpy()

        tu.run_chunks(fill, jobs(), min(threads, -(-len(cond) // per_chunk)))
        return out

    def _inside(self, theta: np.ndarray) -> np.ndarray:
        """Which parameter vectors (last axis) lie inside the fitted open support."""
        return inside_box(theta, *self._fitted_support())

    def _reject_outside(self, cond, draws, latent, round_size, threads: int) -> np.ndarray:
        """Rejection sampling: keep the draws inside the support, draw again for the rest."""
        n_sets, n_samples, _ = draws.shape
        inside = self._inside(draws)
        # the accepted draws of each data set first, in their order
        order = np.argsort(~inside, axis=1, kind="stable")
        out = np.take_along_axis(draws, order[..., None], axis=1)
        filled = inside.sum(axis=1)
        tried = np.full(n_sets, n_samples)
        round_ = 0
        while (filled < n_samples).any():
            todo = np.flatnonzero(filled < n_samples)
            rate = filled[todo] / tried[todo]
            hopeless = (tried[todo] >= MIN_TRIES_BEFORE_GIVING_UP) & (rate < MIN_ACCEPTANCE)
            if hopeless.any():
                i = todo[np.argmax(hopeless)]
                raise RuntimeError(
                    f"Data set {i}: only {filled[i]} of {tried[i]} posterior draws fell "
                    f"inside the parameters' support (below {MIN_ACCEPTANCE:.1%}); the "
                    "posterior puts its mass outside the prior (data unlike the "
                    "simulations?) or the network has not learned the bounds. "
                    "support='transform' keeps every draw inside by construction."
                )
            round_ += 1
            if round_size:
                sizes = np.full(len(todo), round_size)
            else:  # what each data set's acceptance so far asks for, rounded up to a
                # quarter octave (few distinct sizes, each one call; at most 19 % more)
                want = 1.2 * (n_samples - filled[todo]) / np.maximum(rate, MIN_ACCEPTANCE)
                octaves = np.log2(np.clip(want, 16, MAX_ROUND_FACTOR * n_samples))
                sizes = np.ceil(2 ** (np.ceil(4 * octaves) / 4))
            for size in np.unique(sizes).astype(int):
                group = todo[sizes == size]
                new = self._flow_draws(cond[torch.as_tensor(group)], size,
                                       lambda n, s=size, r=round_: latent(n, s, r), threads)
                ok = self._inside(new)
                for j, i in enumerate(group):
                    kept = new[j, ok[j]][: n_samples - filled[i]]
                    out[i, filled[i] : filled[i] + len(kept)] = kept
                    filled[i] += len(kept)
                tried[group] += size
        return out

    def summarize(self, X) -> np.ndarray:
        """The learned summary (the condition of the invertible network) of each data set.

        For flat features without a summary network this is the standardised ``X``. The
        summaries feed misspecification checks or any other scikit-learn model.

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in the form used for ``fit``.

        Returns
        -------
        ndarray of shape (n_datasets, n_summary)
            One summary vector per data set.
        """
        check_is_fitted(self)
        data = self._validate_X(X, reset=False)
        with self._inference():
            return tu.to_numpy(self._conditions(data))

    def sample_posterior(
        self, X, n_samples: int = 1000, random_state=None, as_frame: bool = False
    ) -> np.ndarray | pd.DataFrame:
        """Draw from the posterior of every data set in ``X``.

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
            Posterior draws, inside the prior's support.
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        data = self._validate_X(X, reset=False)
        gen = tu.generator(tu.seed_from(check_random_state(random_state)))

        def latent(n_sets, n_draws, round_):
            return torch.randn(n_sets, n_draws, self._latent_width(), generator=gen)

        draws = self._draw(data, n_samples, latent)
        return draws_to_frame(draws, self.parameter_names_) if as_frame else draws

    def predict(self, X, return_std: bool = False):
        """Posterior means (and standard deviations) of the parameters.

        Estimated from 512 fixed antithetic latent draws shared by all data sets, so a
        data set's prediction does not depend on which other data sets are passed (up
        to float32 rounding).

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
        data = self._validate_X(X, reset=False)
        draws = self._draw(data, len(self._predict_z), self._fixed_latent,
                           round_size=len(self._predict_z))
        mean, std = draws.mean(axis=1), draws.std(axis=1)
        if self._theta_1d:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    @property
    def latent_df_(self) -> float | None:
        """The Student-t latent's learned degrees of freedom; None for the other latents."""
        check_is_fitted(self)
        latent = self.network_.flow.latent
        return float(latent.df().detach()) if hasattr(latent, "df") else None

    def _latent_width(self) -> int:
        """Standard normal base columns per draw (the latent maps them to its draws)."""
        return self.network_.flow.latent_width()

    def _fixed_latent(self, n_sets: int, n_draws: int, round_: int) -> torch.Tensor:
        """Base draws shared by all data sets, fixed per round: a data set's result
        then does not depend on which others are passed. Round 0 is antithetic."""
        if round_ == 0 and n_draws == len(self._predict_z):
            z = self._predict_z
        else:
            gen = tu.generator(round_)
            z = torch.randn(n_draws, self._latent_width(), generator=gen)
        return z.expand(n_sets, *z.shape)

    def _log_acceptance(self, cond: torch.Tensor, threads: int) -> np.ndarray:
        """log P(draw inside the support | X) per condition (draws rejected outside)."""
        z = tu.quasi_normal(ACCEPTANCE_DRAWS, self._latent_width())
        draws = self._flow_draws(cond, ACCEPTANCE_DRAWS, lambda n: z.expand(n, *z.shape),
                                 threads)
        accepted = self._inside(draws).sum(axis=1)
        return np.log(np.maximum(accepted, 1) / ACCEPTANCE_DRAWS)

    def log_posterior(self, X, y) -> np.ndarray:
        """Log posterior density log q(theta_i | X_i) of each pair (original space).

        Parameters
        ----------
        X : array-like or list of array-like
            Data sets, in the form used for ``fit``.
        y : array-like of shape (n_datasets, n_params) or (n_datasets,)
            Parameter values to evaluate (``-inf`` outside the prior's support).

        Returns
        -------
        ndarray of shape (n_datasets,)
            The log density of ``y[i]`` under the posterior of data set ``i``; with
            ``support="reject"`` the density of the flow truncated to the support,
            divided by its estimated mass inside.
        """
        check_is_fitted(self)
        data = self._validate_X(X, reset=False)
        theta, _ = self._validate_theta(y, len(data), reset=False)
        u, ladj = self._theta_transform(torch.tensor(theta))
        u = u.float()
        with self._inference() as threads:
            cond = self._conditions(data)  # once: the acceptance below reuses it
            logq = torch.cat([
                self.network_.flow.log_prob(u[s : s + 4096].to(self.device_),
                                            cond[s : s + 4096])
                for s in range(0, len(theta), 4096)
            ])
            out = tu.to_numpy(logq) + ladj.numpy()
            if self._rejects:
                out = np.where(self._inside(theta), out - self._log_acceptance(cond, threads),
                               -np.inf)
        return out

    # ------------------------------------------------------------------ scikit-learn

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.three_d_array = True
        tags.regressor_tags.poor_score = True
        return tags

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        if "network_" in state:
            state["network_"] = {k: v.detach().cpu() for k, v in self.network_.state_dict().items()}
            state["_theta_transform"] = dict(self._theta_transform.state_dict())
            state.pop("device_", None)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state.setdefault("learning_rate", "cosine")  # saved before the schedules existed
        state.setdefault("ema_decay", 0.0)  # ... before the weight average
        state.setdefault("latent", "normal")  # ... before the Student-t latent
        weights = state.get("network_")
        if weights is not None:
            state["device_"] = tu.resolve_device(state["device"])
            network = build_posterior_network(state["_network_config"])
            network.load_state_dict(weights)
            state["network_"] = network.to(state["device_"]).eval()
            state["_theta_transform"] = ParameterTransform(**state["_theta_transform"])
        super().__setstate__(state)
