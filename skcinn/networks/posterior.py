"""The amortized posterior network: a summary network feeding an invertible network."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from .coupling import InvertibleNetwork
from .summary import make_summary_network


class PosteriorNetwork(nn.Module):
    """``q(theta | x)``: embed ``x`` with ``summary`` (or use it as is), then a cINN.

    Both parts are trained together by maximising ``log q(theta | x)``; parameters and
    data are in the standardised space handled by the caller.

    Parameters
    ----------
    flow : InvertibleNetwork
        The conditional invertible network on the parameters.
    summary : nn.Module or None
        Maps ``(x, mask)`` to a (batch, k) condition; ``None`` uses flat ``x`` directly.
    """

    def __init__(self, flow: InvertibleNetwork, summary: nn.Module | None = None) -> None:
        super().__init__()
        self.flow = flow
        self.summary = summary

    def condition(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The condition vector of each data set, shape (batch, k)."""
        if self.summary is None:
            return x
        return self.summary(x, mask)

    def log_prob(
        self, theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log q(theta_i | x_i) for each row, shape (batch,)."""
        return self.flow.log_prob(theta, self.condition(x, mask))

    def sample(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws from standard normal base values ``z`` (n, s, ``flow.latent_width()``)
        and conditions ``c`` (n, k).

        Returns the draws and their log densities, each condition computed once and
        broadcast over its ``s`` draws.
        """
        z = self.flow.latent.from_normal(z)
        theta, ladj = self.flow.inverse(z, c.unsqueeze(1))
        return theta, self.flow.latent.log_prob(z) - ladj

    def draw(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Draws only, as :meth:`sample` without their log densities (cheaper)."""
        z = self.flow.latent.from_normal(z)
        return self.flow.inverse(z, c.unsqueeze(1), log_det=False)[0]


class ModuleSummary(nn.Module):
    """A user's summary network: any module mapping a batch of data sets to (batch, k).

    The module is called as ``module(x, mask)`` when its ``forward`` takes two arguments
    (ragged data), else as ``module(x)``.

    Parameters
    ----------
    module : nn.Module
        The user's network (trained jointly with the flow).
    out_features : int
        Its output size ``k`` (found by the caller with :func:`summary_size`).
    """

    def __init__(self, module: nn.Module, out_features: int) -> None:
        super().__init__()
        self.module = module
        self.out_features = out_features
        params = inspect.signature(module.forward).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.takes_mask = len(positional) >= 2

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.module(x, mask) if self.takes_mask else self.module(x)


@torch.no_grad()
def summary_size(
    module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None
) -> int:
    """Output size of a user's summary network, from one forward pass on ``x``."""
    out = ModuleSummary(module, 0)(x, mask)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"The summary network maps a batch of {x.shape[0]} data sets to shape "
            f"{tuple(out.shape)}; it must return (batch, k)."
        )
    return int(out.shape[1])


def build_posterior_network(config: dict) -> PosteriorNetwork:
    """The posterior network described by a ``config`` (also used when loading).

    Keys: ``n_params``, ``n_features``, ``summary`` (a name, None, or a user module),
    ``summary_out`` (a user module's output size), ``summary_dim``, ``summary_hidden``,
    ``n_blocks``, ``coupling``, ``hidden``, ``seed``, ``bins`` and ``latent`` (absent in
    models saved before it existed: ``"normal"``).
    """
    if isinstance(config["summary"], nn.Module):
        summary = ModuleSummary(copy.deepcopy(config["summary"]), config["summary_out"])
    else:
        summary = make_summary_network(
            config["summary"], config["n_features"], config["summary_dim"],
            config["summary_hidden"],
        )
    context = config["n_features"] if summary is None else summary.out_features
    flow = InvertibleNetwork(
        config["n_params"], context, config["n_blocks"], config["coupling"],
        config["hidden"], config["seed"], config["bins"], config.get("latent", "normal"),
    )
    return PosteriorNetwork(flow, summary)
