"""A new penalty rule is one class plus one yaml: a rule defined here, used through WeightPenalty and through a
Hydra config, and trained against the same penalty written into the loss by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from test_penalties_callback import Tiny, fit, make, max_diff
from torch import Tensor

from lightning_reg import WeightPenalty
from lightning_reg.app.train import CONF_DIR
from lightning_reg.core.penalty_rules import RULES, PenaltyRule, with_grads
from lightning_reg.errors import ConfigError, check_non_negative, check_range


@dataclass(frozen=True)
class Toward(PenaltyRule):
    """``strength·Σ(w − center)²``: an L2 penalty that pulls the weights toward ``center`` rather than zero."""

    strength: float = 0.0
    center: float = 0.0
    name: ClassVar[str] = "toward"
    uses_grad: ClassVar[bool] = True

    @classmethod
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        checks = {"strength": check_non_negative, "center": check_range}
        return {k: checks[k](prefix + k, v) for k, v in values.items()}

    def needs_grad(self, variants: Sequence[PenaltyRule]) -> bool:
        return True

    def grad_(self, bucket, scale: float) -> None:
        params, grads = with_grads(bucket.params)
        for p, g in zip(params, grads):
            g.add_(p - self.center, alpha=2.0 * self.strength * scale)

    def value(self, params: Sequence[Tensor], scale: float, dims=None) -> Tensor:
        return self.strength * scale * torch.stack([(p - self.center).pow(2).sum() for p in params]).sum()

    def stats(self, bucket) -> dict[str, float]:
        return {"toward": float(self.value(bucket.params, 1.0).detach())}

    def report(self, stats, scale, variants) -> dict[str, float]:
        return {"reg/toward": scale * sum(s["toward"] for s in stats)}


class HandWritten(Tiny):
    """The same penalty in the loss: 1e-3·Σ(w − 0.05)² on both kernels, 1e-2 on the head."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        w0, w1 = self.net[0].weight, self.net[-1].weight
        return loss + 1e-3 * (w0 - 0.05).pow(2).sum() + 1e-2 * (w1 - 0.05).pow(2).sum()


YAML = """\
# @package callbacks.toward
_target_: lightning_reg.callbacks.WeightPenalty
rule: {name: toward, strength: 1.0e-3, center: 0.05}
groups: {net.2.*: {strength: 1.0e-2}}
log_every_n_steps: 1
"""


def test_the_rule_registers_under_its_name_and_checks_its_arguments() -> None:
    assert RULES["toward"] is Toward
    with pytest.raises(ConfigError, match=r"`strength` must be in \[0.0, inf\]; got -1.0"):
        Toward(strength=-1.0)
    with pytest.raises(ConfigError, match=r"`groups\['net.2.\*'\].strength` must be in \[0.0, inf\]"):
        WeightPenalty(rule=Toward(strength=1e-3), groups={"net.2.*": {"strength": -1.0}})
    with pytest.raises(
        ConfigError, match=r"`groups\['net.2.\*'\]` must be a mapping with keys among 'strength', 'center'"
    ):
        WeightPenalty(rule=Toward(strength=1e-3), groups={"net.2.*": {"l2": 1.0}})
    with pytest.raises(ConfigError, match=r"`rule` replaces `l1`, `l2` and `mode`"):
        WeightPenalty(l2=1e-3, rule=Toward(strength=1e-3))


def test_through_weight_penalty_it_trains_as_the_penalty_in_the_loss() -> None:
    penalty = WeightPenalty(rule=Toward(strength=1e-3, center=0.05), groups={"net.2.*": {"strength": 1e-2}})
    ours, ref = make(), make(HandWritten)
    fit(ours, penalty)
    fit(ref)
    assert max_diff(ours, ref) < 1e-6
    assert penalty.run_summary()["optimizer_steps"] == 8
    assert penalty.state_key.startswith("WeightPenalty{'rule': 'toward', 'strength': 0.001, 'center': 0.05")


def test_through_a_yaml_composed_by_hydra(tmp_path: Path) -> None:
    (tmp_path / "callbacks").mkdir()
    (tmp_path / "callbacks" / "toward.yaml").write_text(YAML)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra.searchpath=[file://{tmp_path}]", "callbacks=[default,toward]"])
    finally:
        GlobalHydra.instance().clear()
    penalty = instantiate(cfg.callbacks.toward, _convert_="all")
    assert isinstance(penalty, WeightPenalty) and penalty.spec.rule == Toward(strength=1e-3, center=0.05)
    direct = WeightPenalty(rule=Toward(strength=1e-3, center=0.05), groups={"net.2.*": {"strength": 1e-2}})
    a, b = make(), make()
    fit(a, penalty)
    fit(b, direct)
    assert max_diff(a, b) == 0.0
    assert penalty.run_summary()["final_toward"] > 0
