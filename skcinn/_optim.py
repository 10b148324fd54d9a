"""Adam and a step-wise learning-rate schedule for our trainings, without ``torch.optim``.

``torch.optim``'s optimisers and schedulers import ``torch._dynamo`` the first time one is
used (its methods are wrapped to keep the compiler out), which costs 1.3-2.5 CPU seconds
once per process: a quarter of a small fit on 10,000 simulations, paid again by every
worker process of a cross-validation or grid search (benchmarks/README.md). :class:`Adam`
runs the same fused kernel as ``torch.optim.Adam(fused=True)`` with the same state, so
training gives the same weights bit for bit, and it reads and writes the same
``state_dict`` format (checkpoints written before load unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class Adam:
    """Adam (Kingma & Ba, 2015) over one group of parameters.

    The update is torch's fused Adam kernel where the parameters allow it (floating
    point, on a device torch has the kernel for), else the same rule written out.

    Parameters
    ----------
    params : list of Tensor
        The parameters, each updated from its ``.grad``.
    lr : float
        Learning rate (``param_groups[0]["lr"]``, which a schedule may change).
    betas : tuple of float
        Decay rates of the first and second moment averages.
    eps : float
        Added to the root of the second moment.

    Attributes
    ----------
    param_groups : list of dict
        One group: ``params``, ``lr``, ``betas``, ``eps``, as in ``torch.optim``.
    state : dict
        Per parameter index: ``step`` (a float32 scalar tensor), ``exp_avg`` and
        ``exp_avg_sq``, created at the parameter's first update.
    """

    def __init__(self, params: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        params = list(params)
        if not params:
            raise ValueError("Adam got an empty parameter list.")
        self.param_groups = [{"params": params, "lr": lr, "betas": tuple(betas), "eps": eps}]
        self.state: dict[int, dict[str, torch.Tensor]] = {}
        self.fused = all(torch.is_floating_point(p) and p.device.type in ("cpu", "cuda")
                         for p in params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients, or zero them in place (``set_to_none=False``)."""
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        group = self.param_groups[0]
        kinds: dict = {}  # by device and dtype: one kernel call each, as torch groups them
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            if i not in self.state:
                self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            kinds.setdefault((p.device, p.dtype), []).append(i)
        (beta1, beta2), lr, eps = group["betas"], group["lr"], group["eps"]
        for kind in kinds.values():
            if not self.fused:
                self._plain_step(kind, lr, beta1, beta2, eps)
                continue
            params = [group["params"][i] for i in kind]
            states = [self.state[i] for i in kind]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                params, [p.grad for p in params], [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=lr,
                beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, maximize=False,
                grad_scale=None, found_inf=None,
            )

    def _plain_step(self, indices: list[int], lr: float, beta1: float, beta2: float,
                    eps: float) -> None:
        """The update written out, for parameters the fused kernel does not take."""
        for i in indices:
            p, s = self.param_groups[0]["params"][i], self.state[i]
            s["step"] += 1
            t = s["step"].item()
            s["exp_avg"].lerp_(p.grad, 1 - beta1)
            s["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (s["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
            p.addcdiv_(s["exp_avg"], denom, value=-lr / (1 - beta1**t))

    def state_dict(self) -> dict:
        """The state as ``torch.optim.Adam`` writes it (parameters by index)."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.param_groups[0]["params"])))
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, state: dict) -> None:
        """Load a :meth:`state_dict` (or ``torch.optim.Adam``'s): copies of its tensors,
        on their parameters' device and in their floating point type."""
        params = self.param_groups[0]["params"]
        saved = state["param_groups"][0]
        if len(saved["params"]) != len(params):
            raise ValueError(f"The optimiser state holds {len(saved['params'])} parameters; "
                             f"this training has {len(params)}.")
        for key in ("lr", "betas", "eps"):
            if key in saved:
                self.param_groups[0][key] = tuple(saved[key]) if key == "betas" else saved[key]
        position = {index: i for i, index in enumerate(saved["params"])}
        self.state = {}
        for index, entry in state["state"].items():
            p = params[position[int(index)]]
            self.state[position[int(index)]] = {
                key: value.to(p.device, torch.float32 if key == "step" else p.dtype,
                              copy=True)
                for key, value in entry.items() if key in ("step", "exp_avg", "exp_avg_sq")
            }


class LambdaSchedule:
    """Each group's rate is its initial rate times ``factor(t)`` after ``t`` steps.

    The rule of ``torch.optim.lr_scheduler.LambdaLR``, for any optimiser with
    ``param_groups``; :meth:`state_dict` keeps ``base_lrs`` and ``last_epoch`` as it does.

    Parameters
    ----------
    optimizer : Adam or torch.optim.Optimizer
        Whose ``param_groups`` rates are set.
    factor : callable
        ``factor(t) -> float``, looked up at every step.
    """

    def __init__(self, optimizer, factor: Callable[[int], float]) -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    def step(self) -> None:
        """Count one optimisation step and set the rates for the next."""
        self.last_epoch += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict) -> None:
        """Resume the step count (the rates themselves come with the optimiser's state)."""
        self.base_lrs = list(state["base_lrs"])
        self.last_epoch = int(state["last_epoch"])
