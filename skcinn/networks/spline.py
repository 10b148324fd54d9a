"""Monotone rational-quadratic splines (Durkan et al., 2019) with identity tails."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
# MIN_DERIVATIVE + softplus(0 + _SHIFT) == 1: zero parameters give the identity
_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _knots(raw: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes and knot positions on [-bound, bound] from unnormalised logits."""
    bins = raw.shape[-1]
    size = MIN_BIN + (1.0 - MIN_BIN * bins) * torch.softmax(raw, dim=-1)
    inner = torch.cumsum(size[..., :-1], dim=-1) * (2 * bound) - bound
    knots = F.pad(F.pad(inner, (1, 0), value=-bound), (0, 1), value=bound)
    return knots[..., 1:] - knots[..., :-1], knots


def _gather(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(t, -1, index).squeeze(-1)


def rational_quadratic_spline(
    x: torch.Tensor, params: torch.Tensor, bound: float = 5.0, inverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Apply a monotone rational-quadratic spline elementwise.

    Inside :math:`[-B, B]` the map is a spline with ``K`` bins whose widths, heights and
    interior knot derivatives come from ``params``; outside it is the identity, with
    derivative 1 at both ends, so the map is a smooth bijection of :math:`\mathbb{R}`.

    Parameters
    ----------
    x : Tensor of shape (..., d)
        Inputs (outputs of the forward map when ``inverse=True``).
    params : Tensor of shape (..., d, 3K - 1)
        Unnormalised widths (K), heights (K) and interior derivatives (K - 1).
    bound : float
        Half-width ``B`` of the spline's domain.
    inverse : bool
        Evaluate the inverse map.

    Returns
    -------
    y : Tensor of shape (..., d)
    ladj : Tensor of shape (...)
        log|det J| of the map that was applied, summed over the last axis.
    """
    bins = (params.shape[-1] + 1) // 3
    w_raw, h_raw, d_raw = params[..., :bins], params[..., bins : 2 * bins], params[..., 2 * bins :]
    widths, xk = _knots(w_raw, bound)
    heights, yk = _knots(h_raw, bound)
    deriv = MIN_DERIVATIVE + F.softplus(d_raw + _SHIFT)
    ones = torch.ones_like(deriv[..., :1])
    deriv = torch.cat([ones, deriv, ones], dim=-1)

    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound).unsqueeze(-1)
    edges = yk if inverse else xk
    index = (torch.searchsorted(edges.detach().contiguous(), xc.detach().contiguous()) - 1)
    index = index.clamp(0, bins - 1)

    w, x0 = _gather(widths, index), _gather(xk, index)
    h, y0 = _gather(heights, index), _gather(yk, index)
    d0, d1 = _gather(deriv, index), _gather(deriv, index + 1)
    slope = h / w
    xc = xc.squeeze(-1)
    if inverse:
        dy = xc - y0
        gap = d1 + d0 - 2 * slope
        a = h * (slope - d0) + dy * gap
        b = h * d0 - dy * gap
        c = -slope * dy
        xi = (2 * c) / (-b - torch.sqrt((b * b - 4 * a * c).clamp(min=0)))
        out = x0 + xi * w
    else:
        xi = (xc - x0) / w
        out = y0 + h * (slope * xi**2 + d0 * xi * (1 - xi)) / (
            slope + (d1 + d0 - 2 * slope) * xi * (1 - xi)
        )
    one_minus = 1 - xi
    denom = slope + (d1 + d0 - 2 * slope) * xi * one_minus
    grad = slope**2 * (d1 * xi**2 + 2 * slope * xi * one_minus + d0 * one_minus**2) / denom**2
    logabsdet = torch.where(inside, torch.log(grad), torch.zeros_like(grad))
    out = torch.where(inside, out, x)
    sign = -1.0 if inverse else 1.0
    return out, sign * logabsdet.sum(-1)
