"""Summary networks: learned, fixed-size embeddings of whole data sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .mlp import MLP


class DeepSet(nn.Module):
    r"""A permutation-invariant summary of an i.i.d. data set (Zaheer et al., 2017).

    Each member is embedded by :math:`\phi`, the embeddings are averaged over the real
    members only (masked mean), and :math:`\rho` maps the average, together with the log
    of the set size, to the summary. The log set size is also appended to the output,
    because the width of a posterior depends on how many observations it rests on.

    Parameters
    ----------
    in_features : int
        Features per set member.
    summary_dim : int
        Size of the learned summary; the output has ``summary_dim + 1`` features.
    hidden : sequence of int
        Hidden widths of :math:`\phi` and :math:`\rho`.

    Attributes
    ----------
    out_features : int
        Size of the summary vector, ``summary_dim + 1``.
    """

    def __init__(self, in_features: int, summary_dim: int = 16, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        hidden = tuple(hidden)
        self.phi = MLP(in_features, hidden[-1], hidden[:-1], final_activation=True)
        self.rho = MLP(hidden[-1] + 1, summary_dim, hidden)
        self.out_features = summary_dim + 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Summarise ``x`` of shape (batch, n_obs, features) with a (batch, n_obs) mask."""
        h = self.phi(x)
        if mask is None:
            pooled = h.mean(dim=1)
            n = h.new_full((h.shape[0], 1), float(h.shape[1]))
        else:
            m = mask.to(h.dtype).unsqueeze(-1)
            n = m.sum(dim=1)
            pooled = (h * m).sum(dim=1) / n.clamp(min=1.0)
        log_n = torch.log(n.clamp(min=1.0))
        return torch.cat([self.rho(torch.cat([pooled, log_n], dim=-1)), log_n], dim=-1)


def make_summary_network(
    kind: str | None, in_features: int, summary_dim: int, hidden: Sequence[int]
) -> nn.Module | None:
    """The summary network named ``kind`` (``None`` for flat features)."""
    if kind is None:
        return None
    if kind == "deepset":
        return DeepSet(in_features, summary_dim, hidden)
    raise ValueError(f"Unknown summary network {kind!r}; expected 'deepset' or None.")
