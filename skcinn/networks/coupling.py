r"""Conditional coupling blocks and the invertible chain built from them.

A conditional affine coupling block (Radev et al., 2020, equations 2-5) splits its input
:math:`u = (u_1, u_2)` and transforms both halves, each conditioned on the other and on
the summary vector :math:`\tilde{x}`:

.. math::

    v_1 = u_1 \odot \exp(s_1(u_2, \tilde{x})) + t_1(u_2, \tilde{x}), \qquad
    v_2 = u_2 \odot \exp(s_2(v_1, \tilde{x})) + t_2(v_1, \tilde{x}).

The log-scales are soft-clamped, :math:`s \leftarrow \frac{2c}{\pi}\arctan(s / c)`, so a
step can never blow up. The spline variant replaces the elementwise affine map by a
monotone rational-quadratic spline whose bins come from the same conditioners.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .latent import make_latent
from .mlp import ConditionalMLP
from .spline import rational_quadratic_spline

Subnet = Callable[[int, int, int], nn.Module]
"""``subnet(in_features, context_features, out_features)`` -> module called as ``net(x, c)``."""


class AffineTransform:
    """Elementwise ``y = x * exp(s) + t`` with a soft-clamped log-scale ``s``.

    Parameters
    ----------
    clamp : float
        The log-scale is mapped through ``(2 clamp / pi) * atan(s / clamp)``.
    """

    def __init__(self, clamp: float = 1.9) -> None:
        self.clamp = clamp
        self.n_params = 2

    def __call__(
        self, x: torch.Tensor, params: torch.Tensor, inverse: bool = False,
        log_det: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raw, t = params.unbind(-1)
        s = (2 * self.clamp / math.pi) * torch.atan(raw / self.clamp)
        if inverse:
            return (x - t) * torch.exp(-s), -s.sum(-1) if log_det else None
        return torch.addcmul(t, x, torch.exp(s)), s.sum(-1) if log_det else None


class SplineTransform:
    """Elementwise monotone rational-quadratic spline with identity tails.

    Parameters
    ----------
    bins : int
        Number of spline bins.
    bound : float
        Half-width of the spline's domain; the map is the identity outside it.
    """

    def __init__(self, bins: int = 8, bound: float = 5.0) -> None:
        self.bins = bins
        self.bound = bound
        self.n_params = 3 * bins - 1

    def __call__(
        self, x: torch.Tensor, params: torch.Tensor, inverse: bool = False,
        log_det: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return rational_quadratic_spline(x, params, self.bound, inverse, log_det)


def mlp_subnet(hidden: Sequence[int]) -> Subnet:
    """A sub-network constructor: a :class:`ConditionalMLP` with the given hidden widths."""

    def build(in_features: int, context_features: int, out_features: int) -> nn.Module:
        return ConditionalMLP(in_features, context_features, out_features, hidden)

    return build


class CouplingBlock(nn.Module):
    """A conditional coupling block transforming both halves of its input.

    With one feature the second half is empty and the block is a transform of that
    feature conditioned on the context alone.

    Parameters
    ----------
    features : int
        Size of the input ``u``.
    context : int
        Size of the condition (0 for an unconditioned block).
    transform : AffineTransform or SplineTransform
        The elementwise map whose parameters the sub-networks produce.
    subnet : callable
        ``subnet(in_features, context_features, out_features)`` builds each conditioner.
    """

    def __init__(self, features: int, context: int, transform, subnet: Subnet) -> None:
        super().__init__()
        self.split = features - features // 2
        rest = features - self.split
        self.transform = transform
        k = transform.n_params
        self.net1 = subnet(rest, context, self.split * k)
        self.net2 = subnet(self.split, context, rest * k) if rest else None

    def _halves(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u[..., :split], u[..., split:])`` in one operator (one node backward)."""
        return u.split((self.split, u.shape[-1] - self.split), dim=-1)

    def _params(self, net: nn.Module, x: torch.Tensor, c: torch.Tensor | None, size: int):
        return net(x, c).unflatten(-1, (size, self.transform.n_params))

    def forward(
        self, u: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``u`` to ``v``; returns ``(v, log|det J|)``."""
        u1, u2 = self._halves(u)
        v1, ladj = self.transform(u1, self._params(self.net1, u2, c, u1.shape[-1]))
        if self.net2 is None:
            return v1, ladj
        v2, ladj2 = self.transform(u2, self._params(self.net2, v1, c, u2.shape[-1]))
        return torch.cat([v1, v2], dim=-1), ladj + ladj2

    def inverse(
        self, v: torch.Tensor, c: torch.Tensor | None = None, log_det: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Map ``v`` back to ``u``; returns ``(u, log|det J|)`` of the inverse map
        (``None`` in its place without ``log_det``)."""
        v1, v2 = self._halves(v)
        if self.net2 is None:
            params = self._params(self.net1, v2, c, v1.shape[-1])
            return self.transform(v1, params, True, log_det)
        params = self._params(self.net2, v1, c, v2.shape[-1])
        u2, ladj2 = self.transform(v2, params, True, log_det)
        params = self._params(self.net1, u2, c, v1.shape[-1])
        u1, ladj1 = self.transform(v1, params, True, log_det)
        return torch.cat([u1, u2], dim=-1), ladj1 + ladj2 if log_det else None


class Permutation(nn.Module):
    """A fixed permutation of the features, kept as a buffer (log|det J| = 0).

    Parameters
    ----------
    features : int
        Number of features.
    generator : torch.Generator
        Source of the random permutation, so that a seed fixes the chain.
    """

    def __init__(self, features: int, generator: torch.Generator) -> None:
        super().__init__()
        perm = torch.randperm(features, generator=generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    def forward(self, u: torch.Tensor, c: torch.Tensor | None = None):
        """Permute ``u``; returns ``(v, None)``: nothing to add to log|det J|."""
        return u[..., self.perm], None

    def inverse(self, v: torch.Tensor, c: torch.Tensor | None = None, log_det: bool = True):
        """Undo the permutation; returns ``(u, None)``."""
        return v[..., self.inv], None


def make_transform(kind: str, bins: int = 8):
    """The elementwise transform named ``"affine"`` or ``"spline"``."""
    if kind == "affine":
        return AffineTransform()
    if kind == "spline":
        return SplineTransform(bins=bins)
    raise ValueError(f"coupling must be 'affine' or 'spline'; got {kind!r}.")


class InvertibleNetwork(nn.Module):
    """A chain of fixed permutations and conditional coupling blocks, ``theta -> z``.

    Parameters
    ----------
    features : int
        Number of parameters.
    context : int
        Size of the condition (summary vector); 0 for an unconditioned flow.
    n_blocks : int
        Number of coupling blocks.
    coupling : {"affine", "spline"}
        The elementwise transform inside each block.
    hidden : sequence of int
        Hidden widths of every conditioner.
    seed : int
        Seed of the permutations.
    bins : int
        Spline bins (``coupling="spline"``).
    latent : {"normal", "student_t", "scale_mixture"}
        The latent distribution (:mod:`skcinn.networks.latent`).
    """

    def __init__(
        self,
        features: int,
        context: int,
        n_blocks: int = 6,
        coupling: str = "affine",
        hidden: Sequence[int] = (128, 128),
        seed: int = 0,
        bins: int = 8,
        latent: str = "normal",
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        transform = make_transform(coupling, bins)
        subnet = mlp_subnet(tuple(hidden))
        layers: list[nn.Module] = []
        for _ in range(n_blocks):
            if features > 1:
                layers.append(Permutation(features, gen))
            layers.append(CouplingBlock(features, context, transform, subnet))
        self.layers = nn.ModuleList(layers)
        self.features = features
        self.latent = make_latent(latent)

    def forward(
        self, theta: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``theta`` to the latent ``z``; returns ``(z, log|det J|)``."""
        ladj = None
        for layer in self.layers:
            theta, step = layer(theta, c)
            ladj = _plus(ladj, step)
        return theta, ladj if ladj is not None else theta.new_zeros(theta.shape[:-1])

    def inverse(
        self, z: torch.Tensor, c: torch.Tensor | None = None, log_det: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Map ``z`` back to ``theta``; returns ``(theta, log|det J|)`` of the inverse.

        With ``log_det=False`` (draws only) the log-determinant is not computed and
        ``None`` is returned in its place (a spline call ~8 % cheaper).
        """
        ladj = None
        for layer in reversed(self.layers):
            z, step = layer.inverse(z, c, log_det)
            ladj = _plus(ladj, step)
        if log_det and ladj is None:
            ladj = z.new_zeros(z.shape[:-1])
        return z, ladj

    def log_prob(self, theta: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """log q(theta | c): the latent's log density at z plus the log-determinant."""
        z, ladj = self(theta, c)
        return self.latent.log_prob(z) + ladj

    def latent_width(self) -> int:
        """Standard normal base columns one draw takes (``latent.from_normal`` maps
        them to latent draws)."""
        return self.features + self.latent.extra


def _plus(total: torch.Tensor | None, term: torch.Tensor | None) -> torch.Tensor | None:
    """``total + term``, where ``None`` is nothing (a layer without a log-determinant:
    adding zeros would cost an operator forward and backward)."""
    if term is None:
        return total
    return term if total is None else total + term

