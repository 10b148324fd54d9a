"""Flow and training variants measured against the defaults and not adopted
(benchmarks/README.md).

Each variant patches the package's network, optimiser or schedule for one measurement:

    python benchmarks/heldout_logdensity.py slcp 10000 --variant rotation
    python benchmarks/heldout_logdensity.py gaussian_linear 10000 --variant lu \
        --options '{"coupling": "spline"}'

- ``rotation``: a fixed random rotation between blocks instead of the permutation.
- ``lu``: a learned LU-factorised linear layer (identity at the start) after each
  permutation, as sbi's neural spline flow has.
- ``locscale``: an elementwise location-scale map of θ computed from the condition
  alone, before the coupling blocks.
- ``spline_first`` / ``spline_last``: the block nearest θ / nearest the latent uses
  spline coupling, the others affine.
- ``shallow_phi``: the DeepSet embeds each member by one layer (linear and SiLU)
  instead of two, a tenth of the per-member work.
- ``weight_decay=<value>``: AdamW with that decoupled weight decay instead of Adam.
- ``adaptive=<factor>,<reductions>``: the adaptive schedule divides the learning rate
  by ``factor`` on each plateau and stops after ``reductions`` of them (default 5, 3).
- ``anneal=<fraction>``: over the last ``fraction`` of ``max_iter`` epochs the adaptive
  schedule's rate falls linearly towards zero (``training.ANNEAL_FRACTION``).
- ``restore_on_plateau``: the adaptive schedule also goes back to the best weights
  whenever it lowers the rate.
- ``every_plateau``: the adaptive schedule lowers the rate on each plateau until its
  floor, even after a reduction that brought no better score (the rule before the
  default stopped there).
- ``smoothed_plateau=<weight>``: plateaus are judged on an exponential average of the
  validation score (``weight`` on the past); the best weights are still chosen by the
  raw score.
- ``relu``: the coupling conditioners use ReLU instead of SiLU (the summary network
  keeps SiLU).
- ``hardswish``: every network's SiLU (coupling conditioners and summary network) becomes
  the hard swish, x·min(max(x + 3, 0), 6)/6, its piecewise-quadratic approximation
  without an exponential.
- ``student_t=<df>``: the Student-t latent (``latent="student_t"``) with ``df`` degrees
  of freedom fixed; ``student_t_learn=<df>[,<speed>]``: learned from ``df``, their log
  moving ``speed`` times as fast as the weights (the package: ``latent.DF_INIT`` and
  ``latent.DF_SPEED``).
- ``dropout=<p>``: dropout with probability ``p`` after every hidden activation of the
  coupling conditioners (BayesFlow's default is 0.05); off when sampling.
- ``linear_skip``: each coupling conditioner adds a linear map of its inputs (the other
  half and the condition, zero at the start) to its output, so that parameters linear
  in the data need no hidden units.
- ``input_noise=<sd_x>,<sd_theta>``: Gaussian noise of these sds added to the
  standardised flat data and parameters of every training batch (noise regularisation).
- ``scale_mixture=<scale>,<weight>[,<speed>]``: the scale-mixture latent
  (``latent="scale_mixture"``) started from other values: N(0, I) and N(0, scale² I)
  with weight ``weight`` on the second, scales and weights learned, their logs
  ``speed`` times as fast as the weights (the package: ``latent.MIXTURE_SCALE_INIT``,
  ``MIXTURE_WEIGHT_INIT``, ``MIXTURE_SPEED``).
- ``set_subsample=<p>``: each training set is, with probability ``p`` per batch, cut
  to a random subset of its members (size uniform between the smallest training set's
  and its own); a subset of an i.i.d. set is a fresh data set of the same θ (set data
  augmentation).
- Training the flow truncated to the support's box, measured here first, is now the
  estimator's ``support="truncate"``.
- ``truncate_one_draw``: with ``support="truncate"``, the gradient of ``log Q`` from one
  inside draw per pair, picked at random, instead of the mean over all inside draws
  (the same expectation; one forward and backward pass per pair instead of up to
  ``draws``).
- ``truncate_outside``: with ``support="truncate"``, the gradient of ``log Q`` from the
  draws outside the box, ``-E_q[1_outside grad log q] / Q`` (zero for a pair whose
  draws all fall inside), instead of the mean score over the inside draws.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from skcinn import training
from skcinn.networks import coupling, latent, mlp, summary
from skcinn.networks.mlp import MLP, ConditionalMLP


class Rotation(nn.Module):
    """A fixed random orthogonal map of the features (log|det J| = 0)."""

    def __init__(self, features: int, generator: torch.Generator) -> None:
        super().__init__()
        q, r = torch.linalg.qr(torch.randn(features, features, generator=generator))
        self.register_buffer("weight", q * torch.sign(torch.diagonal(r)))

    def forward(self, u, c=None):
        return u @ self.weight.T, None

    def inverse(self, v, c=None, log_det=True):
        return v @ self.weight, None


class LULinear(nn.Module):
    """``u -> L U u + b`` with unit-lower ``L`` and upper ``U`` (diagonal exp(s))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.lower = nn.Parameter(torch.zeros(features, features))
        self.upper = nn.Parameter(torch.zeros(features, features))
        self.log_diag = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("strict", torch.tril(torch.ones(features, features), -1))

    def _weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.bias), device=self.bias.device)
        upper = self.upper * self.strict.T + torch.diag(torch.exp(self.log_diag))
        return (self.lower * self.strict + eye) @ upper

    def forward(self, u, c=None):
        return u @ self._weight().T + self.bias, self.log_diag.sum().expand(u.shape[:-1])

    def inverse(self, v, c=None, log_det=True):
        w_inv = torch.linalg.inv(self._weight())
        ladj = (-self.log_diag.sum()).expand(v.shape[:-1]) if log_det else None
        return (v - self.bias) @ w_inv.T, ladj


class LocationScale(nn.Module):
    """``theta -> (theta - t(c)) exp(-s(c))``: the couplings' affine map (its inverse),
    with parameters from the condition alone."""

    def __init__(self, features: int, context: int, hidden) -> None:
        super().__init__()
        self.net = ConditionalMLP(0, context, 2 * features, hidden)
        self.transform = coupling.AffineTransform()

    def _params(self, c, like):
        return self.net(like[..., :0], c).unflatten(-1, (-1, 2))

    def forward(self, u, c=None):
        return self.transform(u, self._params(c, u), inverse=True)

    def inverse(self, v, c=None, log_det=True):
        return self.transform(v, self._params(c, v), log_det=log_det)


def _rebuild(insert) -> None:
    """Wrap ``InvertibleNetwork.__init__`` so that ``insert(net, features, context,
    hidden)`` may rewrite the chain of layers after it is built."""
    build = coupling.InvertibleNetwork.__init__

    def init(self, features, context, n_blocks=6, coupling="affine", hidden=(128, 128),
             seed=0, bins=8):
        build(self, features, context, n_blocks, coupling, hidden, seed, bins)
        self.layers = nn.ModuleList(insert(list(self.layers), features, context, hidden))

    coupling.InvertibleNetwork.__init__ = init


def _hardswish(x: torch.Tensor, fresh: bool = True) -> torch.Tensor:
    """``mlp.silu``'s signature and in-place rule, with the hard swish."""
    return nn.functional.hardswish(x, inplace=fresh and not torch.is_grad_enabled())


def _conditioner_activation(activation: nn.Module) -> None:
    """Build every :class:`ConditionalMLP` with ``activation`` after each hidden layer."""
    init = ConditionalMLP.__init__

    def build(self, in_features, context_features, out_features, hidden=(128, 128)):
        init(self, in_features, context_features, out_features, hidden)
        layers = [activation]
        for layer in self.trunk:
            layers += [layer] if isinstance(layer, nn.Linear) else [activation]
        self.trunk = nn.Sequential(*layers)

    def forward(self, x, c=None):
        h = self.bias
        if self.c_layer is not None and c is not None:
            h = self.c_layer(c) + h
        if self.x_layer is not None:
            h = self.x_layer(x) + h
        return self.out(self.trunk(h.expand(*x.shape[:-1], h.shape[-1])))

    ConditionalMLP.__init__ = build
    ConditionalMLP.forward = forward


def _linear_skip() -> None:
    """Build every :class:`ConditionalMLP` with a linear path from its inputs to its output."""
    init, forward = ConditionalMLP.__init__, ConditionalMLP.forward

    def build(self, in_features, context_features, out_features, hidden=(128, 128)):
        init(self, in_features, context_features, out_features, hidden)
        self.skip_x = nn.Linear(in_features, out_features, bias=False) if in_features else None
        self.skip_c = (nn.Linear(context_features, out_features, bias=False)
                       if context_features else None)
        for layer in (self.skip_x, self.skip_c):
            if layer is not None:
                nn.init.zeros_(layer.weight)

    def skip_forward(self, x, c=None):
        out = forward(self, x, c)
        if self.skip_c is not None and c is not None:
            out = out + self.skip_c(c)
        if self.skip_x is not None:
            out = out + self.skip_x(x)
        return out

    ConditionalMLP.__init__ = build
    ConditionalMLP.forward = skip_forward


def _truncate_one_draw() -> None:
    """``Truncation.log_prob`` whose gradient term uses one random inside draw per pair."""

    def log_prob(self, model, batch, z):
        theta, *data = batch
        c = model.condition(*data)
        other, inside, count = self.inside_draws(model, c, z)
        log_q = model.flow.log_prob(theta, c) - torch.log(count.clamp(min=1) / z.shape[-2])
        if not torch.is_grad_enabled():
            return log_q
        pair = torch.nonzero(count).squeeze(1)
        pick = torch.multinomial(inside[pair].float(), 1).squeeze(1)
        log_inside = model.flow.log_prob(other[pair, pick], c[pair])
        one = torch.zeros_like(log_q).index_add(0, pair, log_inside)
        return log_q - (one - one.detach())

    training.Truncation.log_prob = log_prob


def _truncate_outside() -> None:
    """``Truncation.log_prob`` whose gradient of ``log Q`` comes from the draws outside:
    the score has mean zero under q, so grad log Q = -E_q[1_outside grad log q] / Q,
    which is exactly zero for a pair whose draws all fall inside (the package's
    estimator averages the score over the inside draws: mean zero there, but noise)."""

    def log_prob(self, model, batch, z):
        theta, *data = batch
        c = model.condition(*data)
        draws = z.shape[-2]
        other, inside, count = self.inside_draws(model, c, z)
        mass = count.clamp(min=1) / draws
        if not torch.is_grad_enabled():
            return model.flow.log_prob(theta, c) - torch.log(mass)
        pair, draw = (~inside).nonzero(as_tuple=True)
        both = model.flow.log_prob(torch.cat([theta, other[pair, draw]]),
                                   torch.cat([c, c[pair]]))
        log_q, log_out = both[: len(theta)], both[len(theta):] / (draws * mass[pair])
        out = torch.zeros_like(log_q).index_add(0, pair, log_out)
        return log_q - torch.log(mass) + (out - out.detach())

    training.Truncation.log_prob = log_prob


def apply(variant: str) -> None:
    """Patch the package for ``variant`` (see the module docstring)."""
    if variant == "rotation":
        coupling.Permutation = Rotation
    elif variant == "lu":
        _rebuild(lambda layers, d, c, h: [
            m for layer in layers
            for m in ((layer, LULinear(d)) if isinstance(layer, coupling.Permutation)
                      else (layer,))])
    elif variant == "locscale":
        _rebuild(lambda layers, d, c, h: ([LocationScale(d, c, tuple(h))] if c else [])
                 + layers)
    elif variant in ("spline_first", "spline_last"):
        def swap(layers, d, c, h):
            blocks = [i for i, m in enumerate(layers) if isinstance(m, coupling.CouplingBlock)]
            i = blocks[0] if variant == "spline_first" else blocks[-1]
            layers[i] = coupling.CouplingBlock(
                d, c, coupling.SplineTransform(), coupling.mlp_subnet(tuple(h)))
            return layers

        _rebuild(swap)
    elif variant == "shallow_phi":
        init = summary.DeepSet.__init__

        def shallow(self, in_features, summary_dim=16, hidden=(64, 64), moments=None):
            init(self, in_features, summary_dim, hidden, moments)
            self.phi = MLP(in_features, tuple(hidden)[-1], (), final_activation=True)

        summary.DeepSet.__init__ = shallow
    elif variant.startswith("weight_decay="):
        decay = float(variant.split("=", 1)[1])
        training.make_optimizer = lambda params, lr: torch.optim.AdamW(
            params, lr=lr, weight_decay=decay)
    elif variant.startswith("adaptive="):
        factor, reductions = variant.split("=", 1)[1].split(",")
        training.ADAPTIVE_FACTOR, training.ADAPTIVE_REDUCTIONS = float(factor), int(reductions)
    elif variant.startswith("anneal="):
        training.ANNEAL_FRACTION = float(variant.split("=", 1)[1])
    elif variant == "restore_on_plateau":
        update = training._update_best

        def update_and_restore(state, model, score, tol, patience, keep):
            stop = update(state, model, score, tol, patience, keep)
            lowers = stop is not None and state.reductions < training.ADAPTIVE_REDUCTIONS
            if lowers and state.best_state is not None:  # the rate drops after this call
                model.load_state_dict(state.best_state)
            return stop

        training._update_best = update_and_restore
    elif variant == "every_plateau":
        lower = training._lower_rate

        def lower_always(state, optimizer, config):
            state.best_at_reduction = None  # never a fruitless reduction to stop at
            return lower(state, optimizer, config)

        training._lower_rate = lower_always
    elif variant.startswith("smoothed_plateau="):
        weight = float(variant.split("=", 1)[1])
        training._update_best = _smoothed_update_best(weight)
    elif variant == "relu":
        _conditioner_activation(nn.ReLU())
    elif variant == "hardswish":
        mlp.silu = _hardswish
    elif variant == "linear_skip":
        _linear_skip()
    elif variant.startswith("input_noise="):
        sd_x, sd_theta = (float(v) for v in variant.split("=", 1)[1].split(","))
        plain = training.batch_log_prob

        def noisy(model, batch, *truncation):
            if model.training:
                theta, x, *rest = batch
                batch = (theta + sd_theta * torch.randn_like(theta),
                         x + sd_x * torch.randn_like(x) if x.ndim == 2 else x, *rest)
            return plain(model, batch, *truncation)

        training.batch_log_prob = noisy
    elif variant.startswith("scale_mixture="):
        args = [float(v) for v in variant.split("=", 1)[1].split(",")]
        coupling.make_latent = lambda kind: latent.ScaleMixtureLatent(*args)
    elif variant.startswith("set_subsample="):
        _set_subsample(float(variant.split("=", 1)[1]))
    elif variant == "truncate_one_draw":
        _truncate_one_draw()
    elif variant == "truncate_outside":
        _truncate_outside()
    elif variant.startswith(("student_t=", "student_t_learn=")):
        name, values = variant.split("=", 1)
        df, speed = (float(v) for v in (values + ",1").split(",")[:2])
        _student_t_latent(df, learn=name == "student_t_learn", speed=speed)
    elif variant.startswith("dropout="):
        p = float(variant.split("=", 1)[1])
        _conditioner_activation(nn.Sequential(nn.SiLU(), nn.Dropout(p)))
    else:
        raise ValueError(f"unknown variant {variant!r}")


def _set_subsample(p: float) -> None:
    """Training batches of sets keep a random subset of each set's members with
    probability ``p`` (at least as many as the smallest set of the batch holds)."""
    plain = training.batch_log_prob

    def subsampled(model, batch, truncation=None, gen=None):
        if model.training and len(batch) == 3 and batch[2] is not None:
            theta, x, mask = batch
            n = mask.sum(dim=1)
            low = n.min()
            u = torch.rand((3, *mask.shape), generator=gen, device=mask.device)
            size = low + (u[0, :, 0] * (n - low + 1)).long().clamp(max=n - low)
            size = torch.where(u[1, :, 0] < p, size, n)
            rank = u[2].masked_fill(~mask.bool(), 2.0).argsort(1).argsort(1)
            batch = (theta, x, mask & (rank < size.unsqueeze(1)).to(mask.dtype))
        return plain(model, batch, truncation, gen)

    training.batch_log_prob = subsampled


def _student_t_latent(df: float, learn: bool = False, speed: float = 1.0) -> None:
    """Every flow gets the package's Student-t latent (``latent="student_t"``), starting
    from ``df`` degrees of freedom, their log moving ``speed`` times as fast as the
    weights; without ``learn`` the degrees of freedom stay fixed."""

    def make(kind):
        t = latent.StudentTLatent(df, speed)
        if not learn:
            log_df = t.log_df.detach()
            del t.log_df
            t.register_buffer("log_df", log_df)
        return t

    coupling.make_latent = make


def _smoothed_update_best(weight: float):
    """``training._update_best`` with plateaus judged on a smoothed score."""
    keep_best = training._update_best  # the best score and weights: by the raw score

    def update(state, model, score, tol, patience, keep):
        stale = state.stale
        keep_best(state, model, score, tol, math.inf, keep)
        state.stale = stale  # counted below, on the smoothed score
        previous = getattr(state, "smoothed", None)
        state.smoothed = score if previous is None else weight * previous + (1 - weight) * score
        if state.smoothed > getattr(state, "best_smoothed", -math.inf) + tol:
            state.best_smoothed, state.stale = state.smoothed, 0
            return None
        state.stale += 1
        return "converged" if state.stale >= patience else None

    return update
