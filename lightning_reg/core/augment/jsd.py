"""AugMix's Jensen-Shannon consistency term (Hendrycks et al. 2020; timm's ``JsdCrossEntropy``), added on the
gradient side so that any classifier's own loss code stays as it is (pure torch).

The batch holds ``num_splits`` views of each image, split-major: rows ``0..N-1`` the clean images,
``N..2N-1`` the first augmented view of the same images, and so on (timm's layout). :func:`jsd_consistency` is
the term, and :class:`JSDConsistency` adds ``alpha · ∇JSD`` to the gradient of the module's logits through a
forward hook and a tensor hook, so the total gradient is that of ``loss + alpha · JSD``. With
``clean_only_loss=True`` (timm, the paper) it also turns the module's loss over all views into its loss over the
clean split: for a loss that is a mean over the batch's rows (``F.cross_entropy``'s default), the gradient rows
of the clean split are multiplied by ``num_splits`` and those of the augmented splits zeroed, which is exactly the
gradient of the same mean loss over the clean rows alone.

Example:
    >>> logits = torch.randn(6, 4)
    >>> float(jsd_consistency(torch.cat([logits[:2]] * 3), 3)) < 1e-6  # identical views: no inconsistency
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_reg.errors import ConfigError, check_int, check_non_negative

__all__ = ["JSDConsistency", "jsd_consistency"]


def jsd_consistency(logits: Tensor, num_splits: int) -> Tensor:
    """The Jensen-Shannon divergence between the ``num_splits`` views' predictions, as timm computes it.

    ``mean_s KL(p_s || M)`` with ``M`` the mean of the views' softmax, clamped to ``[1e-7, 1]`` before the log,
    ``batchmean`` over the rows of one split.

    Example:
        >>> round(float(jsd_consistency(torch.tensor([[5.0, 0.0], [0.0, 5.0]]), 2)), 4)
        0.653
    """
    if logits.ndim != 2 or logits.shape[0] % num_splits:
        raise ConfigError(
            f"the JSD term needs (num_splits * N, num_classes) logits with num_splits={num_splits}; got shape "
            f"{tuple(logits.shape)}. The batch must hold the clean images and the augmented views, split-major."
        )
    probs = [F.softmax(part, dim=1) for part in torch.split(logits, logits.shape[0] // num_splits)]
    log_mixture = torch.clamp(torch.stack(probs).mean(0), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)  # type: ignore[return-value]


class JSDConsistency:
    """Adds ``alpha · ∇JSD`` (and optionally the clean-only loss) to the gradient of a module's output logits.

    Args:
        num_splits: views per image in the batch (timm's ``num_splits``; 3: clean + 2 augmented).
        alpha: weight of the JSD term (timm and the paper: 12).
        clean_only_loss: make the module's own (batch-mean) loss count the clean split only, as timm does.
        scale: multiplies the added gradient; set it to ``1 / accumulate_grad_batches`` where the loss is scaled so.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> jsd = JSDConsistency(num_splits=2, alpha=1.0)
        >>> jsd.attach(net)
        >>> net(torch.randn(4, 3)).sum().backward()
        >>> jsd.last_value is not None and net.weight.grad is not None
        True
        >>> jsd.detach()
    """

    def __init__(self, num_splits: int = 3, alpha: float = 12.0, clean_only_loss: bool = True, scale: float = 1.0):
        self.num_splits = check_int("num_splits", num_splits, low=2)
        self.alpha = check_non_negative("alpha", alpha)
        if not isinstance(clean_only_loss, bool):
            raise ConfigError(f"`clean_only_loss` must be True or False; got {clean_only_loss!r}.")
        self.clean_only_loss = clean_only_loss
        self.scale = float(scale)
        self.last_value: Tensor | None = None
        #: forwards the term was added to (a check that the module's forward did return the logits)
        self.calls = 0
        self._handle: RemovableHandle | None = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self, module: nn.Module) -> None:
        """Hook ``module``, whose output is the logits; only training-mode forwards with grad are touched."""
        self.detach()
        self._handle = module.register_forward_hook(self._on_forward)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _on_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        # Lightning's DDP redirect calls the module's __call__ with training_step as forward: its output (a loss, a
        # dict) is not the logits. Skip what cannot be logits; `calls` tells whether any forward was.
        if not (module.training and torch.is_grad_enabled()) or not isinstance(output, Tensor) or output.ndim == 0:
            return
        if not output.requires_grad:
            return
        with torch.enable_grad():
            logits = output.detach().float().requires_grad_(True)
            value = jsd_consistency(logits, self.num_splits)
            (grad,) = torch.autograd.grad(value, logits)
        self.last_value = value.detach()
        self.calls += 1
        extra = grad.mul_(self.alpha * self.scale)
        rows = output.shape[0] // self.num_splits
        splits, clean_only = self.num_splits, self.clean_only_loss

        def add(g: Tensor) -> Tensor:
            out = g.float()
            if clean_only:
                out = torch.cat([out[:rows] * splits, torch.zeros_like(out[rows:])])
            return (out + extra).to(g.dtype)

        output.register_hook(add)
