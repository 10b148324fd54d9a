"""The training loop: mini-batches, Adam, a learning-rate schedule, clipping, early stopping,
an exponential moving average of the weights.

It knows networks and tensors, nothing of scikit-learn. A batch whose loss or gradient
is not finite is skipped, never applied, so one bad batch cannot poison the weights.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ._flat_parameters import FlatParameters
from ._optim import Adam, LambdaSchedule
from ._torch_utils import compiled, quasi_normal

ADAPTIVE_FACTOR = 5.0  # learning_rate="adaptive": the rate is divided by this on a plateau
ADAPTIVE_REDUCTIONS = 3  # ... this many times; the next plateau ends training
PLATEAU_STEPS = 175  # and a plateau spans at least this many steps (short epochs of small
# data sets: at 1,000 pairs, 5 epochs are 35 steps, too few to judge a noisy validation)
ANNEAL_FRACTION = 0.2  # and over this last share of max_iter the rate falls towards zero
# (a fit that runs to max_iter ends annealed, as under a cosine; one that converges
# before never reaches it)
SCHEDULES = ("adaptive", "cosine", "constant")

Tensors = tuple[torch.Tensor, ...]
"""Training pairs ``(theta, x)`` or ``(theta, x, mask)``, aligned on the first axis."""


@dataclass
class TrainingConfig:
    """Settings of :func:`train` (see the estimator for their meaning)."""

    max_iter: int = 200
    batch_size: int = 128
    learning_rate: float = 2e-3
    n_iter_no_change: int = 5
    tol: float = 1e-4
    clip_norm: float = 5.0
    verbose: int = 0
    max_time: float | None = None
    schedule: str = "adaptive"  # one of SCHEDULES
    ema_decay: float = 0.99  # of the weight average; 0 trains without one
    truncation: Truncation | None = None  # train the flow truncated to a box
    compile: bool = False  # training steps through torch.compile


@dataclass
class Truncation:
    """Train on the likelihood of the flow truncated to a box (``support="truncate"``).

    Rejection sampling draws from ``q(theta | x) 1[theta in box] / Q(x)``, where
    ``Q(x)`` is the flow's mass inside the box. Maximum likelihood of ``q`` alone must
    end ``q``'s density at the box's edge wherever it cuts a posterior, which a smooth
    flow can only approximate, and the truncated density near the edge comes out too
    low; this trains the truncated density itself, ``log q(theta | x) - log Q(x)``, and
    lets the flow spill mass over the edge.

    ``log Q`` is estimated by the share of ``draws`` flow draws per pair that fall inside
    (at least one counted), its gradient ``E[grad log q(theta') | theta' inside]`` by the
    mean over those inside draws, for every pair with any (the draws themselves carry
    no gradient; the conditioner and summary network do). Validation scores every pair
    with the same ``validation_draws`` quasi-random base draws, so that epochs are
    compared on the same footing and the estimate of ``Q`` errs little.

    Parameters
    ----------
    lower, upper : Tensor of shape (n_params,)
        The box in the flow's (standardised) space; infinite for an open end.
    draws, validation_draws : int
        Flow draws per training and per validation pair.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    draws: int = 4
    validation_draws: int = 32

    def log_prob(self, model: nn.Module, batch: Tensors, z: torch.Tensor) -> torch.Tensor:
        """log of the truncated density of each pair, its mass estimated with the flow
        draws of base draws ``z`` (pairs, draws, n_params), or (draws, n_params) shared
        by all pairs; with the gradient of the estimated log mass where gradients are on.
        """
        theta, *data = batch
        c = model.condition(*data)
        other, inside, count = self.inside_draws(model, c, z)
        log_mass = torch.log(count.clamp(min=1) / z.shape[-2])
        if not torch.is_grad_enabled():
            return model.flow.log_prob(theta, c) - log_mass
        pair, draw = inside.nonzero(as_tuple=True)
        # one pass for the pairs and their inside draws: at these batch sizes a pass
        # costs about the same for one row or five
        both = model.flow.log_prob(torch.cat([theta, other[pair, draw]]),
                                   torch.cat([c, c[pair]]))
        log_q, log_inside = both[: len(theta)], both[len(theta):] / count[pair]
        mean_inside = torch.zeros_like(log_q).index_add(0, pair, log_inside)
        return log_q - log_mass - (mean_inside - mean_inside.detach())

    @torch.no_grad()
    def inside_draws(self, model: nn.Module, c: torch.Tensor, z: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The flow's draws (pairs, draws, n_params) for conditions ``c`` from base draws
        ``z`` (pairs or shared), without gradient; which fall inside the box (pairs,
        draws); and how many per pair."""
        other = model.draw(z.expand(len(c), *z.shape[-2:]), c)
        inside = inside_box(other, self.lower, self.upper)
        return other, inside, inside.sum(1)

    def training_log_prob(self, model: nn.Module, batch: Tensors,
                          gen: torch.Generator) -> torch.Tensor:
        """:meth:`log_prob` with ``draws`` random base draws per pair from ``gen``."""
        theta = batch[0]
        z = torch.randn(len(theta), self.draws, model.flow.latent_width(), generator=gen,
                        device=gen.device)
        return self.log_prob(model, batch, z.to(theta.device))


def inside_box(theta, lower, upper):
    """Which vectors (last axis) lie inside the open box (numpy arrays or tensors)."""
    return ((theta > lower) & (theta < upper)).all(-1)


@dataclass
class History:
    """What happened during :func:`train`.

    ``stopped`` says why training ended: ``"max_iter"``, ``"converged"`` (no
    improvement for ``n_iter_no_change`` epochs, at the smallest rate of an adaptive
    schedule), ``"max_time"`` or ``"interrupted"`` (KeyboardInterrupt; the best weights
    so far are kept).
    """

    loss_curve: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    best_score: float = -math.inf
    n_iter: int = 0
    skipped_batches: int = 0
    seconds: float = 0.0
    stopped: str = "max_iter"


def _to(batch: Tensors, device: torch.device) -> Tensors:
    return tuple(t.to(device, non_blocking=True) for t in batch)


def batch_log_prob(model: nn.Module, batch: Tensors, truncation: Truncation | None = None,
                   gen: torch.Generator | None = None) -> torch.Tensor:
    """log q(theta | x) of each pair in ``batch`` (of the truncated flow with
    ``truncation``, whose training draws come from ``gen``)."""
    if truncation is None:
        return model.log_prob(*batch)
    return truncation.training_log_prob(model, batch, gen)


def step_log_prob(model: nn.Module, config: TrainingConfig, gen: torch.Generator
                  ) -> Callable[..., torch.Tensor]:
    """``f(*batch)``: :func:`batch_log_prob` of a training batch, through
    ``torch.compile`` with ``config.compile`` (one compile cache per architecture)."""
    def log_prob(*batch: torch.Tensor) -> torch.Tensor:
        return batch_log_prob(model, batch, config.truncation, gen)

    if not config.compile:
        return log_prob
    return compiled(log_prob, key=(_architecture(model), config.truncation is None))


def _architecture(model: nn.Module) -> tuple:
    """What sets networks' compiled graphs apart: their modules' types and the shapes,
    dtypes and devices of their weights."""
    return (tuple(type(module).__qualname__ for module in model.modules()),
            tuple((tuple(t.shape), t.dtype, t.device) for t in model.state_dict().values()))


@torch.no_grad()
def mean_log_prob(model: nn.Module, data: Tensors, device: torch.device,
                  truncation: Truncation | None = None, size: int = 4096) -> float:
    """Mean log q(theta | x) over ``data``, evaluated in chunks (of the truncated flow,
    with the same draws at every call, with ``truncation``)."""
    model.eval()
    total = 0.0
    n = len(data[0])
    if truncation is not None:
        z = quasi_normal(truncation.validation_draws, model.flow.latent_width()).to(device)
    for start in range(0, n, size):
        chunk = _to(tuple(t[start : start + size] for t in data), device)
        log_q = (model.log_prob(*chunk) if truncation is None
                 else truncation.log_prob(model, chunk, z))
        total += log_q.double().sum().item()
    model.train()
    return total / n


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak averaging).

    Updated after every optimisation step, giving the new weights the share
    ``max(1 - decay, 10 / (steps + 9))``: the first step replaces the initial weights,
    and the average spans about the last tenth of the steps so far until that reaches
    ``1 / (1 - decay)`` steps, so a short training is not held back by its early
    weights. With ``decay=0`` it is the trained weights themselves and does nothing.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        # detached views of the parameters: the optimiser updates them in place, and
        # writing into them writes the model's weights
        self.weights = [p.detach() for p in model.parameters() if p.requires_grad
                        ] if decay > 0 else []
        self.values = [w.clone() for w in self.weights]

    @torch.no_grad()
    def update(self) -> None:
        if self.weights:
            self.steps += 1
            torch._foreach_lerp_(self.values, self.weights,
                                 max(1.0 - self.decay, 10.0 / (self.steps + 9)))

    def copy_to_model(self) -> None:
        _copy(self.weights, self.values)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model inside the block, the trained ones after."""
        trained = [w.clone() for w in self.weights]
        self.copy_to_model()
        try:
            yield
        finally:
            _copy(self.weights, trained)

    def state(self) -> dict:
        return {"values": self.values, "steps": self.steps}

    def load(self, state: dict) -> None:
        _copy(self.values, state["values"])
        self.steps = state["steps"]


def _copy(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """Copy each source into its target, in place (across devices too)."""
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> bool:
    """Scale the gradients of ``params`` to a total 2-norm of at most ``max_norm``, in place.

    Returns whether the norm is finite (the step is skipped otherwise). The norm is taken
    over all gradients at once and the scaling is skipped when nothing is clipped: for
    the many small tensors of our networks, half to two thirds of the time of
    ``torch.nn.utils.clip_grad_norm_``, which visits every parameter several times
    (``benchmarks/step_cost.py``).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    joined = grads[0] if len(grads) == 1 else torch.cat([g.reshape(-1) for g in grads])
    norm = torch.linalg.vector_norm(joined).item()  # one flat gradient: no copy
    finite = math.isfinite(norm)
    if finite and norm > max_norm:
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return finite


def _epoch(log_prob, optimizer, scheduler, data: Tensors, config, gen, device, history,
           average: WeightAverage, flat: bool) -> float:
    """One pass over ``data`` scored by ``log_prob(*batch)`` (:func:`step_log_prob`);
    returns the mean training loss of the applied batches.

    ``flat``: the optimiser holds one flat parameter whose gradient stays allocated.
    """
    n = len(data[0])
    order = torch.randperm(n, generator=gen, device=data[0].device)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses = []
    for index in order.split(config.batch_size):
        batch = _to(tuple(t[index] for t in data), device)
        loss = -log_prob(*batch).mean()
        optimizer.zero_grad(set_to_none=not flat)
        if torch.isfinite(loss):
            loss.backward()
            if clip_gradients(params, config.clip_norm):
                optimizer.step()
                scheduler.step()
                average.update()
                losses.append(loss.item())
            else:
                history.skipped_batches += 1
        else:
            history.skipped_batches += 1
    if not losses:
        raise FloatingPointError(
            "Every batch of an epoch had a non-finite loss; training stopped with the last "
            "good weights. Check the data for extreme values or lower learning_rate_init."
        )
    return sum(losses) / len(losses)


def make_optimizer(params: list[torch.Tensor], learning_rate: float) -> Adam:
    """Adam, fused where torch supports it (about 4x faster steps for small networks)."""
    return Adam(params, learning_rate)


@dataclass
class _State:
    """Everything a resumed training needs besides the model's own weights."""

    history: History
    best_state: dict | None = None
    stale: int = 0
    scale: float = 1.0  # of the initial learning rate (adaptive schedule)
    reductions: int = 0
    best_at_reduction: float | None = None  # the best score when the rate last fell
    anneal: float = 1.0  # times scale: falls linearly over the last epochs before max_iter
    # (not checkpointed: train() sets it from the epoch at the start of each one)


def _progress(config: TrainingConfig, epoch: int, history: History, bar) -> None:
    """One line per epoch in logs, a progress bar in terminals (verbose > 0 only)."""
    loss, rate = history.loss_curve[-1], history.learning_rates[-1]
    val = history.validation_scores[-1] if history.validation_scores else None
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", **({} if val is None else {"val": f"{val:.4f}"}),
                        lr=f"{rate:.1e}")
    elif config.verbose:
        extra = "" if val is None else f", validation log density {val:.4f}"
        print(f"epoch {epoch + 1}/{config.max_iter}: loss {loss:.4f}{extra}, "
              f"learning rate {rate:.1e}", flush=True)


def _progress_bar(config: TrainingConfig, initial: int):
    if not config.verbose or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.max_iter, initial=initial, desc="training", unit="epoch")


def train(
    model: nn.Module,
    data: Tensors,
    validation: Tensors | None,
    config: TrainingConfig,
    gen: torch.Generator,
    device: torch.device,
    refresh: Callable[[int], Tensors] | None = None,
    resume: dict | None = None,
    checkpoint: Callable[[dict], None] | None = None,
) -> History:
    """Train ``model`` by maximum likelihood, ``loss = -mean log q(theta | x)``.

    Parameters
    ----------
    model : nn.Module
        Has ``log_prob(theta, x[, mask])``.
    data, validation : tuple of Tensor
        Training and (optional) validation pairs, on the host or on ``device``.
    config : TrainingConfig
    gen : torch.Generator
        Shuffles the batches (on the device of ``data``).
    device : torch.device
        Where the model lives; batches are moved there.
    refresh : callable, optional
        ``refresh(epoch) -> Tensors``: fresh training pairs for each epoch after the
        first (online learning). The next round is simulated in a background thread
        while the current one trains.
    resume : dict, optional
        A state passed to ``checkpoint`` by an earlier call: training continues after
        its epoch, with its optimiser, schedule, best weights and history.
    checkpoint : callable, optional
        Called after every epoch with the resumable state (CPU tensors and plain data).

    Returns
    -------
    History
        Loss curve, validation scores (mean validation log density, higher is better),
        epochs run, why training stopped. The weights of the best epoch are restored.

    Notes
    -----
    With ``config.ema_decay > 0`` the validation score is that of the weight average,
    the best epoch's average is what is restored, and without validation the model ends
    with the last average. The trained weights go on from where they were.
    """
    start = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    flat = FlatParameters.of(params)
    try:
        return _train(model, data, validation, config, gen, device, refresh, resume,
                      checkpoint, params if flat is None else [flat.parameter], flat, start)
    finally:
        if flat is not None:
            flat.release()


def _train(model, data, validation, config, gen, device, refresh, resume, checkpoint,
           params: list[torch.Tensor], flat: FlatParameters | None, start: float) -> History:
    """:func:`train` optimising ``params``: the model's, or the one flat parameter
    that holds them all (``flat``)."""
    optimizer = make_optimizer(params, config.learning_rate)
    state = _State(History())
    per_epoch = math.ceil(len(data[0]) / config.batch_size)  # optimisation steps
    patience = plateau_patience(config, len(data[0]))
    if config.schedule == "cosine":
        steps = config.max_iter * per_epoch
        scheduler = LambdaSchedule(
            optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
        )
    else:  # constant, or adaptive: _lower_rate divides state.scale on plateaus (the
        # lambda looks state up when called, so it follows a resumed state too)
        scheduler = LambdaSchedule(optimizer, lambda t: state.scale * state.anneal)
    anneal_epochs = (math.ceil(ANNEAL_FRACTION * config.max_iter)
                     if config.schedule == "adaptive" else 0)
    average = WeightAverage(model, config.ema_decay)  # after flattening: of the views
    log_prob = step_log_prob(model, config, gen)
    if resume is not None:
        state = _restore(resume, optimizer, scheduler, gen, average, flat)
    history = state.history
    first = history.n_iter
    bar = _progress_bar(config, first)
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = _submit(pool, refresh, first, config)
        try:
            for epoch in range(first, config.max_iter):
                if refresh is not None and epoch > first:
                    data = upcoming.result() if upcoming is not None else refresh(epoch)
                    upcoming = _submit(pool, refresh, epoch, config)
                if anneal_epochs:  # n / (n + 1), ..., 1 / (n + 1) in the last n epochs
                    state.anneal = min(1.0, (config.max_iter - epoch) / (anneal_epochs + 1))
                    _set_rate(state, optimizer, config)
                tick = time.perf_counter()
                loss = _epoch(log_prob, optimizer, scheduler, data, config, gen, device,
                              history, average, flat is not None)
                _record(history, loss, optimizer, tick)
                score = -loss
                with average.applied():  # judged, and kept as the best, averaged
                    if validation is not None:
                        score = mean_log_prob(model, validation, device,
                                              config.truncation)
                        history.validation_scores.append(score)
                    stop = _update_best(state, model, score, config.tol, patience,
                                        validation is not None)
                _progress(config, epoch, history, bar)
                if stop is not None and config.schedule == "adaptive":
                    stop = _lower_rate(state, optimizer, config)
                if checkpoint is not None:
                    checkpoint(_snapshot(state, model, optimizer, scheduler, gen, average,
                                         flat))
                if stop is None and config.max_time is not None and (
                    time.perf_counter() - start > config.max_time
                ):
                    stop = "max_time"
                if stop is not None:
                    history.stopped = stop
                    break
        except KeyboardInterrupt:
            history.stopped = "interrupted"
        finally:
            if upcoming is not None:
                upcoming.cancel()
            if bar is not None:
                bar.close()
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    else:
        average.copy_to_model()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def plateau_patience(config: TrainingConfig, n_train: int) -> int:
    """Epochs without a better score that make a plateau on ``n_train`` training pairs:
    ``n_iter_no_change``, and under the adaptive schedule at least ``PLATEAU_STEPS``
    optimisation steps."""
    if config.schedule != "adaptive":
        return config.n_iter_no_change
    steps = math.ceil(n_train / config.batch_size)
    return max(config.n_iter_no_change, math.ceil(PLATEAU_STEPS / steps))


def _submit(pool, refresh, epoch: int, config: TrainingConfig):
    """Start simulating the training pairs of ``epoch + 1`` (None when there is none)."""
    if refresh is None or epoch + 1 >= config.max_iter:
        return None
    return pool.submit(refresh, epoch + 1)


def _record(history: History, loss: float, optimizer, tick: float) -> None:
    history.loss_curve.append(loss)
    history.n_iter += 1
    history.epoch_seconds.append(time.perf_counter() - tick)
    history.learning_rates.append(optimizer.param_groups[0]["lr"])


def _update_best(
    state: _State, model, score: float, tol: float, patience: int, keep: bool
) -> str | None:
    """Note an improvement (keeping the weights when validating); 'converged' when stale."""
    if score > state.history.best_score + tol:
        state.history.best_score, state.stale = score, 0
        if keep:
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return None
    state.stale += 1
    return "converged" if state.stale >= patience else None


def _lower_rate(state: _State, optimizer, config) -> str | None:
    """On a plateau of the adaptive schedule: divide the rate, or stop at its floor or
    when the last division brought no better score (a smaller rate then found nothing
    either in every fit measured: benchmarks/README.md)."""
    best = state.history.best_score
    if state.reductions >= ADAPTIVE_REDUCTIONS or (
        state.best_at_reduction is not None and best <= state.best_at_reduction
    ):
        return "converged"
    state.best_at_reduction = best
    state.reductions += 1
    state.scale /= ADAPTIVE_FACTOR
    state.stale = 0
    _set_rate(state, optimizer, config)
    return None


def _set_rate(state: _State, optimizer, config) -> None:
    """Give the optimiser the adaptive schedule's rate now (the scheduler's own lambda
    gives the same from the next step on)."""
    for group in optimizer.param_groups:
        group["lr"] = config.learning_rate * state.scale * state.anneal


def _cpu(tree):
    """A copy of nested dicts/lists of tensors with every tensor on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().clone()
    if isinstance(tree, dict):
        return {k: _cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu(v) for v in tree)
    return tree


def _snapshot(state: _State, model, optimizer, scheduler, gen, average: WeightAverage,
              flat: FlatParameters | None) -> dict:
    """The resumable training state, on the CPU, as plain data and tensors (the
    optimiser's state per parameter, whether or not they were flattened)."""
    history = {k: v for k, v in vars(state.history).items()}
    optimizer_state = optimizer.state_dict()
    if flat is not None:
        optimizer_state = flat.per_parameter_state(optimizer_state)
    return _cpu({
        "model": model.state_dict(), "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(), "generator": gen.get_state(),
        "best_state": state.best_state, "stale": state.stale, "history": history,
        "scale": state.scale, "reductions": state.reductions,
        "best_at_reduction": state.best_at_reduction, "average": average.state(),
    })


def _restore(resume: dict, optimizer, scheduler, gen, average: WeightAverage,
             flat: FlatParameters | None) -> _State:
    """Load a :func:`_snapshot` into the optimiser, schedule, generator and average."""
    optimizer_state = resume["optimizer"]
    if flat is not None:
        optimizer_state = flat.flat_state(optimizer_state)
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(resume["scheduler"])
    gen.set_state(resume["generator"])
    if average.weights and resume.get("average") is not None:
        average.load(resume["average"])
    return _State(History(**resume["history"]), resume["best_state"], resume["stale"],
                  resume.get("scale", 1.0), resume.get("reductions", 0),
                  resume.get("best_at_reduction"))
