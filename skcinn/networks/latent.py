"""Latent distributions of the invertible network: where ``theta -> z`` must land.

Every caller draws standard normal base values, ``width(features)`` columns per draw;
the latent maps them to its own draws with :meth:`from_normal`, so random, quasi-random
and fixed antithetic draws all serve either latent and stay reproducible from one seed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy import special
from torch import nn

LATENTS = ("normal", "student_t", "scale_mixture")
"""Names :func:`make_latent` builds."""

DF_INIT = 100.0  # the Student-t latent's degrees of freedom at the start of training
DF_SPEED = 3.0  # its log-df is this times a parameter: Adam moves it this much faster
DF_MIN = 2.0  # and they stay above this (finite variance: no draw far off in the tails)
MIXTURE_SCALE_INIT = 0.3  # the scale mixture's second component's scale at the start
MIXTURE_WEIGHT_INIT = 0.05  # and its weight (the first is N(0, I) at the start)
MIXTURE_SPEED = 3.0  # log-scales and logits are this times parameters, as DF_SPEED
_GRID = np.linspace(-10.0, 10.0, 2049)  # base values where the radius is tabulated


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last axis."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class NormalLatent(nn.Module):
    """The standard normal latent N(0, I)."""

    extra = 0
    """Base columns per draw beyond the parameters'."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) per row."""
        return standard_normal_log_prob(z)

    def from_normal(self, z: torch.Tensor) -> torch.Tensor:
        """Latent draws from standard normal base values: the values themselves."""
        return z


class StudentTLatent(nn.Module):
    r"""A multivariate Student-t latent whose degrees of freedom are learned.

    :math:`z = g \sqrt{\nu / w}` with :math:`g \sim N(0, I)` and an independent
    :math:`w \sim \chi^2_\nu`. Its heavier tails let an affine flow reach posteriors with
    heavy tails, several modes or a sharp peak in a wide base (mixtures), and they bound
    the pull of pairs far out in the tails during training; the degrees of freedom
    :math:`\nu`, trained with the networks from ``df``, grow where the posterior is
    Gaussian (towards the normal latent, the limit :math:`\nu \to \infty`).

    Parameters
    ----------
    df : float
        Degrees of freedom at the start.
    speed : float
        :math:`\log(\nu - \nu_{min})` is ``speed`` times the parameter, so that Adam
        moves it ``speed`` times as fast as the network weights.
    """

    extra = 1

    def __init__(self, df: float = DF_INIT, speed: float = DF_SPEED) -> None:
        super().__init__()
        self.speed = speed
        self.log_df = nn.Parameter(torch.tensor(math.log(df - DF_MIN) / speed))

    def df(self) -> torch.Tensor:
        """The degrees of freedom :math:`\\nu`."""
        return DF_MIN + torch.exp(self.speed * self.log_df)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log t_nu(z; 0, I) per row."""
        d, nu = z.shape[-1], self.df()
        return (torch.lgamma((nu + d) / 2) - torch.lgamma(nu / 2)
                - d / 2 * torch.log(nu * math.pi)
                - (nu + d) / 2 * torch.log1p((z * z).sum(-1) / nu))

    @torch.no_grad()
    def from_normal(self, z: torch.Tensor) -> torch.Tensor:
        """Latent draws from standard normal base values ``z`` (..., d + 1): the first
        ``d`` columns are ``g``; the last gives ``w`` through the normal and chi-square
        quantiles (tabulated for this ``nu`` and interpolated: relative error < 1e-5)."""
        g, e = z[..., :-1], z[..., -1:]
        nu = float(self.df())
        table = _log_chi2_quantiles(nu).to(e.device)
        at = (e.double().clamp(_GRID[0], _GRID[-1]) - _GRID[0]) / (_GRID[1] - _GRID[0])
        i = at.floor().clamp(max=len(_GRID) - 2)
        j = i.long()
        log_w = torch.lerp(table[j], table[j + 1], at - i)
        return g * torch.exp(0.5 * (math.log(nu) - log_w)).to(g.dtype)


class ScaleMixtureLatent(nn.Module):
    r"""A mixture of two centred isotropic normals whose scales and weights are learned.

    :math:`p(z) = w_0 N(z; 0, s_0^2 I) + w_1 N(z; 0, s_1^2 I)`. A sharp peak on a wide
    base, as in posteriors that mix a precise and a vague reading of the data, is what
    this latent holds by itself, where an affine flow from a normal latent can only
    approximate it. It starts close to the normal latent (:math:`s_0 = 1`,
    :math:`s_1` = ``scale``, :math:`w_1` = ``weight``), and where the posterior is
    Gaussian the second component stays small.

    Parameters
    ----------
    scale : float
        Scale :math:`s_1` of the second component at the start.
    weight : float
        Its weight :math:`w_1` at the start, in (0, 1).
    speed : float
        Log-scales and weight logits are ``speed`` times their parameters, so that Adam
        moves them ``speed`` times as fast as the network weights.
    """

    extra = 1

    def __init__(self, scale: float = MIXTURE_SCALE_INIT, weight: float = MIXTURE_WEIGHT_INIT,
                 speed: float = MIXTURE_SPEED) -> None:
        super().__init__()
        self.speed = speed
        self.log_scales = nn.Parameter(torch.tensor([0.0, math.log(scale)]) / speed)
        self.logits = nn.Parameter(torch.tensor([0.0, math.log(weight / (1 - weight))]) / speed)

    def _log_scales(self) -> torch.Tensor:
        return self.speed * self.log_scales

    def _log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.speed * self.logits, 0)

    def scales(self) -> torch.Tensor:
        """The components' scales :math:`(s_0, s_1)`."""
        return torch.exp(self._log_scales())

    def weights(self) -> torch.Tensor:
        """The components' weights :math:`(w_0, w_1)`."""
        return torch.exp(self._log_weights())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row."""
        d = z.shape[-1]
        log_s, log_w = self._log_scales(), self._log_weights()
        r2 = (z * z).sum(-1, keepdim=True)
        terms = log_w - d * log_s - 0.5 * r2 * torch.exp(-2 * log_s)
        return torch.logsumexp(terms, -1) - 0.5 * d * math.log(2 * math.pi)

    @torch.no_grad()
    def from_normal(self, z: torch.Tensor) -> torch.Tensor:
        """Latent draws from standard normal base values ``z`` (..., d + 1): the first
        ``d`` columns are scaled by the component that the last one picks (the second
        where its normal probability falls below :math:`w_1`)."""
        g, e = z[..., :-1], z[..., -1:]
        s = self.scales().to(g.dtype)
        second = torch.special.ndtr(e) < self.weights()[1]
        return g * torch.where(second, s[1], s[0])


@lru_cache(maxsize=8)
def _log_chi2_quantiles(nu: float) -> torch.Tensor:
    """log of the chi-square(nu) quantiles at the normal probabilities of ``_GRID``,
    each tail from its own side (no 1 - p rounding); kept for the last few ``nu``, as
    draws come in chunks (shared between calls: not to be written to)."""
    a = nu / 2
    lower = 2 * special.gammaincinv(a, special.ndtr(np.minimum(_GRID, 0)))
    upper = 2 * special.gammainccinv(a, special.ndtr(-np.maximum(_GRID, 0)))
    return torch.from_numpy(np.log(np.where(_GRID < 0, lower, upper)))


def make_latent(kind: str) -> nn.Module:
    """The latent distribution named ``kind``: one of :data:`LATENTS`."""
    if kind == "normal":
        return NormalLatent()
    if kind == "student_t":
        return StudentTLatent()
    if kind == "scale_mixture":
        return ScaleMixtureLatent()
    raise ValueError(f"latent must be one of {LATENTS}, got {kind!r}")
