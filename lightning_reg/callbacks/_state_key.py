"""A memo for ``Callback.state_key``.

Lightning reads ``callback.state_key`` for every hook it calls on every callback (to label the profiler section,
``f"[Callback]{callback.state_key}.{hook_name}"`` in ``lightning.pytorch.trainer.call``), about seven times per
training step, profiler or not. Building the key (``_generate_state_key``, a ``repr`` of the arguments) cost
1–2.5 µs per read, so 4 callbacks spent about 40 µs per step only naming themselves.

:func:`memo_state_key` rebuilds the key only when a cheap *fingerprint* of the identifying attributes changed:
a tuple of those attributes (numbers and strings by value, lists copied to tuples, objects by identity and,
for schedules, their fields). Assigning another value to any of them gives a new key, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def memo_state_key(callback: Any, fingerprint: tuple[Any, ...], build: Callable[[], str]) -> str:
    """``build()``, cached on ``callback`` while ``fingerprint`` compares equal to the one it was built for.

    Example:
        >>> class C: pass
        >>> c, calls = C(), []
        >>> key = lambda: calls.append(1) or "C{'a': 1}"
        >>> memo_state_key(c, (1,), key), memo_state_key(c, (1,), key), len(calls)
        ("C{'a': 1}", "C{'a': 1}", 1)
        >>> memo_state_key(c, (2,), key) and len(calls)
        2
    """
    memo = callback.__dict__.get("_state_key_memo")
    if memo is not None and memo[0] == fingerprint:
        return memo[1]
    key = build()
    callback.__dict__["_state_key_memo"] = (fingerprint, key)
    return key
