"""Attention-based summary of an i.i.d. data set: a Set Transformer with inducing points."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .mlp import MLP


def zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` (batch, n_obs, ...) with padded entries set to zero, so garbage cannot leak."""
    if mask is None:
        return x
    return torch.where(mask.unsqueeze(-1), x, x.new_zeros(()))


def log_count(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """log(number of real observations) of each data set, shape (batch, 1).

    Parameters
    ----------
    x : Tensor, shape (batch, n_obs, ...)
        The padded data sets.
    mask : bool Tensor, shape (batch, n_obs), or None
        Real entries; ``None`` counts every position.
    """
    if mask is None:
        n = x.new_full((x.shape[0], 1), float(x.shape[1]))
    else:
        n = mask.sum(dim=1, keepdim=True).to(x.dtype)
    return torch.log(n.clamp(min=1.0))


class _AttentionBlock(nn.Module):
    """Queries attend to a key/value set, then a feed-forward layer (pre-LayerNorm).

    ``h = q + Attn(LN(q), LN(kv)); out = h + FF(LN(h))``, all of width ``dim``.
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm_h = nn.LayerNorm(dim)
        self.ff = MLP(dim, dim, (dim,))

    def forward(
        self, q: torch.Tensor, kv: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``q`` (batch, n_q, dim) attends to ``kv`` (batch, n_kv, dim), padding ``ignore``d."""
        kv = self.norm_kv(kv)
        a, _ = self.attn(self.norm_q(q), kv, kv, key_padding_mask=ignore, need_weights=False)
        h = q + a
        return h + self.ff(self.norm_h(h))


class _InducedSetAttention(nn.Module):
    """ISAB: ``m`` learned inducing points attend to the set, then the set to them.

    Both attentions cost O(n m), so the block is linear in the set size ``n``.
    """

    def __init__(self, in_dim: int, dim: int, n_heads: int, n_inducing: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.inducing = nn.Parameter(torch.randn(1, n_inducing, dim) / math.sqrt(dim))
        self.gather = _AttentionBlock(dim, n_heads)
        self.spread = _AttentionBlock(dim, n_heads)

    def forward(self, x: torch.Tensor, ignore: torch.Tensor | None) -> torch.Tensor:
        """``x`` (batch, n, in_dim) to (batch, n, dim); padded rows give (unused) values."""
        x = self.proj(x)
        h = self.gather(self.inducing.expand(x.shape[0], -1, -1), x, ignore)
        return self.spread(x, h)


class SetTransformer(nn.Module):
    r"""A permutation-invariant attention summary of an i.i.d. data set (Lee et al., 2019).

    Members are embedded linearly, pass through induced-set attention blocks (ISAB, one
    per entry of ``hidden``; cost O(n_obs * n_inducing), linear in the set size), and are
    pooled by multi-head attention from one learned seed (PMA). An MLP maps the pooled
    vector, with the log set size, to the summary; the log set size is also appended to
    the output, because the width of a posterior depends on how many observations it
    rests on.

    Padded members are excluded as attention keys (``key_padding_mask``), so padding
    never changes the result. Every data set must have at least one real member.

    Parameters
    ----------
    in_features : int
        Features per set member.
    summary_dim : int
        Size of the learned summary; the output has ``summary_dim + 1`` features.
    hidden : sequence of int
        Width of each ISAB block (each divisible by ``n_heads``); a linear map leads into
        a block wider or narrower than the one before.
    n_heads : int
        Attention heads.
    n_inducing : int
        Inducing points per ISAB block.

    Attributes
    ----------
    out_features : int
        Size of the summary vector, ``summary_dim + 1``.
    """

    def __init__(
        self,
        in_features: int,
        summary_dim: int = 16,
        hidden: Sequence[int] = (64, 64),
        n_heads: int = 4,
        n_inducing: int = 16,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or any(w % n_heads for w in hidden):
            raise ValueError(
                f"Set Transformer widths {hidden} must be non-empty multiples of n_heads={n_heads}."
            )
        self.embed = nn.Linear(in_features, hidden[0])
        self.blocks = nn.ModuleList(
            _InducedSetAttention(before, width, n_heads, n_inducing)
            for before, width in zip((hidden[0],) + hidden[:-1], hidden, strict=True)
        )
        dim = hidden[-1]
        self.seed = nn.Parameter(torch.randn(1, 1, dim) / math.sqrt(dim))
        self.pool = _AttentionBlock(dim, n_heads)
        self.norm = nn.LayerNorm(dim)
        self.rho = MLP(dim + 1, summary_dim, (dim,))
        self.out_features = summary_dim + 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Summarise ``x`` (batch, n_obs, features) with a (batch, n_obs) mask.

        Returns
        -------
        Tensor, shape (batch, summary_dim + 1)
            The summary, log(number of real members) as the last column.
        """
        log_n = log_count(x, mask)
        ignore = None if mask is None else ~mask
        h = self.embed(zero_padding(x, mask))
        for block in self.blocks:
            h = block(h, ignore)
        pooled = self.pool(self.seed.expand(h.shape[0], -1, -1), h, ignore).squeeze(1)
        return torch.cat([self.rho(torch.cat([self.norm(pooled), log_n], dim=-1)), log_n], dim=-1)
