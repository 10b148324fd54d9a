"""Summary networks: learned, fixed-size embeddings of whole data sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .attention import SetTransformer
from .grid import ConvSummary2D
from .mlp import MLP
from .sequence import RecurrentSummary, TemporalConvSummary

MAX_MOMENT_FEATURES = 16

SUMMARY_NETWORKS = (
    "deepset", "set_transformer", "gru", "lstm", "bigru", "bilstm", "tcn", "cnn",
)
"""Names :func:`make_summary_network` builds: sets, then series, then grids."""

_RECURRENT = {"gru": ("gru", False), "lstm": ("lstm", False),
              "bigru": ("gru", True), "bilstm": ("lstm", True)}


class DeepSet(nn.Module):
    r"""A permutation-invariant summary of an i.i.d. data set (Zaheer et al., 2017).

    Each member is embedded by :math:`\phi`, the embeddings are averaged over the real
    members only (masked mean), and :math:`\rho` maps the average, together with the log
    of the set size, to the summary. The log set size is also appended to the output,
    because the width of a posterior depends on how many observations it rests on.

    Next to the learned embedding, the pool holds the members' first and (for up to
    ``MAX_MOMENT_FEATURES`` features) second raw moments: they are sufficient for many
    models and measured to speed up learning a lot (see benchmarks/README.md).

    Parameters
    ----------
    in_features : int
        Features per set member.
    summary_dim : int
        Size of the learned summary; the output has ``summary_dim + 1`` features.
    hidden : sequence of int
        Hidden widths of :math:`\phi` and :math:`\rho`.
    moments : int or None
        Raw moments pooled next to the embedding: 0, 1 or 2; ``None`` chooses 2 up to
        ``MAX_MOMENT_FEATURES`` features and 1 above.

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
        moments: int | None = None,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if moments is None:
            moments = 2 if in_features <= MAX_MOMENT_FEATURES else 1
        pairs = torch.triu_indices(in_features, in_features) if moments >= 2 else None
        self.register_buffer("pairs", pairs)
        self.moments = moments
        n_moments = (in_features if moments >= 1 else 0) + (0 if pairs is None else pairs.shape[1])
        self.phi = MLP(in_features, hidden[-1], hidden[:-1], final_activation=True)
        self.rho = MLP(hidden[-1] + n_moments + 1, summary_dim, hidden)
        self.out_features = summary_dim + 1

    def _members(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member features: the embedding phi(x), then the raw moments."""
        h = [self.phi(x)]
        if self.moments >= 1:
            h.append(x)
        if self.pairs is not None:
            h.append(x[..., self.pairs[0]] * x[..., self.pairs[1]])
        return torch.cat(h, dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Summarise ``x`` of shape (batch, n_obs, features) with a (batch, n_obs) mask.

        With a mask only the real members are embedded: they are gathered into one
        (n_real, features) block and their embeddings summed per set, so padding costs
        nothing in phi, whose pass over every member is most of a DeepSet's work.
        """
        if mask is None:
            pooled = self._members(x).mean(dim=1)
            n = x.new_full((x.shape[0], 1), float(x.shape[1]))
        else:
            owner, member = mask.nonzero(as_tuple=True)
            h = self._members(x[owner, member])
            pooled = h.new_zeros(x.shape[0], h.shape[1]).index_add_(0, owner, h)
            n = mask.sum(dim=1, keepdim=True).to(h.dtype)
            pooled = pooled / n.clamp(min=1.0)
        log_n = torch.log(n.clamp(min=1.0))
        return torch.cat([self.rho(torch.cat([pooled, log_n], dim=-1)), log_n], dim=-1)


def _attention_heads(hidden: Sequence[int], most: int = 4) -> int:
    """The most heads, up to ``most``, that divide every width in ``hidden``."""
    return max(h for h in range(1, most + 1) if all(w % h == 0 for w in hidden))


def make_summary_network(
    kind: str | None, in_features: int, summary_dim: int, hidden: Sequence[int]
) -> nn.Module | None:
    """The summary network named ``kind`` (``None`` for flat features).

    Parameters
    ----------
    kind : str or None
        One of :data:`SUMMARY_NETWORKS`: ``"deepset"`` and ``"set_transformer"`` for
        i.i.d. sets; ``"gru"``, ``"lstm"``, ``"bigru"``, ``"bilstm"`` (bidirectional) and
        ``"tcn"`` for time series; ``"cnn"`` for 2-D grids.
    in_features : int
        Features per observation (channels for ``"cnn"``).
    summary_dim : int
        Size of the learned summary.
    hidden : sequence of int
        Hidden widths (layers or blocks) of the network.

    Returns
    -------
    nn.Module or None
        A module mapping ``(x, mask)`` to (batch, ``out_features``).
    """
    hidden = tuple(hidden)
    if kind is None:
        return None
    if kind == "deepset":
        return DeepSet(in_features, summary_dim, hidden)
    if kind == "set_transformer":
        return SetTransformer(in_features, summary_dim, hidden, _attention_heads(hidden))
    if kind in _RECURRENT:
        cell, bidirectional = _RECURRENT[kind]
        return RecurrentSummary(in_features, summary_dim, hidden, cell, bidirectional)
    if kind == "tcn":
        return TemporalConvSummary(in_features, summary_dim, hidden)
    if kind == "cnn":
        return ConvSummary2D(in_features, summary_dim, hidden)
    raise ValueError(
        f"Unknown summary network {kind!r}; expected one of {SUMMARY_NETWORKS} or None."
    )
