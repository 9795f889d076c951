"""Checkpoints of lightning_reg 0.1's ``EarlyStopping``: found under their old key and read into today's callback.

0.1 keyed its state ``EarlyStopping{'monitor': ..., 'mode': ..., 'criterion': ..., <its options>}`` (plus
``'restore_best_weights': True`` when on), and kept the best weights in it. Today's key is Lightning's for the patience
rule; the best weights belong to ``RestoreBestWeights`` (``EarlyStopping.load_state_dict`` hands them over).
``tests/fixtures/early_stopping`` holds a checkpoint written by 0.1.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from lightning_reg.core.stopping import Criterion

__all__ = ["legacy_state"]


def legacy_state(
    states: Mapping[str, Any], class_name: str, monitor: str, mode: str, rule: Criterion
) -> dict[str, Any] | None:
    """The 0.1 state in ``states`` (a checkpoint's ``"callbacks"``) of the instance with these options, or None.

    Example:
        >>> from lightning_reg.core.stopping import Patience
        >>> key = "EarlyStopping{'monitor': 'val/loss', 'mode': 'min', 'criterion': 'patience', 'patience': 3}"
        >>> legacy_state({key: {"wait_count": 1}}, "EarlyStopping", "val/loss", "min", Patience(3))
        {'wait_count': 1}
    """
    wanted = {"monitor": monitor, "mode": mode, "criterion": rule.name, **rule.key_params()}
    for key, state in states.items():
        if not key.startswith(class_name + "{"):
            continue
        try:
            fields = ast.literal_eval(key[len(class_name) :])
        except (ValueError, SyntaxError):
            continue
        if isinstance(fields, dict) and "criterion" in fields:
            fields.pop("restore_best_weights", None)
            if fields == wanted:
                return dict(state)
    return None
