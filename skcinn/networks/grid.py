"""A convolutional summary of data on a regular 2-D grid (images, spatial fields)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvSummary2D(nn.Module):
    """A small CNN summary of a grid: conv-activation-pool blocks, then global pooling.

    Each entry of ``hidden`` adds a block ``Conv2d (same padding) -> SiLU -> MaxPool2d``
    that halves the height and width (rounding up, so small grids never vanish). Global
    average pooling over the remaining grid and a linear layer give the summary. Grids
    all have the same shape, so nothing is appended and ``mask`` is ignored.

    Parameters
    ----------
    in_channels : int
        Channels of each grid.
    summary_dim : int
        Size of the summary (the output size).
    hidden : sequence of int
        Channels of each convolution block.
    kernel_size : int
        Odd width of the square convolution kernels.

    Attributes
    ----------
    out_features : int
        Size of the summary vector, ``summary_dim``.
    """

    def __init__(
        self,
        in_channels: int,
        summary_dim: int = 16,
        hidden: Sequence[int] = (16, 32),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("A convolutional summary needs at least one block.")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        layers: list[nn.Module] = []
        for before, width in zip((in_channels,) + hidden[:-1], hidden, strict=True):
            layers += [
                nn.Conv2d(before, width, kernel_size, padding=kernel_size // 2),
                nn.SiLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(hidden[-1], summary_dim)
        self.in_channels = in_channels
        self.out_features = summary_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Summarise grids ``x`` of shape (batch, channels, height, width).

        A (batch, height, width) ``x`` is read as one channel when ``in_channels`` is 1.
        ``mask`` is accepted for a common interface and ignored.

        Returns
        -------
        Tensor, shape (batch, summary_dim)
        """
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        return self.out(self.features(x).mean(dim=(-2, -1)))
