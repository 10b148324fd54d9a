"""A model's trainable parameters as views of one flat tensor, for the length of a training.

Adam, gradient clipping and zeroing the gradients then run one operation per step on one
tensor instead of one per parameter tensor (about 70 in our networks, where fused Adam's
per-tensor step counters and launches are ~10 % of a step; benchmarks/README.md). Each
update is elementwise the same, so training gives the same weights, bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn


class FlatParameters:
    """Parameters made views of one flat tensor, their gradients views of another.

    The optimiser is given :attr:`parameter` alone; the model's own parameters read
    and write the same memory. Gradients stay allocated between steps (zeroed, never
    set to None): a parameter that gets no gradient in a step is updated by Adam from
    its moments, as with ``zero_grad(set_to_none=False)``. :meth:`release` gives every
    parameter its own storage again.

    Parameters
    ----------
    params : list of Parameter
        Dense, of one dtype and on one device (see :meth:`of`).
    """

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.sizes = [p.numel() for p in params]
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        grad = torch.zeros_like(flat)
        for p, value, g in zip(params, self.split(flat), self.split(grad), strict=True):
            p.data = value
            p.grad = g
        self.parameter = nn.Parameter(flat)
        self.parameter.grad = grad

    @classmethod
    def of(cls, params: list[nn.Parameter]) -> FlatParameters | None:
        """Flatten ``params``, or None where they cannot share one tensor (none, sparse,
        or of several dtypes or devices, as a user's summary network may be)."""
        if not params or any(p.layout != torch.strided for p in params):
            return None
        if len({(p.dtype, p.device) for p in params}) > 1:
            return None
        return cls(params)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` shaped like each parameter."""
        return [part.view_as(p) for part, p in
                zip(flat.split(self.sizes), self.params, strict=True)]

    def release(self) -> None:
        """Give each parameter its own storage (a copy of its values) and no gradient."""
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None

    def per_parameter_state(self, state: dict) -> dict:
        """The optimiser state of :attr:`parameter` as that of the separate parameters
        (the form checkpoints keep, whether or not a training flattened them)."""
        per: dict = {i: {} for i in range(len(self.params))}
        for key, value in state["state"].get(0, {}).items():
            if self._elementwise(key, value, self.parameter):
                parts = self.split(value)
            else:  # a scalar such as the step count: one copy each
                parts = [value.clone() if torch.is_tensor(value) else value for _ in per]
            for i, part in enumerate(parts):
                per[i][key] = part
        groups = [{**g, "params": list(per)} for g in state["param_groups"]]
        return {"state": {i: s for i, s in per.items() if s}, "param_groups": groups}

    def flat_state(self, state: dict) -> dict:
        """The inverse of :meth:`per_parameter_state`: separate states joined into one.

        Parameters without a state (never updated) get zero moments.
        """
        per = {int(i): s for i, s in state["state"].items()}
        flat: dict = {}
        if per:
            first = next(iter(per.values()))
            for key, value in first.items():
                if self._elementwise(key, value, self.params[min(per)]):
                    flat[key] = torch.cat([
                        per[i][key].reshape(-1) if i in per else p.new_zeros(p.numel())
                        for i, p in enumerate(self.params)
                    ])
                else:
                    flat[key] = value
        groups = [{**g, "params": [0]} for g in state["param_groups"]]
        return {"state": {0: flat} if flat else {}, "param_groups": groups}

    @staticmethod
    def _elementwise(key: str, value, param: torch.Tensor) -> bool:
        """Whether an optimiser state entry holds one value per element of ``param``."""
        return key != "step" and torch.is_tensor(value) and value.shape == param.shape
