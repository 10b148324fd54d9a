"""Multi-layer perceptrons, plain and conditioned on a context vector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _stack(in_features: int, hidden: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Linear + activation layers after the first one; returns (layers, width out)."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.SiLU()]
        width = size
    return nn.Sequential(*layers), width


class MLP(nn.Module):
    """A fully connected network ``in_features -> hidden... -> out_features``.

    Parameters
    ----------
    in_features, out_features : int
        Input and output sizes.
    hidden : sequence of int
        Widths of the hidden layers (SiLU activations).
    final_activation : bool
        Apply the activation after the output layer too.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        final_activation: bool = False,
    ) -> None:
        super().__init__()
        trunk, width = _stack(in_features, hidden)
        self.net = nn.Sequential(*trunk, nn.Linear(width, out_features))
        if final_activation:
            self.net.append(nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConditionalMLP(nn.Module):
    r"""An MLP on ``[x, c]`` whose first layer splits into ``W_x x + (W_c c + b)``.

    The context term is computed at the context's own batch shape and broadcast, so a
    context of shape ``(n, 1, k)`` serves ``(n, s, d)`` inputs without being repeated
    ``s`` times: sampling many draws per data set projects each condition only once.
    The output layer starts at zero, so a coupling block starts as the identity.

    Parameters
    ----------
    in_features : int
        Size of ``x`` (may be 0: the output then depends on ``c`` alone).
    context_features : int
        Size of ``c`` (may be 0: an unconditioned network).
    out_features : int
        Output size.
    hidden : sequence of int
        Hidden widths; at least one layer.
    """

    def __init__(
        self,
        in_features: int,
        context_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
    ) -> None:
        super().__init__()
        if len(hidden) == 0:
            raise ValueError("A conditional MLP needs at least one hidden layer.")
        first = hidden[0]
        self.x_layer = nn.Linear(in_features, first, bias=False) if in_features else None
        self.c_layer = nn.Linear(context_features, first, bias=False) if context_features else None
        self.bias = nn.Parameter(torch.zeros(first))
        trunk, width = _stack(first, hidden[1:])
        self.trunk = trunk
        self.out = nn.Linear(width, out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bias  # context term first: it is small (one row per data set)
        if self.c_layer is not None and c is not None:
            h = self.c_layer(c) + h
        if self.x_layer is not None:
            h = self.x_layer(x) + h
        h = h.expand(*x.shape[:-1], h.shape[-1])
        return self.out(self.trunk(nn.functional.silu(h)))
