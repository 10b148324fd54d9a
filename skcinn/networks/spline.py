"""Monotone rational-quadratic splines (Durkan et al., 2019) with identity tails."""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable
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


def _spline(x: torch.Tensor, params: torch.Tensor, bound: float, inverse: bool,
            log_det: bool) -> tuple[torch.Tensor, torch.Tensor | None, tuple | None]:
    """The spline's value and log-determinant, and the pieces :class:`_ForwardSpline`'s
    gradient needs (``None`` without ``log_det``).

    Written for few operators: at training's batch sizes a call's cost on the CPU is
    mostly per operator (benchmarks/README.md, "Changes made for these targets").
    """
    bins = (params.shape[-1] + 1) // 3
    w_raw, h_raw, d_raw = params.split((bins, bins, bins - 1), dim=-1)
    w_share, h_share = _softmax(w_raw), _softmax(h_raw)
    scale, least = (1.0 - MIN_BIN * bins) * 2 * bound, MIN_BIN * 2 * bound
    widths, heights = w_share * scale + least, h_share * scale + least
    # the bins' right knots, shifted by ``bound``
    x_ends, y_ends = torch.cumsum(widths, dim=-1), torch.cumsum(heights, dim=-1)
    # derivative 1 at both ends, matching the identity tails
    shifted = d_raw + _SHIFT
    deriv = F.pad(F.softplus(shifted) + MIN_DERIVATIVE, (1, 1), value=1.0)

    inside = x.abs() < bound
    xc = x.clamp(-bound, bound)
    # the bin: how many interior knots lie below (cheaper than searchsorted on rows
    # this short, and no contiguous copy of the knots)
    ends = y_ends if inverse else x_ends
    index = (ends[..., :-1] < (xc + bound).unsqueeze(-1)).sum(-1, keepdim=True)
    w = torch.gather(widths, -1, index).squeeze(-1)
    h = torch.gather(heights, -1, index).squeeze(-1)
    x0 = torch.gather(x_ends, -1, index).squeeze(-1) - w - bound
    y0 = torch.gather(y_ends, -1, index).squeeze(-1) - h - bound
    d01 = torch.gather(deriv, -1, torch.cat([index, index + 1], -1))
    d0, d1 = d01.unbind(-1)
    slope = h / w
    gap = torch.add(d01.sum(-1), slope, alpha=-2)
    if inverse:  # solve the quadratic for the position xi within the bin
        # a xi^2 + b xi + c = 0 with c = -slope dy, by the root that is stable here
        dy = xc - y0
        qa = torch.addcmul(h * (slope - d0), dy, gap)
        qb = torch.addcmul(h * d0, dy, gap, value=-1)
        slope_dy = slope * dy  # = -c
        root = torch.sqrt(torch.addcmul(qb * qb, qa, slope_dy, value=4).clamp(min=0))
        xi = (slope_dy + slope_dy) / (qb + root)
        out = torch.addcmul(x0, xi, w)
        if not log_det:  # draws: nothing more to compute
            return torch.where(inside, out, x), None, None
    else:
        xi = (xc - x0) / w
    one_minus = 1 - xi
    mixed = xi * one_minus
    denom = torch.addcmul(slope, gap, mixed)
    xi2 = xi * xi
    ratio = None
    if not inverse:
        ratio = torch.addcmul(slope * xi2, d0, mixed) / denom
        out = torch.addcmul(y0, h, ratio)
    out = torch.where(inside, out, x)
    if not log_det:
        return out, None, None
    lower2 = one_minus * one_minus
    numer = torch.addcmul(torch.addcmul(d1 * xi2, d0, lower2), slope, mixed, value=2)
    grad = (slope / denom) ** 2 * numer
    logabsdet = torch.where(inside, torch.log(grad), 0.0).sum(-1)
    pieces = (index, inside, w_share, h_share, shifted, w, h, d0, d1, xi, one_minus, mixed,
              xi2, lower2, slope, gap, denom, numer, grad, ratio)
    return out, -logabsdet if inverse else logabsdet, pieces


class _ForwardSpline(torch.autograd.Function):
    """The forward map with its log-determinant, differentiated by hand.

    Autograd through :func:`_spline` runs ~300 small operators backward per call, this
    gradient ~140: spline-coupling fits take ~25 % less CPU time.
    Within a bin, ``out = y0 + h * ratio`` with ``ratio = (slope xi^2 + d0 mixed) /
    denom``, ``mixed = xi (1 - xi)``, ``denom = slope + gap mixed``, ``gap = d0 + d1 - 2
    slope``, ``slope = h / w``, ``xi = (x - x0) / w``; ``ladj = log(slope^2 numer /
    denom^2)`` with ``numer = d1 xi^2 + 2 slope mixed + d0 (1 - xi)^2``. Their partial
    derivatives, chained back through the gathers, the knots' cumulative sums, the
    softmax of the widths and heights and the softplus of the derivatives, give the
    gradient with respect to ``x`` and ``params``.
    """

    @staticmethod
    def forward(ctx, x, params, bound):
        out, ladj, pieces = _spline(x, params, bound, False, True)
        ctx.bound = bound
        ctx.save_for_backward(*pieces)
        return out, ladj

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_ladj):
        (index, inside, w_share, h_share, shifted, w, h, d0, d1, xi, one_minus, mixed, xi2,
         lower2, slope, gap, denom, numer, grad, ratio) = ctx.saved_tensors
        bins = w_share.shape[-1]
        g_y = torch.where(inside, g_out, 0.0)
        g_l = torch.where(inside, g_ladj.unsqueeze(-1), 0.0)
        # out = y0 + h * ratio(xi, slope, d0, d1), ladj = log(slope^2 numer / denom^2):
        # the gradient with respect to xi, the slope h / w, d0 and d1 within the bin
        common = g_y * h / denom
        l_num = g_l / numer
        l_den = g_l / denom
        edge = one_minus - xi  # d mixed / d xi
        flat = torch.add(torch.ones_like(mixed), mixed, alpha=-2)  # d denom / d slope
        g_xi = torch.add(
            g_y * w * grad,
            l_num * torch.addcmul(torch.addcmul(d1 * xi, slope, edge), d0, one_minus,
                                  value=-1) - l_den * gap * edge,
            alpha=2)
        g_slope = torch.add(common * (xi2 - ratio * flat),
                            torch.addcmul(torch.addcmul(g_l / slope, l_num, mixed),
                                          l_den, flat, value=-1),
                            alpha=2)
        cm = common * mixed
        twice = mixed * l_den
        g_d0 = torch.add(torch.addcmul(torch.addcmul(cm, cm, ratio, value=-1), l_num, lower2),
                         twice, alpha=-2)
        g_d1 = torch.add(torch.addcmul(l_num * xi2, cm, ratio, value=-1), twice, alpha=-2)
        # xi = (x - x0) / w, slope = h / w
        g_x = g_xi / w  # = -d/dx0
        per_w = g_slope / w
        g_h = torch.addcmul(per_w, g_y, ratio)
        g_w = -torch.addcmul(g_x * xi, per_w, slope)
        # back to the tables: a bin's size enters its own width (height) and every
        # later knot; the sizes are an affine map of the softmax shares
        positions = torch.arange(bins, device=index.device)
        at_bin, below = positions == index, positions < index
        scale = (1.0 - MIN_BIN * bins) * 2 * ctx.bound
        g_w_size = torch.addcmul(at_bin * g_w.unsqueeze(-1), below, g_x.unsqueeze(-1), value=-1)
        g_h_size = torch.addcmul(at_bin * g_h.unsqueeze(-1), below, g_y.unsqueeze(-1))
        g_w_raw = w_share * (g_w_size - (g_w_size * w_share).sum(-1, keepdim=True))
        g_h_raw = h_share * (g_h_size - (g_h_size * h_share).sum(-1, keepdim=True))
        # interior derivative j (1..K-1) is d0 of bin j and d1 of bin j - 1
        g_deriv = (at_bin[..., 1:] * g_d0.unsqueeze(-1)
                   + at_bin[..., :-1] * g_d1.unsqueeze(-1)) * torch.sigmoid(shifted)
        g_x = torch.where(inside, g_x, g_out)
        return g_x, torch.cat([g_w_raw * scale, g_h_raw * scale, g_deriv], dim=-1), None


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
    if not inverse and log_det and torch.is_grad_enabled():  # training: the hand-made gradient
        return _ForwardSpline.apply(x, params, bound)
    return _spline(x, params, bound, inverse, log_det)[:2]
