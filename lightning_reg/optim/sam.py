"""Sharpness-aware minimization (SAM, Foret et al. 2021) and adaptive SAM (ASAM, Kwon et al. 2021).

:func:`sam_perturbation` is the pure math; :class:`SAM` is a ``torch.optim.Optimizer`` around any base optimizer
that uses the closure Lightning passes to ``optimizer.step`` for its two passes, so it works with any
LightningModule in automatic optimization (and in manual optimization with ``opt.step(closure=...)``).

One SAM step: gradient ``g`` at ``w`` (first closure call); ``e = rho · T² g / ‖T g‖`` with ``T = 1`` (SAM) or
``T = |w|`` (ASAM, elementwise), the norm over all parameters; gradient at ``w + e`` (second closure call);
``w`` restored exactly; the base optimizer steps with the second gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lightning_reg._lightning_internals import trainer_of_closure
from lightning_reg._torch_internals import foreach_add_, foreach_copy_
from lightning_reg.errors import ConfigError, check_range


@torch.no_grad()
def sam_perturbation(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    rho: float | Sequence[float],
    adaptive: bool | Sequence[bool] = False,
    eps: float = 1e-12,
) -> list[Tensor]:
    """The ascent step ``e = rho · T² g / ‖T g‖`` per tensor (``T = |w|`` if adaptive else 1; one global norm).

    ``rho`` and ``adaptive`` may be given per tensor (param groups).

    Example:
        >>> w, g = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
        >>> [round(v, 6) for v in sam_perturbation([w], [g], rho=0.5)[0].tolist()]  # 0.5 · g / 5
        [0.3, 0.4]
        >>> [round(v, 4) for v in sam_perturbation([w], [g], rho=0.5, adaptive=True)[0].tolist()]  # |w|²g/‖|w|g‖
        [0.1756, 0.9363]
    """
    n = len(params)
    rhos = [float(rho)] * n if isinstance(rho, (int, float)) else [float(r) for r in rho]
    adapt = [bool(adaptive)] * n if isinstance(adaptive, bool) else [bool(a) for a in adaptive]
    scaled = [(p.abs() * g if a else g).float() for p, g, a in zip(params, grads, adapt)]
    if not scaled:
        return []
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
    return [
        (r * (p.float().pow(2) if a else 1.0) * g.float() / (norm + eps)).to(p.dtype)
        for p, g, r, a in zip(params, grads, rhos, adapt)
    ]


class SAM(torch.optim.Optimizer):
    """SAM / ASAM around a base optimizer, through the closure of ``optimizer.step(closure)``.

    Its ``param_groups`` and ``state`` are the base optimizer's (so LR schedulers, ``state_dict`` and checkpoint
    resume work as for the base); each group also carries ``rho`` and ``adaptive``.

    Combines with: ``precision="bf16-mixed"`` and 32-bit (Lightning passes the closure);
    :class:`~lightning_reg.WeightPenalty` (its gradient goes into both passes: SAM of the penalized loss);
    DDP (both passes all-reduce). Refuses with :class:`~lightning_reg.errors.ConfigError`: a step without a
    closure (``precision="16-mixed"``: the GradScaler steps without one), and gradient accumulation
    (``accumulate_grad_batches > 1``: the second pass would re-evaluate only the last micro-batch).

    Args:
        params: parameters or param groups.
        base: the base optimizer: a class or a factory taking param groups (a Hydra partial such as
            ``torch.optim.SGD`` with ``lr``).
        rho: radius of the neighbourhood (> 0); ASAM uses larger values (about 0.5-2).
        adaptive: ASAM's scale-invariant neighbourhood (``T = |w|``).
        eps: added to the norm.
        **base_kwargs: passed to ``base`` (e.g. ``lr=0.1``).

    Example:
        >>> from torch import nn
        >>> net = nn.Linear(2, 1)
        >>> opt = SAM(net.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
        >>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = nn.functional.mse_loss(net(x), y)
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)
        >>> opt.param_groups[0]["rho"], opt.param_groups[0]["lr"]
        (0.05, 0.1)
    """

    #: Closure evaluations per step (read by WeightPenalty, which otherwise refuses closure re-evaluation).
    evaluations_per_step = 2

    def __init__(
        self,
        params: Iterable[Any],
        base: Callable[..., torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eps: float = 1e-12,
        **base_kwargs: Any,
    ) -> None:
        check_range("rho", rho, 0.0, None, low_inclusive=False)
        if not isinstance(adaptive, bool):
            raise ConfigError(f"`adaptive` must be True or False; got {adaptive!r}.")
        if not callable(base):
            raise ConfigError(f"`base` must be an optimizer class or a factory of param groups; got {base!r}.")
        super().__init__(params, dict(rho=float(rho), adaptive=adaptive))
        self.eps = float(eps)
        self.base = base(self.param_groups, **base_kwargs)
        if not isinstance(self.base, torch.optim.Optimizer):
            raise ConfigError(f"`base` must build a torch.optim.Optimizer; it built {type(self.base).__name__}.")
        if isinstance(self.base, (torch.optim.LBFGS, SAM)):
            raise ConfigError(f"`base` cannot be {type(self.base).__name__}: it evaluates a closure of its own.")
        self._share()
        self.defaults.update(self.base.defaults)

    def _share(self) -> None:
        self.param_groups = self.base.param_groups
        self.state = self.base.state

    @torch.no_grad()
    @override
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if closure is None:
            raise ConfigError(
                "SAM needs the closure of `optimizer.step(closure)` to evaluate the gradient twice; it was called "
                "without one. Lightning's precision='16-mixed' steps through a GradScaler without a closure: use "
                "precision='bf16-mixed' or 32. In manual optimization pass `closure=` to `opt.step`."
            )
        trainer = trainer_of_closure(closure)
        if trainer is not None and trainer.accumulate_grad_batches > 1:
            raise ConfigError(
                f"SAM cannot be used with accumulate_grad_batches={trainer.accumulate_grad_batches}: its second pass "
                "re-evaluates the closure, which holds only the last micro-batch. Use accumulate_grad_batches=1 "
                "with a larger batch."
            )
        with torch.enable_grad():
            loss = closure()
        groups = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not groups:
            return loss
        params = [p for _, p in groups]
        e = sam_perturbation(
            params,
            [p.grad for p in params],
            [g["rho"] for g, _ in groups],
            [g["adaptive"] for g, _ in groups],
            self.eps,
        )
        saved = [p.detach().clone() for p in params]
        foreach_add_(params, e)
        with torch.enable_grad():
            closure()
        foreach_copy_(params, saved)
        self.base.step()
        return loss

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self._share()

    @override
    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)


__all__ = ["SAM", "sam_perturbation"]
