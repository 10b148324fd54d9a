"""The amortized posterior network: a summary network feeding an invertible network."""

from __future__ import annotations

import torch
from torch import nn

from .coupling import InvertibleNetwork, standard_normal_log_prob
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
        """Draws from latents ``z`` (n, s, d) and conditions ``c`` (n, k).

        Returns the draws and their log densities, each condition computed once and
        broadcast over its ``s`` draws.
        """
        theta, ladj = self.flow.inverse(z, c.unsqueeze(1))
        return theta, standard_normal_log_prob(z) - ladj


def build_posterior_network(config: dict) -> PosteriorNetwork:
    """The posterior network described by a plain-data ``config`` (also used on load).

    Keys: ``n_params``, ``n_features``, ``summary`` (name or None), ``summary_dim``,
    ``summary_hidden``, ``n_blocks``, ``coupling``, ``hidden``, ``seed``, ``bins``.
    """
    summary = make_summary_network(
        config["summary"], config["n_features"], config["summary_dim"], config["summary_hidden"]
    )
    context = config["n_features"] if summary is None else summary.out_features
    flow = InvertibleNetwork(
        config["n_params"], context, config["n_blocks"], config["coupling"],
        config["hidden"], config["seed"], config["bins"],
    )
    return PosteriorNetwork(flow, summary)
