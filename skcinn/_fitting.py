"""How the estimator trains: resolving settings, standardising, building and fitting.

A mixin of :class:`~skcinn.CINNPosteriorEstimator`, kept apart so that the estimator
module holds the public face only.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _torch_utils as tu
from .data import DataSets, is_streamed, stream_chunks
from .networks.posterior import build_posterior_network, summary_size
from .simulation import as_prior, simulate_datasets
from .training import TrainingConfig, Truncation, train
from .transforms import feature_moments, fit_parameter_transform, streamed_moments

PREDICT_DRAWS = 512  # fixed antithetic draws behind predict()
_AUTO_SUMMARY = {2: None, 3: "deepset", 4: "cnn"}  # summary_network="auto", by rank of X
# learning_rate_init="auto", by coupling: spline bins train better with larger steps;
# affine coupling at 6e-3 loses on the 10-parameter tasks (benchmarks/README.md)
AUTO_LEARNING_RATE = {"affine": 2e-3, "spline": 6e-3}


def _summary_name(summary: str | nn.Module | None) -> str | None:
    """``summary_network_``: a built-in summary by name, a module by its class (it is
    copied when the networks are built)."""
    return type(summary).__name__ if isinstance(summary, nn.Module) else summary


def _no_history() -> dict:
    return {"loss": [], "validation_score": [], "learning_rate": [], "seconds": []}


@contextlib.contextmanager
def _unchanged_on_error(est):
    """Restore the estimator's fitted state if the body raises."""
    saved = dict(est.__dict__)
    try:
        yield
    except BaseException:
        est.__dict__.clear()
        est.__dict__.update(saved)
        raise


def check_inside_support(theta: np.ndarray, lower, upper, names) -> None:
    """Raise a ValueError naming the first parameter value outside its open support."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    outside = ((theta <= lower) & np.isfinite(lower)) | ((theta >= upper) & np.isfinite(upper))
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise ValueError(
            f"{int(outside.any(1).sum())} of {len(theta)} parameter vectors lie outside the "
            f"support; the first: {names[col]}={float(theta[row, col])!r} is not inside "
            f"({lower[col]}, {upper[col]}). Training parameters must lie strictly inside "
            "the bounds (parameter_bounds, or the prior's support)."
        )


def parameter_names(names, n_params: int) -> np.ndarray:
    """The given names when there is one per parameter, else ``theta_0, theta_1, ...``."""
    if names and len(names) == n_params:
        return np.asarray(names, dtype=object)
    return np.asarray([f"theta_{i}" for i in range(n_params)], dtype=object)


def narrowed_support(lower, upper, bounds, names) -> tuple[np.ndarray, np.ndarray]:
    """The support ``(lower, upper)`` narrowed by ``bounds`` (``parameter_bounds``: one
    ``(low, high)`` pair per parameter, or a dict by name; ``None`` for an open end)."""
    lower = np.array(lower, dtype=np.float64)
    upper = np.array(upper, dtype=np.float64)
    if bounds is None:
        return lower, upper
    names = list(names)
    if isinstance(bounds, dict):
        unknown = sorted(str(k) for k in bounds if k not in names)
        if unknown:
            raise ValueError(
                f"parameter_bounds names {unknown}, which are not parameters; the "
                f"parameters are {names}."
            )
        pairs = [bounds.get(name, (None, None)) for name in names]
    else:
        pairs = list(bounds)
    try:
        given = np.array(
            [[np.nan if v is None else v for v in pair] for pair in pairs], dtype=np.float64
        )
    except (TypeError, ValueError):
        given = None
    if given is None or given.shape != (len(names), 2):
        raise ValueError(
            f"parameter_bounds must give one (low, high) pair per parameter ({len(names)}), "
            "or be a dict {name: (low, high)}; use None for an open end."
        )
    lower = np.fmax(lower, np.where(np.isnan(given[:, 0]), -np.inf, given[:, 0]))
    upper = np.fmin(upper, np.where(np.isnan(given[:, 1]), np.inf, given[:, 1]))
    empty = ~(lower < upper)
    if empty.any():
        i = int(np.argmax(empty))
        raise ValueError(
            f"parameter_bounds leave {names[i]} no room: its support would be "
            f"({lower[i]}, {upper[i]})."
        )
    return lower, upper


class TrainingMixin:
    """Training machinery of the estimator (see :class:`~skcinn.CINNPosteriorEstimator`)."""

    def _fitted_support(self) -> tuple[np.ndarray, np.ndarray]:
        """The parameters' support fixed by the first fit: (lower, upper)."""
        if hasattr(self, "_support"):
            return self._support
        t = self._theta_transform  # estimators saved before ``support`` existed
        return t.lower.numpy(), t.upper.numpy()

    def _truncation(self) -> Truncation | None:
        """``support_="truncate"``: the box the flow is trained truncated to, in its own
        (standardised) space; None where nothing is bounded."""
        if getattr(self, "support_", None) != "truncate":
            return None
        lower, upper = self._fitted_support()
        if np.all(np.isinf(lower) & np.isinf(upper)):
            return None
        t = self._theta_transform
        box = [((torch.as_tensor(b, dtype=torch.float64) - t.mean) / t.std).float()
               for b in (lower, upper)]
        return Truncation(*(b.to(self.device_) for b in box))

    def _check_support(self, theta: np.ndarray) -> None:
        """Continued training: the new pairs must lie inside the fitted support."""
        check_inside_support(theta, *self._fitted_support(), self.parameter_names_)

    def _check_architecture(self) -> None:
        """Continued training (``warm_start``, ``partial_fit``) trains the networks that
        were built: the parameters that shape them must not have changed since."""
        built = self._network_config
        shape = {  # parameter: (its value now, the value the networks were built with)
            "n_coupling_blocks": (self.n_coupling_blocks, built["n_blocks"]),
            "hidden_layer_sizes": (tuple(self.hidden_layer_sizes), built["hidden"]),
            "coupling": (self._coupling(self.n_params_), built["coupling"]),
            "latent": (self.latent, built.get("latent", "normal")),
            "summary_network": (_summary_name(self._resolve_summary(self.input_rank_)),
                                self.summary_network_),
        }
        if built["coupling"] == "spline":
            shape["spline_bins"] = (self.spline_bins, built["bins"])
        if isinstance(built["summary"], str):  # a built-in one: its sizes too
            shape["summary_dim"] = (self.summary_dim, built["summary_dim"])
            shape["summary_hidden_sizes"] = (tuple(self.summary_hidden_sizes),
                                             built["summary_hidden"])
        changed = [f"{name}={now!r} (built with {then!r})"
                   for name, (now, then) in shape.items() if now != then]
        if changed:
            raise ValueError(
                f"{', '.join(changed)}: continued training (warm_start=True or partial_fit) "
                "trains the networks already built; set warm_start=False and call fit to "
                "build new ones."
            )

    def _narrowed_support(self, lower, upper) -> tuple[np.ndarray, np.ndarray]:
        """The prior's support (unbounded for given pairs) narrowed by ``parameter_bounds``."""
        return narrowed_support(lower, upper, self.parameter_bounds, self.parameter_names_)

    def _validate_pairs(self, X, y, reset: bool):
        """Checked (data, theta, whether y was 1-D, parameter names) of given pairs."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        names = [str(c) for c in y.columns] if hasattr(y, "columns") else None
        data = self._validate_X(X, reset=reset)
        theta, theta_1d = self._validate_theta(y, len(data), reset=reset)
        return data, theta, theta_1d, names

    def _simulate(self, simulator, prior, rng, reset: bool):
        """Simulate the training pairs (chunked, on ``n_jobs`` joblib workers) and a
        ``refresh`` drawing fresh ones for online training; record the failures."""
        prior = as_prior(prior)
        sim_rng = np.random.default_rng(tu.seed_from(rng))

        failures = []

        def draw(n: int):
            data, theta, failed = simulate_datasets(
                simulator, prior, n, sim_rng, n_jobs=self.n_jobs
            )
            failures.append(failed)
            self.failed_parameters_ = np.concatenate(failures)
            self.n_failed_simulations_ = len(self.failed_parameters_)
            return data, theta

        data, theta = draw(self.n_simulations)
        self._check_data(data, None, reset)
        lower, upper = prior.support(theta.shape[1])

        def refresh(epoch: int, n: int):
            return self._tensors(*draw(n))

        return data, theta, lower, upper, prior.names, refresh if self.online else None

    def _fit_data(
        self, data, theta, rng, refresh, continuing: bool, resume=None, partial: bool = False
    ) -> None:
        validate = self.early_stopping and not partial
        n_val = int(round(self.validation_fraction * len(theta))) if validate else 0
        if validate and not 1 <= n_val < len(theta):
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {len(theta)} pairs leaves "
                "no validation or no training pairs; add data or set early_stopping=False."
            )
        order = rng.permutation(len(theta))
        val, fit_idx = order[:n_val], order[n_val:]
        tensors = self._tensors(data.take(fit_idx), theta[fit_idx])
        validation = self._tensors(data.take(val), theta[val]) if n_val else None
        config = TrainingConfig(
            1 if partial else self.max_iter, self.batch_size, self._learning_rate_init(),
            self.n_iter_no_change, self.tol, verbose=self.verbose, max_time=self.max_time,
            schedule="constant" if partial else self.learning_rate,
            ema_decay=0.0 if partial else self.ema_decay, truncation=self._truncation(),
            compile=self.compile,
        )
        gen = tu.generator(tu.seed_from(rng), tensors[0].device)
        base = resume["base"] if resume else (self._history if continuing else _no_history())
        checkpoint = None
        if self.checkpoint_path is not None:
            from .persistence import save_checkpoint

            def checkpoint(state):
                save_checkpoint(self, {**state, "base": base}, self.checkpoint_path)
        if refresh is not None:  # online: each round as many training pairs as the first
            fresh, n_train = refresh, self.n_simulations - n_val

            def refresh(epoch: int):
                return fresh(epoch, n_train)

        with tu.torch_threads(self.device_):
            history = train(self.network_, tensors, validation, config, gen, self.device_,
                            refresh, resume, checkpoint)
        self._record(history, base, n_val > 0, len(fit_idx))
        if checkpoint is not None and history.stopped != "interrupted":
            checkpoint({"finished": True})
        if history.stopped == "interrupted":
            warnings.warn(
                f"Training was interrupted after {history.n_iter} epochs; the estimator keeps "
                "the best weights so far" + (
                    " and fit(...) with warm_start=True resumes from checkpoint_path."
                    if self.checkpoint_path else "."
                ), UserWarning, stacklevel=3,
            )

    def _coupling(self, n_params: int) -> str:
        """The coupling of the blocks: spline for one parameter whatever ``coupling``
        says (an affine chain of one variable can only be Gaussian)."""
        return "spline" if n_params == 1 else self.coupling

    def _learning_rate_init(self) -> float:
        """``learning_rate_init``, with ``"auto"`` resolved by the coupling."""
        if self.learning_rate_init != "auto":
            return float(self.learning_rate_init)
        return AUTO_LEARNING_RATE[self.coupling]

    def _record(self, history, base: dict, validated: bool, n_pairs: int) -> None:
        """Fitted attributes describing training (all epochs of warm-started fits)."""
        self._history = {
            "loss": base["loss"] + history.loss_curve,
            "validation_score": base["validation_score"] + history.validation_scores,
            "learning_rate": base["learning_rate"] + history.learning_rates,
            "seconds": base["seconds"] + history.epoch_seconds,
        }
        self.loss_curve_ = list(self._history["loss"])
        self.validation_scores_ = list(self._history["validation_score"])
        self.best_validation_score_ = history.best_score if validated else None
        self.n_iter_ = history.n_iter
        self.stop_reason_ = history.stopped
        self.n_simulations_ = n_pairs
        self.fit_time_ = history.seconds

    @property
    def history_(self) -> pd.DataFrame:
        """One row per epoch: loss, validation score, learning rate and seconds."""
        check_is_fitted(self)
        n = len(self._history["loss"])
        return pd.DataFrame(
            {k: v for k, v in self._history.items() if len(v) == n}
        ).rename_axis("epoch")

    def _resume_state(self) -> dict | None:
        """The training state of an unfinished checkpoint (adopting its fitted state)."""
        path = self.checkpoint_path
        if not self.warm_start or path is None or not os.path.exists(path):
            return None
        from .persistence import load_checkpoint

        loaded, training = load_checkpoint(path)
        if not training or training.get("finished"):
            return None
        if not hasattr(self, "network_"):  # a new process: take the fitted state too
            params = self.get_params(deep=False)
            self.__dict__.update({k: v for k, v in vars(loaded).items() if k not in params})
            self.device_ = tu.resolve_device(self.device)
            self.network_.to(self.device_)
        self.network_.load_state_dict(training["model"])
        return training

    def _initialise(self, data, theta, lower, upper, names, rng) -> None:
        """Resolve settings, fit the standardisations and build fresh networks."""
        n_params = theta.shape[1]
        self.n_params_ = n_params
        self.input_rank_ = data.rank
        self.parameter_names_ = parameter_names(names, n_params)
        lower, upper = self._narrowed_support(lower, upper)
        check_inside_support(theta, lower, upper, self.parameter_names_)
        summary = self._resolve_summary(data.rank)
        self.summary_network_ = _summary_name(summary)
        self.coupling_ = self._coupling(n_params)
        self.device_ = tu.resolve_device(self.device)
        self._fit_data_moments(data)
        self._support = (lower, upper)
        self.support_ = self.support
        if self._rejects:  # the flow sees theta itself, only standardised
            unbounded = np.full(n_params, np.inf)
            self._theta_transform = fit_parameter_transform(theta, -unbounded, unbounded)
        else:
            self._theta_transform = fit_parameter_transform(theta, lower, upper)
        self._network_config = {
            "n_params": n_params, "n_features": data.n_features,
            "summary": summary, "summary_out": None, "summary_dim": self.summary_dim,
            "summary_hidden": tuple(self.summary_hidden_sizes), "n_blocks": self.n_coupling_blocks,
            "coupling": self.coupling_, "hidden": tuple(self.hidden_layer_sizes),
            "bins": self.spline_bins, "seed": tu.seed_from(rng), "latent": self.latent,
        }
        if isinstance(summary, nn.Module):
            probe = self._tensors(data.take(np.arange(min(len(data), 8))))
            probe = [t[: len(t)] if isinstance(t, tu.StreamedRows) else t.cpu() for t in probe]
            self._network_config["summary_out"] = summary_size(summary, *probe)
        with tu.seeded_init(tu.seed_from(rng)):
            self.network_ = build_posterior_network(self._network_config).to(self.device_)
        flow = self.network_.flow
        z = torch.randn(PREDICT_DRAWS // 2, flow.latent_width(),
                        generator=tu.generator(tu.seed_from(rng)))
        mirror = torch.ones(z.shape[-1])
        mirror[:n_params] = -1.0  # antithetic in the parameters' columns only
        self._predict_z = torch.cat([z, z * mirror])

    def _resolve_summary(self, rank: int) -> str | nn.Module | None:
        """The summary network for X of this rank: by name, ``"auto"``, or a module."""
        kind = self.summary_network
        if isinstance(kind, nn.Module):
            return kind
        if kind == "auto":
            return _AUTO_SUMMARY[rank]
        needed = 2 if kind is None else 4 if kind == "cnn" else 3
        if needed != rank:
            raise ValueError(
                f"summary_network={kind!r} does not fit X of rank {rank}: use None for flat "
                "features, a set or series network for (n, n_obs, n_features) or lists, and "
                "'cnn' for grids (or 'auto' to choose by the form of X)."
            )
        return kind

    def _fit_data_moments(self, data: DataSets) -> None:
        """Per-feature (per-channel for grids) mean and std of the real observations."""
        axis = 1 if data.rank == 4 else -1
        if is_streamed(data.values):
            mean, std = streamed_moments(stream_chunks(data.values), axis)
            shape = (-1, 1, 1) if data.rank == 4 else (-1,)
            self._x_mean, self._x_std = mean.reshape(shape), std.reshape(shape)
        elif data.rank == 4:
            mean, std = feature_moments(np.moveaxis(data.values, 1, -1), None)
            self._x_mean, self._x_std = mean[:, None, None], std[:, None, None]
        else:
            self._x_mean, self._x_std = feature_moments(data.values, data.mask)

    def _tensors(self, data: DataSets, theta: np.ndarray | None = None) -> tuple:
        """Standardised float32 tensors ``(theta_u, x[, mask])`` (``theta_u`` if given).

        A bank on disk gives a :class:`~skcinn._torch_utils.StreamedRows` for ``x``, read
        batch by batch.
        """
        if is_streamed(data.values):
            rows = np.arange(len(data.values)) if data.rows is None else data.rows
            out = [tu.StreamedRows(data.values, rows, self._x_mean, self._x_std)]
            if theta is not None:
                out.insert(0, self._theta_transform(torch.tensor(theta))[0].float())
            return tuple(out)
        x = (data.values - self._x_mean) / self._x_std
        if data.mask is not None:
            x = np.where(data.mask[..., None], x, 0.0)
        out = [tu.to_tensor(x)]
        if data.mask is not None:
            out.append(torch.as_tensor(data.mask))
        if theta is not None:
            u, _ = self._theta_transform(torch.tensor(theta))
            out.insert(0, u.float())
        small = sum(t.numel() * t.element_size() for t in out) < 2**30
        return tuple(t.to(self.device_) if small else t for t in out)
