"""Monotone rational-quadratic splines (Durkan et al., 2019) with identity tails."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
# MIN_DERIVATIVE + softplus(0 + _SHIFT) == 1: zero parameters give the identity
_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _softmax(raw: torch.Tensor) -> torch.Tensor:
    """Softmax over the (short) last axis: 5x faster on the CPU than ``torch.softmax``
    for 8 bins. The shift is detached: softmax does not depend on it."""
    e = torch.exp(raw - raw.amax(dim=-1, keepdim=True).detach())
    return e / e.sum(dim=-1, keepdim=True)


def _knots(raw: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes and the K + 1 knot positions on [-bound, bound] from unnormalised logits."""
    bins = raw.shape[-1]
    size = (MIN_BIN + (1.0 - MIN_BIN * bins) * _softmax(raw)) * (2 * bound)
    knots = F.pad(torch.cumsum(size, dim=-1), (1, 0)) - bound
    return size, knots


def rational_quadratic_spline(
    x: torch.Tensor, params: torch.Tensor, bound: float = 5.0, inverse: bool = False,
    log_det: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
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
    log_det : bool
        Compute ``ladj``; without it (draws only) the call skips that work and returns
        ``None`` in its place.

    Returns
    -------
    y : Tensor of shape (..., d)
    ladj : Tensor of shape (...) or None
        log|det J| of the map that was applied, summed over the last axis.
    """
    bins = (params.shape[-1] + 1) // 3
    w_raw, h_raw, d_raw = params.split((bins, bins, bins - 1), dim=-1)
    widths, xk = _knots(w_raw, bound)
    heights, yk = _knots(h_raw, bound)
    # derivative 1 at both ends, matching the identity tails
    deriv = F.pad(MIN_DERIVATIVE + F.softplus(d_raw + _SHIFT), (1, 1), value=1.0)

    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)
    edges = yk if inverse else xk
    index = torch.searchsorted(edges.detach(), xc.detach().unsqueeze(-1)) - 1
    index = index.clamp(0, bins - 1)

    def at(table: torch.Tensor, i: torch.Tensor = index) -> torch.Tensor:
        """Each input's entry of ``table`` (..., d, n) at its bin: (..., d)."""
        return torch.gather(table, -1, i).squeeze(-1)

    # a gather per quantity from its own table: faster than stacking six tables first
    # (which copies them all) and one gather, forward and backward (benchmarks/README.md)
    w, h, d0, d1 = at(widths), at(heights), at(deriv), at(deriv, index + 1)
    x0, y0 = at(xk), at(yk)
    slope = h / w
    gap = d1 + d0 - 2 * slope
    if inverse:  # solve the quadratic for the position xi within the bin
        dy = xc - y0
        qa = h * (slope - d0) + dy * gap
        qb = h * d0 - dy * gap
        qc = -slope * dy
        xi = (2 * qc) / (-qb - torch.sqrt((qb * qb - 4 * qa * qc).clamp(min=0)))
        out = x0 + xi * w
    else:
        xi = (xc - x0) / w
    one_minus = 1 - xi
    mixed = xi * one_minus
    denom = slope + gap * mixed
    if not inverse:
        out = y0 + h * (slope * xi * xi + d0 * mixed) / denom
    out = torch.where(inside, out, x)
    if not log_det:
        return out, None
    grad = slope**2 * (d1 * xi * xi + 2 * slope * mixed + d0 * one_minus**2) / denom**2
    logabsdet = torch.where(inside, torch.log(grad), torch.zeros_like(grad))
    sign = -1.0 if inverse else 1.0
    return out, sign * logabsdet.sum(-1)
