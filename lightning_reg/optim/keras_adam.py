"""Adam with Keras' conventions (``keras.optimizers.Adam``, Keras 3.15), for reproducing Keras results.

torch's :class:`torch.optim.Adam` and Keras' Adam differ in where ``epsilon`` goes and in its default:

* torch: ``theta -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected ``m_hat, v_hat`` and ``eps = 1e-8``;
* Keras: ``theta -= alpha * m / (sqrt(v) + eps)`` with ``alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``,
  i.e. ``eps`` is added to ``sqrt(v)`` *before* bias correction (the Adam paper's "efficient version"), and
  ``eps = 1e-7``. Equivalently ``lr * m_hat / (sqrt(v_hat) + eps / sqrt(1 - beta2^t))``: early in training, and
  for parameters with small gradients, Keras' ``eps`` weighs up to ``1 / sqrt(1 - beta2) ~ 31.6`` times more.

Weight decay is Keras' too: decoupled, ``theta *= 1 - weight_decay * lr`` before the step (not an L2 term
added to the gradient as in ``torch.optim.Adam``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from typing_extensions import override

from lightning_reg.errors import ConfigError, check_range

__all__ = ["KerasAdam"]


class KerasAdam(torch.optim.Optimizer):
    """Keras 3's Adam update (``keras/src/backend/torch/optimizers/torch_adam.py``), op for op in float32.

    Example:
        >>> p = torch.nn.Parameter(torch.ones(3))
        >>> opt = KerasAdam([p], lr=0.1)
        >>> p.grad = torch.tensor([1.0, -1.0, 0.0])
        >>> opt.step()
        >>> [round(v, 4) for v in p.tolist()]  # the first step moves by lr where the gradient is not 0
        [0.9, 1.1, 1.0]
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        eps: float = 1e-7,
        weight_decay: float = 0.0,
    ) -> None:
        check_range("optimizer.lr", lr, 0.0, None)
        if len(betas) != 2:
            raise ConfigError(f"`optimizer.betas` must be a pair [beta1, beta2]; got {list(betas)!r}.")
        for i, b in enumerate(betas):
            check_range(f"optimizer.betas[{i}]", b, 0.0, 1.0, high_inclusive=False)
        check_range("optimizer.eps", eps, 0.0, None)
        check_range("optimizer.weight_decay", weight_decay, 0.0, None)
        defaults = {"lr": lr, "betas": (float(betas[0]), float(betas[1])), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @override
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("KerasAdam does not support sparse gradients.")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grad = p.grad
                dtype = p.dtype
                lr = torch.tensor(group["lr"], dtype=dtype, device=p.device)
                if group["weight_decay"]:
                    p.mul_(1 - group["weight_decay"] * group["lr"])
                # Keras: local_step = iterations + 1, cast to the variable's dtype; powers in that dtype.
                state["step"] += 1
                t = state["step"].to(device=p.device, dtype=dtype)
                b1 = torch.tensor(beta1, dtype=dtype, device=p.device)
                b2 = torch.tensor(beta2, dtype=dtype, device=p.device)
                alpha = lr * torch.sqrt(1 - torch.pow(b2, t)) / (1 - torch.pow(b1, t))
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).add_(grad * grad, alpha=1 - beta2)
                p.sub_((m * alpha) / (torch.sqrt(v) + group["eps"]))
        return loss
