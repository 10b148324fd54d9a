"""Order-dependent summaries of time series: recurrent and temporal-convolution networks.

Series are padded at the end of the time axis; a (batch, n_obs) bool mask marks the real
steps. Neither network lets padding change the summary of a series, and both append
log(series length) as the last output feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .attention import log_count, zero_padding
from .mlp import MLP

RNN_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _flip_index(n: torch.Tensor, n_obs: int) -> torch.Tensor:
    """Time index reversing each series' first ``n`` steps, padding left in place.

    Parameters
    ----------
    n : Tensor, shape (batch,)
        Real steps of each series.
    n_obs : int
        Padded length.

    Returns
    -------
    LongTensor, shape (batch, n_obs)
        ``n - 1 - t`` for real steps ``t < n``, ``t`` for padding; its own inverse.
    """
    t = torch.arange(n_obs, device=n.device)
    n = n.unsqueeze(1)
    return torch.where(t < n, n - 1 - t, t)


def _take_steps(h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``h`` (batch, n_obs, k) reordered along time by ``index`` (batch, n_obs)."""
    return h.gather(1, index.unsqueeze(-1).expand_as(h))


class RecurrentSummary(nn.Module):
    """A recurrent (GRU or LSTM) summary of a time series.

    The forward direction runs over the padded batch; as a recurrence only looks back,
    its output at a series' last real step is that series' final hidden state, untouched
    by the padding after it. The backward direction (when bidirectional) runs over each
    series reversed within its own length, so it too meets the padding only after the
    real steps. The final hidden states of the top layer and the mean of its outputs over
    the real steps (a direct path from every step to the loss) go, with the log series
    length, through a small MLP to the summary; the log length is also appended to the
    output.

    This gives the same result as ``pack_padded_sequence``, which is not used because
    on the CPU its GRU backward pass grows quadratically with the series length (see
    benchmarks/README.md); padded steps are computed and discarded instead.

    Parameters
    ----------
    in_features : int
        Features per time step.
    summary_dim : int
        Size of the learned summary; the output has ``summary_dim + 1`` features.
    hidden : sequence of int
        Hidden size of each recurrent layer (of each direction).
    cell : {"gru", "lstm"}
        The recurrent cell.
    bidirectional : bool
        Also read each series backwards, from its last real step.

    Attributes
    ----------
    out_features : int
        Size of the summary vector, ``summary_dim + 1``.
    """

    def __init__(
        self,
        in_features: int,
        summary_dim: int = 16,
        hidden: Sequence[int] = (64,),
        cell: str = "gru",
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if cell not in RNN_CELLS:
            raise ValueError(f"Unknown recurrent cell {cell!r}; expected {tuple(RNN_CELLS)}.")
        if not hidden:
            raise ValueError("A recurrent summary needs at least one layer.")
        self.n_dirs = 2 if bidirectional else 1
        layers = []
        width = in_features
        for size in hidden:
            layers.append(nn.ModuleList(
                RNN_CELLS[cell](width, size, batch_first=True) for _ in range(self.n_dirs)
            ))
            width = size * self.n_dirs
        self.layers = nn.ModuleList(layers)
        self.rho = MLP(2 * width + 1, summary_dim, (hidden[-1],))
        self.out_features = summary_dim + 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Summarise ``x`` (batch, n_obs, features) with a (batch, n_obs) mask.

        Returns
        -------
        Tensor, shape (batch, summary_dim + 1)
            The summary, log(series length) as the last column.
        """
        log_n = log_count(x, mask)
        batch, n_obs = x.shape[:2]
        if mask is None:
            n = torch.full((batch,), n_obs, dtype=torch.long, device=x.device)
        else:
            n = mask.sum(dim=1)
        flip = _flip_index(n, n_obs) if self.n_dirs == 2 else None
        h = zero_padding(x, mask)
        for layer in self.layers:
            out = [layer[0](h)[0]]
            if flip is not None:
                out.append(_take_steps(layer[1](_take_steps(h, flip))[0], flip))
            h = torch.cat(out, dim=-1)
        last = out[0][torch.arange(batch, device=x.device), n - 1]
        if flip is not None:  # the backward direction ends at the first step
            last = torch.cat([last, out[1][:, 0]], dim=-1)
        mean = zero_padding(h, mask).sum(dim=1) / n.unsqueeze(1).to(h.dtype)
        return torch.cat([self.rho(torch.cat([last, mean, log_n], dim=-1)), log_n], dim=-1)


class _CausalConv(nn.Module):
    """A dilated 1-D convolution padded on the left only, with a residual connection."""

    def __init__(self, in_dim: int, dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.left = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(in_dim, dim, kernel_size, dilation=dilation)
        self.skip = nn.Conv1d(in_dim, dim, 1) if in_dim != dim else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` (batch, in_dim, n_obs) to (batch, dim, n_obs); step t sees steps <= t."""
        y = self.conv(nn.functional.pad(h, (self.left, 0)))
        return self.skip(h) + nn.functional.silu(y)


class TemporalConvSummary(nn.Module):
    """A temporal convolutional network (TCN) summary of a time series.

    Stacked causal convolutions with dilations 1, 2, 4, ... (one layer per entry of
    ``hidden``) see only past and present steps, so outputs at real steps never see the
    padding at the end. The outputs are pooled by their mean over real steps and by
    their values at each series' last real step; an MLP maps both, with the log series
    length, to the summary, and the log length is appended to the output.

    Parameters
    ----------
    in_features : int
        Features per time step.
    summary_dim : int
        Size of the learned summary; the output has ``summary_dim + 1`` features.
    hidden : sequence of int
        Channels of each convolution layer.
    kernel_size : int
        Width of each convolution kernel; the receptive field is
        ``1 + (kernel_size - 1) * (2 ** len(hidden) - 1)`` steps.

    Attributes
    ----------
    out_features : int
        Size of the summary vector, ``summary_dim + 1``.
    """

    def __init__(
        self,
        in_features: int,
        summary_dim: int = 16,
        hidden: Sequence[int] = (32, 32),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("A temporal convolutional summary needs at least one layer.")
        widths = zip((in_features,) + hidden[:-1], hidden, strict=True)
        self.convs = nn.Sequential(*(
            _CausalConv(before, width, kernel_size, 2**i)
            for i, (before, width) in enumerate(widths)
        ))
        self.rho = MLP(2 * hidden[-1] + 1, summary_dim, (hidden[-1],))
        self.out_features = summary_dim + 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Summarise ``x`` (batch, n_obs, features) with a (batch, n_obs) mask.

        Returns
        -------
        Tensor, shape (batch, summary_dim + 1)
            The summary, log(series length) as the last column.
        """
        log_n = log_count(x, mask)
        h = self.convs(zero_padding(x, mask).transpose(1, 2)).transpose(1, 2)
        if mask is None:
            mean, last = h.mean(dim=1), h[:, -1]
        else:
            m = mask.unsqueeze(-1)
            n = mask.sum(dim=1, keepdim=True).clamp(min=1)
            mean = torch.where(m, h, h.new_zeros(())).sum(dim=1) / n
            last = h[torch.arange(h.shape[0], device=h.device), n.squeeze(1) - 1]
        return torch.cat([self.rho(torch.cat([mean, last, log_n], dim=-1)), log_n], dim=-1)
